package layout

import (
	"encoding/binary"
	"testing"
)

// specFromBytes decodes up to four components from fuzz input. Ends and
// sizes are usually small multiples of 64 KiB, so that valid specs are
// common, and sometimes raw values.
func specFromBytes(b []byte) Spec {
	var s Spec
	for len(b) >= 12 && len(s.Components) < 4 {
		var c ComponentSpec
		flags := b[0]
		if flags&1 != 0 {
			c.End = int64(binary.LittleEndian.Uint32(b[1:5])) * StripeAlign
		} else {
			c.End = int64(int32(binary.LittleEndian.Uint32(b[1:5])))
		}
		if flags&2 != 0 {
			c.StripeSize = int64(b[5]) * StripeAlign
		} else {
			c.StripeSize = int64(int8(b[5])) << 12
		}
		c.StripeCount = int32(int8(b[6]))
		c.StripeOffset = int32(int8(b[7]))
		if flags&4 != 0 {
			for _, o := range b[8:12] {
				c.OSTs = append(c.OSTs, uint32(o%12))
			}
		}
		if flags&8 != 0 {
			c.Pool = "even"
		}
		if flags&16 != 0 {
			c.End = 0
		}
		s.Components = append(s.Components, c)
		b = b[12:]
	}
	return s
}

func fuzzTargets() []Target {
	ts := make([]Target, 10)
	for i := range ts {
		ts[i] = Target{Index: uint32(i), Total: 1 << 40, Avail: uint64(i+1) << 36, Active: i != 7}
		if i%2 == 0 {
			ts[i].Pools = []string{"even"}
		}
	}
	return ts
}

// FuzzSpecMap checks that any spec either fails validation or instantiates
// to a valid layout whose Map covers any extent exactly, and that nothing
// panics on the way.
func FuzzSpecMap(f *testing.F) {
	f.Add([]byte{3, 16, 0, 0, 0, 16, 1, 255, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 4, 255, 0, 0, 0, 0}, int64(0), int64(5<<20))
	f.Add([]byte{19, 0, 0, 0, 0, 3, 255, 2, 0, 0, 0, 0}, int64(12345), int64(999999))
	f.Add([]byte{7, 1, 0, 0, 0, 1, 0, 255, 1, 2, 3, 4, 18, 0, 0, 0, 0, 16, 2, 0, 0, 0, 0, 0}, int64(65535), int64(131073))
	f.Fuzz(func(t *testing.T, b []byte, off, length int64) {
		spec := specFromBytes(b)
		if err := spec.Validate(); err != nil {
			return
		}
		var a Allocator
		l, _, err := a.Instantiate(spec.Resolve(DefaultSpec(2, 1<<20)), 9, 0, fuzzTargets())
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("Instantiate(%+v) made an invalid layout: %v", spec, err)
		}
		length = min(length, 16<<20)
		ext := l.Map(off, length, nil)
		var total int64
		pos := off
		for _, e := range ext {
			if e.FileOffset != pos || e.Length <= 0 || e.Stripe < 0 {
				t.Fatalf("layout %+v: Map(%d, %d): bad extent %+v", l, off, length, e)
			}
			if got := l.Components[e.Comp].FileOffset(e.Stripe, e.ObjOffset); got != e.FileOffset {
				t.Fatalf("layout %+v: FileOffset of %+v = %d", l, e, got)
			}
			total += e.Length
			pos += e.Length
		}
		if off >= 0 && length > 0 && total != min(length, EOF-off) {
			t.Fatalf("layout %+v: Map(%d, %d) covers %d bytes", l, off, length, total)
		}
		if off > 0 {
			if got := l.FileSize(truncSizes(l.TruncatePoints(off, nil))); got != off {
				t.Fatalf("layout %+v: FileSize(TruncatePoints(%d)) = %d", l, off, got)
			}
		}
	})
}

// FuzzLayoutRaw feeds the mapping functions a component as hostile as the
// network could send: they must not panic or loop forever.
func FuzzLayoutRaw(f *testing.F) {
	f.Add(int64(0), int64(1<<20), int64(1<<20), uint32(2), uint8(2), int64(100), int64(1<<20), int64(7))
	f.Add(int64(-5), int64(-1), int64(0), uint32(0), uint8(0), int64(0), int64(0), int64(0))
	f.Add(int64(1<<62), EOF, int64(1), uint32(3), uint8(3), int64(1<<62), int64(1<<30), int64(1<<62))
	f.Add(int64(0), EOF, int64(1<<20), uint32(5), uint8(2), int64(0), int64(1<<20), int64(3))
	f.Fuzz(func(t *testing.T, start, end, ss int64, count uint32, nobj uint8, off, length, objOff int64) {
		c := Component{Start: start, End: end, Pattern: PatternRAID0, StripeCount: count, StripeSize: ss}
		for i := range int(nobj) {
			c.Objects = append(c.Objects, Object{OST: uint32(i)})
		}
		l := Layout{Components: []Component{c, {Start: end, End: EOF, StripeCount: 1, StripeSize: 1 << 20, Objects: []Object{{}}}}}
		_ = l.Validate()
		var total int64
		for _, e := range l.Map(off, min(length, 1<<16), nil) {
			total += e.Length
		}
		if total < 0 || total > max(min(length, 1<<16), 0) {
			t.Fatalf("Map covered %d bytes of %d", total, length)
		}
		for s := range min(int(nobj), 4) + 1 {
			l.Components[0].FileOffset(s, objOff)
		}
		l.FileSize(func(int, int) int64 { return objOff })
		l.TruncatePoints(off, nil)
	})
}
