package client

import (
	"sort"
	"sync"

	"github.com/stratafs/strata/layout"
)

// readAhead is one open file's readahead: it notices sequential reads and
// keeps up to window bytes ahead of the reader in flight or cached, fetched
// in unit-sized pieces in parallel. Writes through any File of the inode
// invalidate the pieces they overlap.
//
// The kernel splits one large read into several requests that may arrive out
// of order, so a read counts as sequential when it starts within a unit of
// where the previous one ended.
type readAhead struct {
	f      *File
	window int64
	unit   int64

	fetches sync.WaitGroup // prefetches in flight; close waits for them

	mu     sync.Mutex
	next   int64 // where a sequential reader is expected next
	streak int   // consecutive sequential reads
	bufs   []*raBuf
}

// raBuf is one prefetched piece.
type raBuf struct {
	off  int64
	data []byte
	done chan struct{}
	err  error // set before done closes
	refs int   // the fetch and readers copying out; guarded by readAhead.mu
	dead bool  // dropped from bufs; the buffer is pooled at refs == 0
}

func (b *raBuf) end() int64 { return b.off + int64(len(b.data)) }

// newReadAhead sizes the pieces after the first component's stripe size,
// between 1 MiB and maxChunk.
func newReadAhead(f *File, window int64, lay *layout.Layout) *readAhead {
	unit := int64(1 << 20)
	if len(lay.Components) > 0 {
		unit = min(max(lay.Components[0].StripeSize, unit), maxChunk)
	}
	return &readAhead{f: f, window: max(window, unit), unit: unit}
}

// segment is part of a read: served by a prefetched piece, or read
// directly when b is nil.
type segment struct {
	b        *raBuf
	off, end int64
}

