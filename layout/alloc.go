package layout

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// Target is one OST as the allocator sees it.
type Target struct {
	Index  uint32
	Total  uint64
	Avail  uint64
	Pools  []string
	Active bool
}

// inPool reports whether the target belongs to pool; every target belongs
// to the unnamed pool.
func (t *Target) inPool(pool string) bool {
	return pool == "" || slices.Contains(t.Pools, pool)
}

// lowOnSpace reports whether the allocator should pass the target over when
// others will do: it has under 1% of its capacity free, or under half the
// free space of the emptiest candidate (best). The second rule only bites
// when free space is unbalanced.
func (t *Target) lowOnSpace(best uint64) bool {
	return t.Avail < t.Total/100 || t.Avail < best/2
}

// Allocator chooses OSTs for new objects: round robin over the active
// targets (of the requested pool), skewed away from nearly full ones when
// free space is unbalanced. It is safe for concurrent use.
//
// With StripeOffset -1 a component takes count consecutive targets, in OST
// index order, from a shared cursor that advances by count on every
// allocation; targets that are low on space (see lowOnSpace: under 1% free,
// or under half the free space of the emptiest candidate) are taken only
// when the others cannot fill the count. With StripeOffset N it takes the
// candidate with the lowest index >= N (wrapping), then the next ones in
// index order, whatever their space. With OSTs listed it takes exactly
// those, in that order. A component never gets the same OST twice; across
// components of one file an OST may repeat.
type Allocator struct {
	next uint32
}

// Instantiate turns a resolved spec into a layout for inode ino, allocating
// objects with sequence numbers from firstSeq upward. It returns the layout
// (Gen 1... set by the caller) and the next unused sequence number.
//
// The spec must be resolved (see Resolve): a zero size, or a zero count
// without OSTs listed, is an error. A StripeCount of -1 takes every active
// target of the pool. Errors wrap ErrNoTargets (count larger than the
// candidates, or a listed OST not active), ErrUnknownPool (no active target
// in the pool), ErrUnknownOST (an offset or listed OST missing from the
// table, or a listed OST outside the pool) and Validate's errors.
func (a *Allocator) Instantiate(spec Spec, ino uint64, firstSeq uint32, targets []Target) (Layout, uint32, error) {
	if err := spec.validateResolved(); err != nil {
		return Layout{}, firstSeq, err
	}
	sorted := slices.Clone(targets)
	slices.SortStableFunc(sorted, func(x, y Target) int { return cmp.Compare(x.Index, y.Index) })
	sorted = slices.CompactFunc(sorted, func(x, y Target) bool { return x.Index == y.Index })

	lay := Layout{Components: make([]Component, len(spec.Components))}
	seq := uint64(firstSeq)
	start := int64(0)
	for i, cs := range spec.Components {
		osts, err := a.choose(cs, sorted)
		if err != nil {
			return Layout{}, firstSeq, fmt.Errorf("layout: component %d: %w", i, err)
		}
		if seq+uint64(len(osts)) > math.MaxUint32 {
			return Layout{}, firstSeq, fmt.Errorf("layout: inode %d: object sequence numbers exhausted", ino)
		}
		objs := make([]Object, len(osts))
		for s, ost := range osts {
			objs[s] = Object{OST: ost, ID: ObjectID{Ino: ino, Seq: uint32(seq)}}
			seq++
		}
		lay.Components[i] = Component{
			Start:       start,
			End:         cs.End,
			Pattern:     PatternRAID0,
			StripeCount: uint32(len(objs)),
			StripeSize:  cs.StripeSize,
			Pool:        cs.Pool,
			Objects:     objs,
		}
		start = cs.End
	}
	return lay, uint32(seq), nil
}

