package layout

import (
	"math/rand/v2"
	"testing"
)

// randomLayout builds a valid layout of 1-3 components with stripe sizes of
// 1-4 x 64 KiB (so 192 KiB appears) and 1-6 stripes; the finite components
// end within a few MiB so that extents cross them often.
func randomLayout(r *rand.Rand) Layout {
	n := 1 + r.IntN(3)
	var l Layout
	var start int64
	var seq uint32
	for i := range n {
		ss := int64(1+r.IntN(4)) * StripeAlign
		count := 1 + r.IntN(6)
		end := EOF
		if i < n-1 {
			end = (start/ss + 1 + r.Int64N(24)) * ss
		}
		c := Component{Start: start, End: end, Pattern: PatternRAID0, StripeCount: uint32(count), StripeSize: ss}
		for s := range count {
			c.Objects = append(c.Objects, Object{OST: uint32(s), ID: ObjectID{Ino: 1, Seq: seq}})
			seq++
		}
		l.Components = append(l.Components, c)
		start = end
	}
	return l
}

// locate is the reference mapping: it walks the component's stripe units
// one at a time, counting each stripe's bytes, instead of dividing.
func locate(l *Layout, off int64) (comp, stripe int, objOff int64) {
	for ci, c := range l.Components {
		if off < c.Start || off >= c.End {
			continue
		}
		filled := make([]int64, c.StripeCount)
		unitStart := c.Start
		for s := 0; ; s = (s + 1) % int(c.StripeCount) {
			if off < unitStart+c.StripeSize {
				return ci, s, filled[s] + off - unitStart
			}
			filled[s] += c.StripeSize
			unitStart += c.StripeSize
		}
	}
	return -1, -1, -1
}

// finiteEnd is past every finite component boundary of l plus some of the
// last component.
func finiteEnd(l *Layout) int64 {
	last := l.Components[len(l.Components)-1]
	return last.Start + 16*int64(last.StripeCount)*last.StripeSize
}

type objKey struct{ comp, stripe int }

func TestPropertyMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var dst []Extent
	for iter := range 3000 {
		l := randomLayout(r)
		limit := finiteEnd(&l)
		off := r.Int64N(limit)
		length := 1 + r.Int64N(limit-off)
		if iter%10 == 0 {
			length = 1 + r.Int64N(3) // tiny, often odd, extents
		}
		dst = l.Map(off, length, dst[:0])
		pos := off
		for _, e := range dst {
			if e.FileOffset != pos || e.Length <= 0 {
				t.Fatalf("layout %+v: Map(%d, %d) gap or overlap at %+v (expected offset %d)", l, off, length, e, pos)
			}
			c := &l.Components[e.Comp]
			if e.FileOffset < c.Start || e.FileOffset+e.Length > c.End {
				t.Fatalf("layout %+v: extent %+v crosses its component", l, e)
			}
			if e.Object != c.Objects[e.Stripe] {
				t.Fatalf("layout %+v: extent %+v names the wrong object", l, e)
			}
			for _, at := range []int64{0, e.Length - 1} {
				comp, stripe, objOff := locate(&l, e.FileOffset+at)
				if comp != e.Comp || stripe != e.Stripe || objOff != e.ObjOffset+at {
					t.Fatalf("layout %+v: extent %+v byte %d: reference says comp %d stripe %d obj %d",
						l, e, at, comp, stripe, objOff)
				}
				if got := c.FileOffset(e.Stripe, e.ObjOffset+at); got != e.FileOffset+at {
					t.Fatalf("layout %+v: FileOffset(%d, %d) = %d, want %d", l, e.Stripe, e.ObjOffset+at, got, e.FileOffset+at)
				}
			}
			pos += e.Length
		}
		if pos != off+length {
			t.Fatalf("layout %+v: Map(%d, %d) covers up to %d", l, off, length, pos)
		}
	}
}

// TestPropertyObjectsDisjoint checks that no two file bytes share an object
// byte: the pieces of each object, over a whole prefix of the file, are
// disjoint.
func TestPropertyObjectsDisjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		l := randomLayout(r)
		type span struct{ lo, hi int64 }
		seen := map[objKey][]span{}
		for _, e := range l.Map(0, finiteEnd(&l), nil) {
			k := objKey{e.Comp, e.Stripe}
			for _, s := range seen[k] {
				if e.ObjOffset < s.hi && s.lo < e.ObjOffset+e.Length {
					t.Fatalf("layout %+v: extent %+v overlaps object bytes [%d, %d)", l, e, s.lo, s.hi)
				}
			}
			seen[k] = append(seen[k], span{e.ObjOffset, e.ObjOffset + e.Length})
		}
	}
}

func TestPropertyTruncate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		l := randomLayout(r)
		size := 1 + r.Int64N(finiteEnd(&l))
		if r.IntN(4) == 0 { // land on a stripe unit or component boundary
			size = (size/StripeAlign + 1) * StripeAlign
		}
		// The object sizes a file of size bytes needs are the ends of its
		// bytes' object extents.
		want := map[objKey]int64{}
		for _, e := range l.Map(0, size, nil) {
			k := objKey{e.Comp, e.Stripe}
			want[k] = max(want[k], e.ObjOffset+e.Length)
		}
		pts := l.TruncatePoints(size, nil)
		n := 0
		for _, c := range l.Components {
			n += len(c.Objects)
		}
		if len(pts) != n {
			t.Fatalf("layout %+v: %d truncate points for %d objects", l, len(pts), n)
		}
		for _, p := range pts {
			if p.Size != want[objKey{p.Comp, p.Stripe}] || p.Object != l.Components[p.Comp].Objects[p.Stripe] {
				t.Fatalf("layout %+v size %d: point %+v, want size %d", l, size, p, want[objKey{p.Comp, p.Stripe}])
			}
		}
		if got := l.FileSize(truncSizes(pts)); got != size {
			t.Fatalf("layout %+v: FileSize(TruncatePoints(%d)) = %d", l, size, got)
		}
	}
}

// TestPropertyFileSize checks FileSize against a scan of every object
// byte's file offset, with random (sparse) object sizes.
func TestPropertyFileSize(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		l := randomLayout(r)
		limit := finiteEnd(&l)
		sizes := map[objKey]int64{}
		for _, p := range l.TruncatePoints(limit, nil) {
			if r.IntN(3) > 0 && p.Size > 0 {
				sizes[objKey{p.Comp, p.Stripe}] = r.Int64N(p.Size + 1)
			}
		}
		var want int64
		for _, e := range l.Map(0, limit, nil) {
			have := sizes[objKey{e.Comp, e.Stripe}]
			if have > e.ObjOffset {
				want = max(want, e.FileOffset+min(e.Length, have-e.ObjOffset))
			}
		}
		got := l.FileSize(func(comp, stripe int) int64 { return sizes[objKey{comp, stripe}] })
		if got != want {
			t.Fatalf("layout %+v sizes %v: FileSize %d, want %d", l, sizes, got, want)
		}
	}
}
