package layout

import (
	"fmt"
)

// Extent is one contiguous piece of a file extent mapped onto one object.
// Stripe is -1 (and Object zero) for a piece that falls in a component
// without objects, such as a released file's: it has no backing store and
// reads as a hole.
type Extent struct {
	Comp       int    // component index
	Stripe     int    // stripe index within the component
	Object     Object // the object holding it
	ObjOffset  int64  // offset within the object
	FileOffset int64  // offset within the file
	Length     int64
}

// ObjTrunc is the size one object must have after the file is truncated.
type ObjTrunc struct {
	Comp   int
	Stripe int
	Object Object
	Size   int64
}

// stripes returns the component's stripe count and whether its RAID0
// mapping is usable: a positive stripe size and one object per stripe. A
// layout decoded from the network may break either; the mapping functions
// then treat the component as having no objects rather than panic.
func (c *Component) stripes() (int64, bool) {
	n := int64(c.StripeCount)
	return n, n > 0 && c.StripeSize > 0 && int64(len(c.Objects)) >= n && c.Start >= 0
}

// componentAt returns the index of the component holding file offset off,
// or -1 if none does.
func (l *Layout) componentAt(off int64) int {
	for i := range l.Components {
		c := &l.Components[i]
		if c.Start <= off && off < c.End {
			return i
		}
	}
	return -1
}

// Map splits the file extent [off, off+length) into per-object extents in
// file order, appending them to dst (allocation-free when dst has room).
//
// Within a component a piece never crosses a stripe unit boundary unless
// the component has a single stripe, where the whole piece is contiguous in
// its object and comes back as one extent. Pieces never cross component
// boundaries. An extent reaching past the offsets the layout covers is cut
// there; a negative offset or a non-positive length maps to nothing.
func (l *Layout) Map(off, length int64, dst []Extent) []Extent {
	if off < 0 || length <= 0 {
		return dst
	}
	end := off + length
	if end < off { // overflow: the extent runs to the largest offset
		end = EOF
	}
	for pos := off; pos < end; {
		ci := l.componentAt(pos)
		if ci < 0 {
			return dst
		}
		c := &l.Components[ci]
		stop := min(end, c.End)
		count, ok := c.stripes()
		if !ok {
			dst = append(dst, Extent{Comp: ci, Stripe: -1, FileOffset: pos, Length: stop - pos})
			pos = stop
			continue
		}
		ss := c.StripeSize
		for pos < stop {
			rel := pos - c.Start
			unit, within := rel/ss, rel%ss
			n := stop - pos
			if count > 1 {
				n = min(n, ss-within)
			}
			stripe := unit % count
			dst = append(dst, Extent{
				Comp:       ci,
				Stripe:     int(stripe),
				Object:     c.Objects[stripe],
				ObjOffset:  (unit/count)*ss + within,
				FileOffset: pos,
				Length:     n,
			})
			pos += n
		}
	}
	return dst
}

// FileOffset returns the file offset of byte objOff of stripe's object.
// It returns -1 for a stripe the component does not have, a negative
// objOff, or a component without a usable mapping, and EOF for an objOff
// whose file offset would not fit in an int64. The result may lie past the
// component's End when objOff is larger than any byte the component maps
// onto that object.
func (c *Component) FileOffset(stripe int, objOff int64) int64 {
	count, ok := c.stripes()
	if !ok || stripe < 0 || int64(stripe) >= count || objOff < 0 {
		return -1
	}
	ss := c.StripeSize
	round, within := objOff/ss, objOff%ss
	// The file offset is Start + (round*count+stripe)*ss + within; compare
	// against the room left below EOF before multiplying.
	room := (EOF - c.Start) / ss // whole stripe units that fit after Start
	if round > (room-int64(stripe))/count {
		return EOF
	}
	unit := round*count + int64(stripe)
	if within > EOF-c.Start-unit*ss {
		return EOF
	}
	return c.Start + unit*ss + within
}

