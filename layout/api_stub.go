package layout

// This file holds the signatures the layout helper implements; it is
// replaced by the real implementation.

// Validate checks a spec: stripe sizes multiples of StripeAlign, counts -1,
// 0 or positive, component ends increasing and aligned, last one EOF.
func (s Spec) Validate() error { panic("layout: not implemented") }

// Resolve fills the zero fields of every component from def (the
// directory's or filesystem's default, whose first component is used), so
// the result has explicit counts and sizes. StripeOffset stays -1 if unset.
func (s Spec) Resolve(def Spec) Spec { panic("layout: not implemented") }

// Extent is one contiguous piece of a file extent mapped onto one object.
type Extent struct {
	Comp       int    // component index
	Stripe     int    // stripe index within the component
	Object     Object // the object holding it
	ObjOffset  int64  // offset within the object
	FileOffset int64  // offset within the file
	Length     int64
}

// Map splits the file extent [off, off+length) into per-object extents in
// file order, appending them to dst (allocation-free when dst has room).
func (l *Layout) Map(off, length int64, dst []Extent) []Extent { panic("layout: not implemented") }

// FileOffset returns the file offset of byte objOff of stripe's object.
func (c *Component) FileOffset(stripe int, objOff int64) int64 { panic("layout: not implemented") }

// FileSize returns the file size implied by the object sizes: the largest
// file offset holding a byte of any object, plus one (0 if all are empty).
// objSize(comp, stripe) reports each object's size.
func (l *Layout) FileSize(objSize func(comp, stripe int) int64) int64 {
	panic("layout: not implemented")
}

// ObjTrunc is the size one object must have after the file is truncated.
type ObjTrunc struct {
	Comp   int
	Stripe int
	Object Object
	Size   int64
}

// TruncatePoints returns, for every object of the layout, the object size
// that a file size of size implies; appended to dst.
func (l *Layout) TruncatePoints(size int64, dst []ObjTrunc) []ObjTrunc {
	panic("layout: not implemented")
}

// Target is one OST as the allocator sees it.
type Target struct {
	Index  uint32
	Total  uint64
	Avail  uint64
	Pools  []string
	Active bool
}

// Allocator chooses OSTs for new objects: round robin over the active
// targets (of the requested pool), skewed away from nearly full ones when
// free space is unbalanced. It is safe for concurrent use.
type Allocator struct {
	next uint32
}

// Instantiate turns a resolved spec into a layout for inode ino, allocating
// objects with sequence numbers from firstSeq upward. It returns the layout
// (Gen 1... set by the caller) and the next unused sequence number.
func (a *Allocator) Instantiate(spec Spec, ino uint64, firstSeq uint32, targets []Target) (Layout, uint32, error) {
	panic("layout: not implemented")
}
