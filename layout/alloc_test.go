package layout

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
)

const tib = 1 << 40

// equalTargets returns n active targets with the same free space.
func equalTargets(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{Index: uint32(i), Total: tib, Avail: tib / 2, Active: true}
	}
	return ts
}

// oneComp returns a resolved one-component spec.
func oneComp(count int32, offset int32, pool string, osts ...uint32) Spec {
	return Spec{Components: []ComponentSpec{{
		End: EOF, StripeCount: count, StripeSize: 1 << 20, StripeOffset: offset, Pool: pool, OSTs: osts,
	}}}
}

// ostsOf returns the OSTs of a layout's components, in stripe order.
func ostsOf(l Layout) [][]uint32 {
	out := make([][]uint32, len(l.Components))
	for i, c := range l.Components {
		for _, o := range c.Objects {
			out[i] = append(out[i], o.OST)
		}
	}
	return out
}

func mustInstantiate(t *testing.T, a *Allocator, spec Spec, targets []Target) Layout {
	t.Helper()
	l, _, err := a.Instantiate(spec, 1, 0, targets)
	if err != nil {
		t.Fatalf("Instantiate(%+v): %v", spec, err)
	}
	if err := l.Validate(); err != nil {
		t.Fatalf("Instantiate made an invalid layout: %v", err)
	}
	return l
}

func TestAllocRoundRobinSpreads(t *testing.T) {
	for _, tt := range []struct{ targets, count, files int }{
		{4, 1, 400}, {5, 2, 100}, {3, 2, 30}, {8, 8, 10}, {7, 3, 70},
	} {
		var a Allocator
		ts := equalTargets(tt.targets)
		uses := make([]int, tt.targets)
		for range tt.files {
			l := mustInstantiate(t, &a, oneComp(int32(tt.count), -1, ""), ts)
			for _, ost := range ostsOf(l)[0] {
				uses[ost]++
			}
		}
		want := tt.files * tt.count / tt.targets
		for ost, n := range uses {
			if n != want {
				t.Errorf("%d targets, count %d, %d files: OST %d used %d times, want %d (%v)",
					tt.targets, tt.count, tt.files, ost, n, want, uses)
			}
		}
	}
}

