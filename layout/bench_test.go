package layout

import (
	"testing"
)

// benchLayout is a three-component PFL layout like a site default: one
// 1 MiB stripe up to 4 MiB, four up to 256 MiB, then all of 16.
func benchLayout() Layout {
	l, _, err := new(Allocator).Instantiate(Spec{Components: []ComponentSpec{
		{End: 4 << 20, StripeCount: 1, StripeSize: 1 << 20, StripeOffset: -1},
		{End: 256 << 20, StripeCount: 4, StripeSize: 1 << 20, StripeOffset: -1},
		{End: EOF, StripeCount: -1, StripeSize: 4 << 20, StripeOffset: -1},
	}}, 1, 0, equalTargets(16))
	if err != nil {
		panic(err)
	}
	return l
}

func TestMapAllocationFree(t *testing.T) {
	l := benchLayout()
	dst := make([]Extent, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		dst = l.Map(3<<20, 8<<20, dst[:0])
		dst = l.Map(250<<20, 64<<20, dst[:0])
	})
	if allocs != 0 {
		t.Fatalf("Map allocates %v times per run", allocs)
	}
	pts := make([]ObjTrunc, 0, 32)
	allocs = testing.AllocsPerRun(100, func() {
		pts = l.TruncatePoints(300<<20, pts[:0])
		_ = l.FileSize(truncSizes(pts))
	})
	if allocs != 0 {
		t.Fatalf("TruncatePoints and FileSize allocate %v times per run", allocs)
	}
}

func BenchmarkMap(b *testing.B) {
	l := benchLayout()
	dst := make([]Extent, 0, 64)
	for _, bc := range []struct {
		name        string
		off, length int64
	}{
		{"4KiB", 300 << 20, 4 << 10},
		{"1MiB-across-components", 3<<20 + 512<<10, 1 << 20},
		{"64MiB-16-stripes", 1 << 30, 64 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(bc.length)
			for b.Loop() {
				dst = l.Map(bc.off, bc.length, dst[:0])
			}
		})
	}
}