// FileSize returns the file size implied by the object sizes: the largest
// file offset holding a byte of any object, plus one (0 if all are empty).
// objSize(comp, stripe) reports each object's size. An object's bytes past
// its component's End do not count.
func (l *Layout) FileSize(objSize func(comp, stripe int) int64) int64 {
	var size int64
	for ci := range l.Components {
		c := &l.Components[ci]
		count, ok := c.stripes()
		if !ok {
			continue
		}
		for s := range int(count) {
			n := objSize(ci, s)
			if n <= 0 {
				continue
			}
			last := c.FileOffset(s, n-1)
			if last < 0 {
				continue
			}
			end := EOF
			if last < EOF {
				end = last + 1
			}
			size = max(size, min(end, c.End))
		}
	}
	return size
}

// TruncatePoints returns, for every object of the layout, the object size
// that a file size of size implies; appended to dst.
//
// Objects of components starting at or after size get 0. Objects of the
// component holding the last byte get exactly the bytes below size. Objects
// of earlier components, wholly below size, get the size the component's
// full extent implies: a punch to that size never cuts data, and may extend
// a sparse object with a hole. Components without a usable mapping are
// skipped. FileSize of the result is size.
func (l *Layout) TruncatePoints(size int64, dst []ObjTrunc) []ObjTrunc {
	size = max(size, 0)
	for ci := range l.Components {
		c := &l.Components[ci]
		count, ok := c.stripes()
		if !ok {
			continue
		}
		covered := max(min(size, c.End)-c.Start, 0)
		ss := c.StripeSize
		units, tail := covered/ss, covered%ss
		rounds, extra := units/count, units%count
		for s := range count {
			n := rounds * ss
			switch {
			case s < extra:
				n += ss
			case s == extra:
				n += tail
			}
			dst = append(dst, ObjTrunc{Comp: ci, Stripe: int(s), Object: c.Objects[s], Size: n})
		}
	}
	return dst
}

// Validate checks an instantiated layout, such as one decoded from the
// wire: components contiguous from 0 to EOF with aligned boundaries, valid
// stripe sizes, one object per stripe and no OST twice in a component. The
// mapping functions never panic on a layout that fails it, but their
// results are then meaningless.
func (l *Layout) Validate() error {
	if len(l.Components) == 0 {
		return fmt.Errorf("layout: no components: %w", ErrExtent)
	}
	prev := int64(0)
	for i := range l.Components {
		c := &l.Components[i]
		last := i == len(l.Components)-1
		switch {
		case c.Start != prev:
			return fmt.Errorf("layout: component %d starts at %d, not %d: %w", i, c.Start, prev, ErrExtent)
		case c.End <= c.Start:
			return fmt.Errorf("layout: component %d is empty: %w", i, ErrExtent)
		case last != (c.End == EOF):
			return fmt.Errorf("layout: component %d of %d ends at %d: %w", i, len(l.Components), c.End, ErrExtent)
		case c.StripeSize <= 0 || c.StripeSize%StripeAlign != 0:
			return fmt.Errorf("layout: component %d stripe size %d: %w", i, c.StripeSize, ErrStripeSize)
		case c.End != EOF && c.End%c.StripeSize != 0:
			return fmt.Errorf("layout: component %d end %d not a multiple of its stripe size: %w", i, c.End, ErrExtent)
		case c.StripeCount == 0 || c.StripeCount > MaxStripeCount || int(c.StripeCount) != len(c.Objects) && !(l.Released && len(c.Objects) == 0):
			return fmt.Errorf("layout: component %d has stripe count %d and %d objects: %w",
				i, c.StripeCount, len(c.Objects), ErrStripeCount)
		case c.Pattern != PatternRAID0:
			return fmt.Errorf("layout: component %d has unknown pattern %q", i, c.Pattern)
		}
		for s := range c.Objects {
			for _, o := range c.Objects[:s] {
				if o.OST == c.Objects[s].OST {
					return fmt.Errorf("layout: component %d OST %d: %w", i, o.OST, ErrDuplicateOST)
				}
			}
		}
		prev = c.End
	}
	return nil
}