func TestAllocConcurrent(t *testing.T) {
	var a Allocator
	ts := equalTargets(4)
	const workers, files = 8, 500
	var mu sync.Mutex
	uses := make([]int, 4)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			local := make([]int, 4)
			for range files {
				l, _, err := a.Instantiate(oneComp(1, -1, ""), 1, 0, ts)
				if err != nil {
					t.Error(err)
					return
				}
				local[l.Components[0].Objects[0].OST]++
			}
			mu.Lock()
			for i, n := range local {
				uses[i] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for ost, n := range uses {
		if n != workers*files/4 {
			t.Errorf("OST %d used %d times, want %d (%v)", ost, n, workers*files/4, uses)
		}
	}
}

func TestAllocChoices(t *testing.T) {
	five := equalTargets(5)
	inactive2 := equalTargets(5)
	inactive2[2].Active = false
	pooled := equalTargets(6)
	for i := range pooled {
		if i%2 == 1 {
			pooled[i].Pools = []string{"ssd"}
		}
	}
	pooled[5].Active = false
	tests := []struct {
		name    string
		spec    Spec
		targets []Target
		want    []uint32
	}{
		{"offset", oneComp(3, 2, ""), five, []uint32{2, 3, 4}},
		{"offset wraps", oneComp(3, 4, ""), five, []uint32{4, 0, 1}},
		{"offset 0", oneComp(2, 0, ""), five, []uint32{0, 1}},
		{"offset of inactive OST starts at the next", oneComp(3, 2, ""), inactive2, []uint32{3, 4, 0}},
		{"offset skips inactive", oneComp(4, 1, ""), inactive2, []uint32{1, 3, 4, 0}},
		{"listed in order", oneComp(0, -1, "", 4, 1, 3), five, []uint32{4, 1, 3}},
		{"listed with count", oneComp(2, -1, "", 4, 1, 3), five, []uint32{4, 1}},
		{"listed with count -1", oneComp(-1, -1, "", 4, 1, 3), five, []uint32{4, 1, 3}},
		{"all", oneComp(-1, 0, ""), five, []uint32{0, 1, 2, 3, 4}},
		{"all active", oneComp(-1, 0, ""), inactive2, []uint32{0, 1, 3, 4}},
		{"pool", oneComp(-1, 0, "ssd"), pooled, []uint32{1, 3}},
		{"pool with offset outside it", oneComp(2, 2, "ssd"), pooled, []uint32{3, 1}},
		{"pool listed", oneComp(0, -1, "ssd", 3), pooled, []uint32{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Allocator
			got := ostsOf(mustInstantiate(t, &a, tt.spec, tt.targets))[0]
			if !slices.Equal(got, tt.want) {
				t.Fatalf("OSTs %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAllocInactiveSkipped(t *testing.T) {
	var a Allocator
	ts := equalTargets(4)
	ts[1].Active = false
	for range 40 {
		for _, ost := range ostsOf(mustInstantiate(t, &a, oneComp(3, -1, ""), ts))[0] {
			if ost == 1 {
				t.Fatal("inactive OST 1 chosen")
			}
		}
	}
}

func TestAllocPoolSpreads(t *testing.T) {
	var a Allocator
	ts := equalTargets(6)
	for i := range ts {
		if i >= 3 {
			ts[i].Pools = []string{"flash", "all"}
		}
	}
	uses := map[uint32]int{}
	for range 30 {
		for _, ost := range ostsOf(mustInstantiate(t, &a, oneComp(1, -1, "flash"), ts))[0] {
			uses[ost]++
		}
	}
	if len(uses) != 3 || uses[3] != 10 || uses[4] != 10 || uses[5] != 10 {
		t.Fatalf("pool flash usage %v, want 10 each on 3, 4, 5", uses)
	}
}

func TestAllocAvoidsFullTargets(t *testing.T) {
	ts := equalTargets(5)
	ts[1].Avail = ts[1].Total / 200 // under 1% free
	ts[3].Avail = ts[0].Avail / 3   // under half the best
	for count := 1; count <= 3; count++ {
		var a Allocator
		uses := make([]int, 5)
		for range 30 {
			for _, ost := range ostsOf(mustInstantiate(t, &a, oneComp(int32(count), -1, ""), ts))[0] {
				uses[ost]++
			}
		}
		if uses[1] != 0 || uses[3] != 0 {
			t.Errorf("count %d: low targets used: %v", count, uses)
		}
		if uses[0] != uses[2] || uses[2] != uses[4] {
			t.Errorf("count %d: uneven over the others: %v", count, uses)
		}
	}
	// Low targets fill a count the others cannot, never twice.
	var a Allocator
	for range 10 {
		got := ostsOf(mustInstantiate(t, &a, oneComp(4, -1, ""), ts))[0]
		sorted := slices.Sorted(slices.Values(got))
		if len(slices.Compact(sorted)) != 4 || !slices.Contains(got, 0) || !slices.Contains(got, 2) || !slices.Contains(got, 4) {
			t.Fatalf("count 4: %v", got)
		}
	}
	if got := ostsOf(mustInstantiate(t, &a, oneComp(-1, -1, ""), ts))[0]; len(got) != 5 {
		t.Fatalf("count -1 with low targets: %v", got)
	}
}

func TestAllocMildImbalanceStaysRoundRobin(t *testing.T) {
	ts := equalTargets(3)
	ts[0].Avail, ts[1].Avail, ts[2].Avail = 600, 500, 400
	for i := range ts {
		ts[i].Total = 1000
	}
	var a Allocator
	uses := make([]int, 3)
	for range 30 {
		uses[ostsOf(mustInstantiate(t, &a, oneComp(1, -1, ""), ts))[0][0]]++
	}
	if !slices.Equal(uses, []int{10, 10, 10}) {
		t.Fatalf("uses %v, want 10 each", uses)
	}
}

func TestAllocObjects(t *testing.T) {
	var a Allocator
	spec := Spec{Components: []ComponentSpec{
		{End: 1 << 20, StripeCount: 1, StripeSize: 1 << 20, StripeOffset: -1},
		{End: 48 << 20, StripeCount: 3, StripeSize: 192 << 10, StripeOffset: -1, Pool: "p"},
		{End: EOF, StripeCount: -1, StripeSize: 4 << 20, StripeOffset: -1},
	}}
	ts := equalTargets(4)
	for i := range ts {
		ts[i].Pools = []string{"p"}
	}
	orig := slices.Clone(ts)
	l, next, err := a.Instantiate(spec, 0x2a, 10, ts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if next != 18 {
		t.Fatalf("next seq %d, want 18", next)
	}
	if l.Gen != 0 {
		t.Fatalf("Gen %d, want 0 for the caller to set", l.Gen)
	}
	seq := uint32(10)
	for i, c := range l.Components {
		want := spec.Components[i]
		start := int64(0)
		if i > 0 {
			start = spec.Components[i-1].End
		}
		if c.Start != start || c.End != want.End || c.StripeSize != want.StripeSize || c.Pool != want.Pool || c.Pattern != PatternRAID0 {
			t.Fatalf("component %d = %+v from %+v", i, c, want)
		}
		for _, o := range c.Objects {
			if o.ID != (ObjectID{Ino: 0x2a, Seq: seq}) {
				t.Fatalf("component %d object %v, want seq %d", i, o.ID, seq)
			}
			seq++
		}
	}
	if !slices.EqualFunc(ts, orig, func(x, y Target) bool { return x.Index == y.Index }) {
		t.Fatal("Instantiate reordered the caller's targets")
	}
}

func TestAllocSeqExhausted(t *testing.T) {
	var a Allocator
	if _, _, err := a.Instantiate(oneComp(2, -1, ""), 1, math.MaxUint32-1, equalTargets(2)); err == nil {
		t.Fatal("sequence numbers wrapped without error")
	}
	_, next, err := a.Instantiate(oneComp(1, -1, ""), 1, math.MaxUint32-1, equalTargets(2))
	if err != nil || next != math.MaxUint32 {
		t.Fatalf("last sequence number: next %d, %v", next, err)
	}
}

func TestAllocErrors(t *testing.T) {
	five := equalTargets(5)
	inactive := equalTargets(3)
	for i := range inactive {
		inactive[i].Active = false
	}
	pooledInactive := equalTargets(3)
	pooledInactive[0].Pools, pooledInactive[0].Active = []string{"p"}, false
	unresolved := oneComp(0, -1, "")
	noSize := oneComp(1, -1, "")
	noSize.Components[0].StripeSize = 0
	badExtent := Spec{Components: []ComponentSpec{{End: 1 << 20, StripeCount: 1, StripeSize: 1 << 20, StripeOffset: -1}}}
	inheritedSizeMisfit := Spec{Components: []ComponentSpec{
		{End: 1 << 20, StripeCount: 1, StripeSize: 4 << 20, StripeOffset: -1},
		{End: EOF, StripeCount: 1, StripeSize: 1 << 20, StripeOffset: -1},
	}}
	inactiveListed := equalTargets(3)
	inactiveListed[1].Active = false
	tests := []struct {
		name    string
		spec    Spec
		targets []Target
		want    error
	}{
		{"count above targets", oneComp(6, -1, ""), five, ErrNoTargets},
		{"count above active targets", oneComp(2, -1, ""), inactiveListed, nil},
		{"count above active targets by one", oneComp(3, -1, ""), inactiveListed, ErrNoTargets},
		{"no targets", oneComp(1, -1, ""), nil, ErrNoTargets},
		{"no active targets", oneComp(-1, -1, ""), inactive, ErrNoTargets},
		{"unknown pool", oneComp(1, -1, "nope"), five, ErrUnknownPool},
		{"pool without active OST", oneComp(1, -1, "p"), pooledInactive, ErrUnknownPool},
		{"offset unknown", oneComp(1, 9, ""), five, ErrUnknownOST},
		{"offset with count above targets", oneComp(6, 1, ""), five, ErrNoTargets},
		{"listed unknown", oneComp(0, -1, "", 1, 9), five, ErrUnknownOST},
		{"listed inactive", oneComp(0, -1, "", 0, 1), inactiveListed, ErrNoTargets},
		{"listed outside pool", oneComp(0, -1, "p", 1), pooledInactive, ErrUnknownOST},
		{"listed twice", oneComp(0, -1, "", 1, 1), five, ErrDuplicateOST},
		{"unresolved count", unresolved, five, ErrStripeCount},
		{"unresolved size", noSize, five, ErrStripeSize},
		{"empty spec", Spec{}, five, ErrExtent},
		{"last not EOF", badExtent, five, ErrExtent},
		{"end not multiple of stripe size", inheritedSizeMisfit, five, ErrExtent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Allocator
			l, next, err := a.Instantiate(tt.spec, 1, 5, tt.targets)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Instantiate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Instantiate error %v, want %v", err, tt.want)
			}
			if next != 5 || l.Components != nil {
				t.Fatalf("failed Instantiate returned layout %+v, next %d", l, next)
			}
		})
	}
}
