package layout

import (
	"fmt"
	"slices"
)

// MaxStripeCount bounds the stripe count of one component, as Lustre's
// LOV_MAX_STRIPE_COUNT does; it keeps a hostile spec from asking the
// allocator for millions of objects.
const MaxStripeCount = 2000

// DefaultSpec returns a one-component spec covering the whole file with the
// given stripe count and size and StripeOffset -1, so the allocator chooses
// the OSTs. Zero arguments take the package defaults. It is what a
// filesystem's default layout looks like (strata format --stripe-count N
// --stripe-size S).
func DefaultSpec(count int32, size int64) Spec {
	if count == 0 {
		count = DefaultStripeCount
	}
	if size == 0 {
		size = DefaultStripeSize
	}
	return Spec{Components: []ComponentSpec{{
		End:          EOF,
		StripeCount:  count,
		StripeSize:   size,
		StripeOffset: -1,
	}}}
}

// specEnd reads a requested End: 0 and -1 (lfs's spelling) both mean EOF.
func specEnd(end int64) int64 {
	if end == 0 || end == -1 {
		return EOF
	}
	return end
}

// Validate checks a spec: stripe sizes multiples of StripeAlign, counts -1,
// 0 or positive, component ends increasing and aligned, last one EOF.
//
// A zero StripeCount or StripeSize means "inherit" and passes; an End of 0
// or -1 is read as EOF. A StripeOffset of -1 lets the allocator choose the
// first OST, any value >= 0 names it: the zero value therefore means OST 0,
// and callers that want the allocator to choose must say -1 (DefaultSpec
// does). When OSTs is set the count may not exceed its length and no OST
// may repeat. A non-zero stripe size must also divide the component's End,
// as Lustre requires; Instantiate repeats that check once inherited sizes
// are known.
func (s Spec) Validate() error {
	if len(s.Components) == 0 {
		return nil
	}
	prev := int64(0)
	for i, c := range s.Components {
		if err := c.validate(); err != nil {
			return fmt.Errorf("layout: component %d: %w", i, err)
		}
		end := specEnd(c.End)
		last := i == len(s.Components)-1
		switch {
		case end <= prev:
			return fmt.Errorf("layout: component %d ends at %d, not after %d: %w", i, c.End, prev, ErrExtent)
		case last && end != EOF:
			return fmt.Errorf("layout: last component ends at %d, not EOF: %w", end, ErrExtent)
		case !last && end == EOF:
			return fmt.Errorf("layout: component %d of %d ends at EOF: %w", i, len(s.Components), ErrExtent)
		case end != EOF && end%StripeAlign != 0:
			return fmt.Errorf("layout: component %d end %d not a multiple of 64 KiB: %w", i, end, ErrExtent)
		case end != EOF && c.StripeSize > 0 && end%c.StripeSize != 0:
			return fmt.Errorf("layout: component %d end %d not a multiple of its stripe size %d: %w",
				i, end, c.StripeSize, ErrExtent)
		}
		prev = end
	}
	return nil
}

// validate checks one component's own fields, leaving extents to the caller.
func (c ComponentSpec) validate() error {
	if c.StripeSize < 0 || c.StripeSize%StripeAlign != 0 {
		return fmt.Errorf("stripe size %d: %w", c.StripeSize, ErrStripeSize)
	}
	if c.StripeCount < -1 || c.StripeCount > MaxStripeCount {
		return fmt.Errorf("stripe count %d: %w", c.StripeCount, ErrStripeCount)
	}
	if c.StripeOffset < -1 {
		return fmt.Errorf("stripe offset %d: %w", c.StripeOffset, ErrUnknownOST)
	}
	if len(c.OSTs) == 0 {
		return nil
	}
	if len(c.OSTs) > MaxStripeCount || int(c.StripeCount) > len(c.OSTs) {
		return fmt.Errorf("stripe count %d with %d OSTs listed: %w", c.StripeCount, len(c.OSTs), ErrStripeCount)
	}
	for i, ost := range c.OSTs {
		if slices.Contains(c.OSTs[:i], ost) {
			return fmt.Errorf("OST %d: %w", ost, ErrDuplicateOST)
		}
	}
	return nil
}

// Resolve fills the zero fields of every component from def (the
// directory's or filesystem's default, whose first component is used), so
// the result has explicit counts and sizes. StripeOffset stays -1 if unset.
//
// An empty spec resolves to def itself (every component, as a PFL directory
// default is inherited whole). Fields def leaves zero take DefaultStripeCount
// and DefaultStripeSize. A component listing OSTs with no count gets
// len(OSTs), as lfs setstripe -o does. The pool is inherited only by
// components that list no OSTs. Ends of 0 or -1 become EOF. The result
// shares nothing with s or def.
func (s Spec) Resolve(def Spec) Spec {
	if s.IsZero() {
		if def.IsZero() {
			return DefaultSpec(0, 0)
		}
		return def.Resolve(Spec{})
	}
	base := ComponentSpec{StripeCount: DefaultStripeCount, StripeSize: DefaultStripeSize}
	if len(def.Components) > 0 {
		d := def.Components[0]
		if d.StripeCount != 0 {
			base.StripeCount = d.StripeCount
		}
		if d.StripeSize != 0 {
			base.StripeSize = d.StripeSize
		}
		base.Pool = d.Pool
	}
	out := Spec{Components: make([]ComponentSpec, len(s.Components))}
	for i, c := range s.Components {
		c.End = specEnd(c.End)
		c.OSTs = slices.Clone(c.OSTs)
		switch {
		case c.StripeCount == 0 && len(c.OSTs) > 0:
			c.StripeCount = int32(len(c.OSTs))
		case c.StripeCount == 0:
			c.StripeCount = base.StripeCount
		}
		if c.StripeSize == 0 {
			c.StripeSize = base.StripeSize
		}
		if c.Pool == "" && len(c.OSTs) == 0 {
			c.Pool = base.Pool
		}
		out.Components[i] = c
	}
	return out
}

// validateResolved checks a spec that Instantiate is about to allocate:
// Validate's rules plus explicit sizes, and explicit counts where no OSTs
// are listed (a list alone implies its length, as in Resolve).
func (s Spec) validateResolved() error {
	if s.IsZero() {
		return fmt.Errorf("layout: empty spec: %w", ErrExtent)
	}
	for i, c := range s.Components {
		if c.StripeSize == 0 {
			return fmt.Errorf("layout: component %d: unresolved stripe size: %w", i, ErrStripeSize)
		}
		if c.StripeCount == 0 && len(c.OSTs) == 0 {
			return fmt.Errorf("layout: component %d: unresolved stripe count: %w", i, ErrStripeCount)
		}
	}
	return s.Validate()
}
