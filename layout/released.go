package layout

// Released layouts (HSM). Releasing a file frees its objects but keeps the
// shape of its layout, so that a restore gives the data back the stripe
// count, stripe size and pool it had, and getstripe after the restore shows
// what it showed before.

// ReleasedCopy returns l without its objects, marked Released, with the next
// generation: capabilities of the old generation stop working on the OSTs
// once the old objects are destroyed.
func (l *Layout) ReleasedCopy() Layout {
	out := Layout{Gen: l.Gen + 1, Released: true, Components: make([]Component, len(l.Components))}
	for i, c := range l.Components {
		c.Objects = nil
		out.Components[i] = c
	}
	return out
}

// Spec returns the spec that instantiates a layout of the same shape as l:
// the same component extents, stripe counts, stripe sizes and pools, on
// whichever OSTs the allocator chooses.
func (l *Layout) Spec() Spec {
	s := Spec{Components: make([]ComponentSpec, len(l.Components))}
	for i, c := range l.Components {
		s.Components[i] = ComponentSpec{End: c.End, StripeCount: int32(c.StripeCount), StripeSize: c.StripeSize,
			StripeOffset: -1, Pool: c.Pool}
	}
	return s
}

// SameShape reports whether l and o have the same components (extents,
// pattern, stripe count, stripe size and pool), whatever their objects,
// generations and release state.
func (l *Layout) SameShape(o *Layout) bool {
	if len(l.Components) != len(o.Components) {
		return false
	}
	for i, c := range l.Components {
		d := o.Components[i]
		if c.Start != d.Start || c.End != d.End || c.Pattern != d.Pattern || c.StripeCount != d.StripeCount ||
			c.StripeSize != d.StripeSize || c.Pool != d.Pool {
			return false
		}
	}
	return true
}