// choose returns the OST indices for one resolved component; sorted is the
// target table in index order without duplicates.
func (a *Allocator) choose(cs ComponentSpec, sorted []Target) ([]uint32, error) {
	if len(cs.OSTs) > 0 {
		return chooseListed(cs, sorted)
	}
	cands := make([]*Target, 0, len(sorted))
	for i := range sorted {
		if t := &sorted[i]; t.Active && t.inPool(cs.Pool) {
			cands = append(cands, t)
		}
	}
	if len(cands) == 0 {
		if cs.Pool != "" {
			return nil, fmt.Errorf("pool %q: %w", cs.Pool, ErrUnknownPool)
		}
		return nil, ErrNoTargets
	}
	count := int(cs.StripeCount)
	if count < 0 {
		count = len(cands)
	}
	if count > len(cands) {
		return nil, fmt.Errorf("stripe count %d, %d OSTs available: %w", count, len(cands), ErrNoTargets)
	}
	if cs.StripeOffset >= 0 {
		return chooseFrom(uint32(cs.StripeOffset), count, cands, sorted)
	}
	return a.chooseRoundRobin(count, cands), nil
}

// findTarget returns the position of OST idx in the index-sorted table.
func findTarget(sorted []Target, idx uint32) (int, bool) {
	return slices.BinarySearchFunc(sorted, idx, func(t Target, idx uint32) int { return cmp.Compare(t.Index, idx) })
}

// chooseListed checks an explicit OST list (lfs setstripe -o) against the
// table and returns its first StripeCount entries.
func chooseListed(cs ComponentSpec, sorted []Target) ([]uint32, error) {
	count := len(cs.OSTs)
	if cs.StripeCount > 0 {
		count = min(count, int(cs.StripeCount))
	}
	osts := slices.Clone(cs.OSTs[:count])
	for _, ost := range osts {
		i, found := findTarget(sorted, ost)
		switch {
		case !found:
			return nil, fmt.Errorf("OST %d: %w", ost, ErrUnknownOST)
		case !sorted[i].Active:
			return nil, fmt.Errorf("OST %d is not active: %w", ost, ErrNoTargets)
		case !sorted[i].inPool(cs.Pool):
			return nil, fmt.Errorf("OST %d not in pool %q: %w", ost, cs.Pool, ErrUnknownOST)
		}
	}
	return osts, nil
}

// chooseFrom serves lfs setstripe -i: count candidates in index order from
// the first whose index is at least first, wrapping. The offset must name
// an OST of the table; if that OST is not a candidate (inactive, or outside
// the pool) the next candidate starts instead.
func chooseFrom(first uint32, count int, cands []*Target, sorted []Target) ([]uint32, error) {
	if _, found := findTarget(sorted, first); !found {
		return nil, fmt.Errorf("stripe offset %d: %w", first, ErrUnknownOST)
	}
	at, _ := slices.BinarySearchFunc(cands, first, func(t *Target, idx uint32) int { return cmp.Compare(t.Index, idx) })
	return takeFrom(make([]uint32, 0, count), cands, uint32(at), count), nil
}

// chooseRoundRobin takes count candidates at the shared cursor, preferring
// those with enough free space.
func (a *Allocator) chooseRoundRobin(count int, cands []*Target) []uint32 {
	var best uint64
	for _, t := range cands {
		best = max(best, t.Avail)
	}
	preferred := make([]*Target, 0, len(cands))
	var low []*Target
	for _, t := range cands {
		if t.lowOnSpace(best) {
			low = append(low, t)
		} else {
			preferred = append(preferred, t)
		}
	}
	cursor := atomic.AddUint32(&a.next, uint32(count)) - uint32(count)
	osts := make([]uint32, 0, count)
	osts = takeFrom(osts, preferred, cursor, count)
	return takeFrom(osts, low, cursor, count-len(osts))
}

// takeFrom appends up to n targets of list, starting at position cursor
// (modulo its length) and wrapping.
func takeFrom(dst []uint32, list []*Target, cursor uint32, n int) []uint32 {
	n = min(n, len(list))
	if n <= 0 {
		return dst
	}
	at := int(cursor % uint32(len(list)))
	for k := range n {
		dst = append(dst, list[(at+k)%len(list)].Index)
	}
	return dst
}