// read fills p from file offset off (p lies within the file size).
func (ra *readAhead) read(p []byte, off int64) error {
	var arr [4]segment
	segs := ra.plan(arr[:0], off, off+int64(len(p)))
	var first error
	for _, s := range segs {
		dst := p[s.off-off : s.end-off]
		if data := ra.await(s); data != nil {
			copy(dst, data)
			ra.unref(s.b)
			continue
		}
		if err := ra.f.readDirect(dst, s.off); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// view reads [off, off+len(p)) into v without copying what readahead holds:
// v.Bufs gets slices of the pieces (held until v.Release) and, for what no
// piece holds, slices of p read directly.
func (ra *readAhead) view(v *ReadView, p []byte, off int64) error {
	v.ra = ra
	v.segs = ra.plan(v.segs[:0], off, off+int64(len(p)))
	var first error
	for _, s := range v.segs {
		if data := ra.await(s); data != nil {
			v.Bufs = append(v.Bufs, data)
			v.held = append(v.held, s.b)
			continue
		}
		dst := p[s.off-off : s.end-off]
		if err := ra.f.readDirect(dst, s.off); err != nil && first == nil {
			first = err
		}
		v.Bufs = append(v.Bufs, dst)
	}
	return first
}

// plan notes a read of [off, end), cuts it into segments (appended to
// segs) served by prefetched pieces, each referenced for the reader, or read
// directly, and starts the prefetches a sequential reader needs next.
func (ra *readAhead) plan(segs []segment, off, end int64) []segment {
	size := ra.f.Size() // before ra.mu: the inode's lock comes first
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if off >= ra.next-ra.unit && off <= ra.next+ra.unit {
		ra.streak++
		ra.next = max(ra.next, end)
	} else {
		ra.streak = 0
		ra.next = end
	}
	for pos := off; pos < end; {
		b, nextStart := ra.findLocked(pos)
		if b != nil {
			stop := min(end, b.end())
			b.refs++
			segs = append(segs, segment{b: b, off: pos, end: stop})
			pos = stop
			continue
		}
		stop := min(end, nextStart)
		segs = append(segs, segment{off: pos, end: stop})
		pos = stop
	}
	ra.evictBeforeLocked(off)
	if ra.streak > 0 {
		ra.prefetchLocked(end, size)
	}
	return segs
}

// await returns the bytes of segment s once its piece has them, or nil
// when s has no piece or its fetch failed (the reader then reads directly);
// a failed piece's reference is dropped here.
func (ra *readAhead) await(s segment) []byte {
	if s.b == nil {
		return nil
	}
	<-s.b.done
	if s.b.err != nil {
		ra.unref(s.b)
		return nil
	}
	return s.b.data[s.off-s.b.off : s.end-s.b.off]
}

// findLocked returns the live piece holding pos, or nil and the offset of
// the next piece after pos (or the largest offset).
func (ra *readAhead) findLocked(pos int64) (*raBuf, int64) {
	i := sort.Search(len(ra.bufs), func(i int) bool { return ra.bufs[i].end() > pos })
	if i == len(ra.bufs) {
		return nil, layout.EOF
	}
	if b := ra.bufs[i]; b.off <= pos {
		return b, b.end()
	}
	return nil, ra.bufs[i].off
}

// prefetchLocked starts fetching what is missing of [from, from+window),
// cut at the file size, in unit-aligned pieces.
func (ra *readAhead) prefetchLocked(from, size int64) {
	limit := min(from+ra.window, size)
	var held int64
	for _, b := range ra.bufs {
		held += int64(len(b.data))
	}
	for pos := from; pos < limit && held < ra.window; {
		b, nextStart := ra.findLocked(pos)
		if b != nil {
			pos = b.end()
			continue
		}
		stop := min((pos/ra.unit+1)*ra.unit, nextStart, limit)
		if !ra.f.c.raReserve(stop - pos) {
			break // the client's budget is spent: read directly
		}
		nb := &raBuf{off: pos, data: getBuf(int(stop - pos)), done: make(chan struct{}), refs: 1}
		i := sort.Search(len(ra.bufs), func(i int) bool { return ra.bufs[i].off > pos })
		ra.bufs = append(ra.bufs, nil)
		copy(ra.bufs[i+1:], ra.bufs[i:])
		ra.bufs[i] = nb
		held += int64(len(nb.data))
		ra.fetches.Add(1)
		go ra.fetch(nb)
		pos = stop
	}
}

// fetch reads one piece, after this client's buffered writes to it.
func (ra *readAhead) fetch(b *raBuf) {
	defer ra.fetches.Done()
	b.err = ra.f.readDirect(b.data, b.off)
	close(b.done)
	ra.unref(b)
}

// close drops every piece and waits for the prefetches in flight. It is
// safe on a nil readAhead.
func (ra *readAhead) close() {
	if ra == nil {
		return
	}
	ra.invalidate(0, layout.EOF)
	ra.fetches.Wait()
}

// unref drops a reference to b, pooling its buffer once it is dead and
// unreferenced.
func (ra *readAhead) unref(b *raBuf) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	b.refs--
	if b.dead && b.refs == 0 {
		ra.free(b)
	}
}

// free pools b's buffer and returns it to the client's budget.
func (ra *readAhead) free(b *raBuf) {
	ra.f.c.raHeld.Add(-int64(len(b.data)))
	putBuf(b.data)
	b.data = nil
}

// raReserve takes n bytes of the client's readahead budget, if it has
// them.
func (c *Client) raReserve(n int64) bool {
	if c.raHeld.Add(n) > c.cfg.ReadAheadTotal {
		c.raHeld.Add(-n)
		return false
	}
	return true
}

// evictBeforeLocked drops pieces that end at or before off: the reader has
// passed them.
func (ra *readAhead) evictBeforeLocked(off int64) {
	n := 0
	for _, b := range ra.bufs {
		if b.end() <= off {
			ra.killLocked(b)
			continue
		}
		ra.bufs[n] = b
		n++
	}
	clear(ra.bufs[n:])
	ra.bufs = ra.bufs[:n]
}

// invalidate drops the pieces overlapping [off, end). It is safe on a nil
// readAhead.
func (ra *readAhead) invalidate(off, end int64) {
	if ra == nil {
		return
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	n := 0
	for _, b := range ra.bufs {
		if b.off < end && off < b.end() {
			ra.killLocked(b)
			continue
		}
		ra.bufs[n] = b
		n++
	}
	clear(ra.bufs[n:])
	ra.bufs = ra.bufs[:n]
}

// killLocked marks b dead, pooling its buffer if nobody uses it.
func (ra *readAhead) killLocked(b *raBuf) {
	b.dead = true
	if b.refs == 0 {
		ra.free(b)
	}
}
