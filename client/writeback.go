package client

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Write-behind: WriteAt copies data into chunks, each a contiguous run of
// bytes inside one cell of the file (a stripe unit, cut into maxChunk pieces
// when stripes are larger), so every chunk is one write to one object.
// Contiguous writes coalesce into their cell's pending chunk; a chunk that
// fills its cell is sent at once, in the background, in parallel with the
// others. Partial chunks go when the buffer is flushed (read of the range,
// flush, fsync, close), when the per-file or client-wide bound is reached, or
// after dirtyExpire.
//
// Ordering: a chunk that overlaps chunks still in flight waits for them
// before it is sent, so a later write of a byte always lands after an
// earlier one.
const (
	// maxInflight bounds the chunks in flight per file.
	maxInflight = 64
	// dirtyExpire is how long written data may sit in a partial chunk.
	dirtyExpire = time.Second
)

// chunk is dirty data of one cell.
type chunk struct {
	cell   int64  // file offset of the cell (the pending map's key)
	limit  int64  // file offset of the cell's end
	off    int64  // file offset of buf[0]
	buf    []byte // the data
	ref    proto.ObjRef
	objOff int64 // object offset of buf[0]
	f      *File // the latest writer; its capability sends the chunk
	done   chan struct{}
}

func (ch *chunk) end() int64 { return ch.off + int64(len(ch.buf)) }

func (ch *chunk) overlaps(off, end int64) bool { return ch.off < end && off < ch.end() }

// writeBehind is an inode's dirty data; its fields are guarded by inode.mu.
type writeBehind struct {
	pending  map[int64]*chunk // by cell
	inflight map[*chunk]struct{}
	dirty    int64 // bytes pending and in flight
	timer    *time.Timer
}

func (wb *writeBehind) init() {
	wb.pending = map[int64]*chunk{}
	wb.inflight = map[*chunk]struct{}{}
}

func (wb *writeBehind) stopTimer() {
	if wb.timer != nil {
		wb.timer.Stop()
		wb.timer = nil
	}
}

// cellOf returns the cell of component c holding file offset pos: the stripe
// unit, cut into maxChunk pieces.
func cellOf(c *layout.Component, pos int64) (start, end int64) {
	ss := c.StripeSize
	unit := c.Start + (pos-c.Start)/ss*ss
	start = unit + (pos-unit)/maxChunk*maxChunk
	end = min(start+maxChunk, unit+ss, c.End)
	return start, end
}

// bufferWrite copies p, to be written at off, into the write-behind buffer.
// It returns how many bytes it took: all of them, or fewer with the error
// that stopped it (a sticky error of an earlier write, or a hole in the
// layout).
func (in *inode) bufferWrite(f *File, p []byte, off int64) (int, error) {
	in.mu.Lock()
	lay := in.lay
	in.mu.Unlock()
	exts := getExtents()
	defer putExtents(exts)
	*exts = lay.Map(off, int64(len(p)), (*exts)[:0])
	done := 0
	for _, e := range *exts {
		if e.Stripe < 0 {
			return done, fmt.Errorf("client: write %#x at %d: component %d has no objects: %w", in.ino, e.FileOffset, e.Comp, syscall.EIO)
		}
		comp := &lay.Components[e.Comp]
		for pos, end := e.FileOffset, e.FileOffset+e.Length; pos < end; {
			cell, cellEnd := cellOf(comp, pos)
			stop := min(end, cellEnd)
			ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
			objOff := e.ObjOffset + (pos - e.FileOffset)
			if err := in.bufferPiece(f, p[pos-off:stop-off], pos, objOff, ref, cell, cellEnd); err != nil {
				return done, err
			}
			done += int(stop - pos)
			pos = stop
		}
	}
	if int64(done) < int64(len(p)) {
		return done, fmt.Errorf("client: write %#x at %d: beyond the layout: %w", in.ino, off+int64(done), syscall.EFBIG)
	}
	return done, nil
}

// bufferPiece buffers data that lies inside one cell.
func (in *inode) bufferPiece(f *File, data []byte, pos, objOff int64, ref proto.ObjRef, cell, cellEnd int64) error {
	c := in.c
	n := int64(len(data))
	c.budget.acquire(n, c.kickAll)
	in.mu.Lock()
	defer in.mu.Unlock()
	// A failure recorded meanwhile (in.err: a chunk of this same write,
	// or of another writer, failed while this one was buffering) does
	// not stop this piece: write checks for a sticky error once, before
	// it buffers anything, and the failure is reported once, by the next
	// flush, fsync or close. (Failing here made one write fail halfway or
	// not, depending only on how fast its first chunk failed.)
	for (in.wb.dirty > 0 && in.wb.dirty+n > c.cfg.WriteBehind) || len(in.wb.inflight) >= maxInflight {
		in.issueAllLocked()
		in.cond.Wait()
	}
	in.invalidateLocked(pos, pos+n)
	end := pos + n
	ch := in.wb.pending[cell]
	added := n
	if ch != nil && pos <= ch.end() && end >= ch.off {
		old := int64(len(ch.buf))
		ch.grow(pos, end)
		copy(ch.buf[pos-ch.off:], data)
		added = int64(len(ch.buf)) - old
	} else {
		if ch != nil {
			in.issueLocked(ch)
		}
		size := int(n)
		if pos == cell {
			size = int(cellEnd - cell) // likely a sequential stream: room for the whole cell
		}
		buf := getBuf(size)[:n]
		copy(buf, data)
		ch = &chunk{cell: cell, limit: cellEnd, off: pos, buf: buf, ref: ref, objOff: objOff, done: make(chan struct{})}
		in.wb.pending[cell] = ch
	}
	ch.f = f
	in.wb.dirty += added
	c.budget.release(n - added)
	in.noteWrite(end)
	if ch.end() == ch.limit {
		// The writer has reached the end of the cell: it is unlikely to
		// come back, so send the chunk now rather than at expiry.
		in.issueLocked(ch)
	} else if in.wb.timer == nil {
		in.wb.timer = time.AfterFunc(dirtyExpire, in.expire)
	}
	return nil
}

// grow widens the chunk to cover [pos, end), which touches or overlaps it,
// moving the data into a larger pooled buffer when it does not fit.
func (ch *chunk) grow(pos, end int64) {
	newOff, newEnd := min(ch.off, pos), max(ch.end(), end)
	if newOff == ch.off && newEnd-ch.off <= int64(cap(ch.buf)) {
		ch.buf = ch.buf[:newEnd-ch.off]
		return
	}
	buf := getBuf(int(newEnd - newOff))
	copy(buf[ch.off-newOff:], ch.buf)
	putBuf(ch.buf)
	ch.objOff -= ch.off - newOff
	ch.off, ch.buf = newOff, buf
}

// expire sends the partial chunks left pending for dirtyExpire.
func (in *inode) expire() {
	in.mu.Lock()
	in.wb.timer = nil
	in.issueAllLocked()
	in.mu.Unlock()
}

// kickAll starts sending the pending chunks of every open file; a writer
// waiting for client-wide budget calls it.
func (c *Client) kickAll() {
	for _, in := range c.openInodes() {
		in.mu.Lock()
		in.issueAllLocked()
		in.mu.Unlock()
	}
}

// issueAllLocked sends every pending chunk. Call with mu held.
func (in *inode) issueAllLocked() {
	for _, ch := range in.wb.pending {
		in.issueLocked(ch)
	}
}

// issueLocked moves a pending chunk in flight: a goroutine sends it after the
// overlapping chunks already in flight complete. Call with mu held.
func (in *inode) issueLocked(ch *chunk) {
	delete(in.wb.pending, ch.cell)
	var deps []chan struct{}
	for o := range in.wb.inflight {
		if o.overlaps(ch.off, ch.end()) {
			deps = append(deps, o.done)
		}
	}
	in.wb.inflight[ch] = struct{}{}
	w := in.writerLocked(ch.f)
	go in.send(ch, w, deps)
}

// send writes one chunk to its object and retires it.
func (in *inode) send(ch *chunk, w *File, deps []chan struct{}) {
	for _, d := range deps {
		<-d
	}
	verifier, err := w.writeObject(in.c.bg, ch.ref, ch.objOff, ch.buf, false)
	if errors.Is(err, errLayoutChanged) {
		// The file was restriped (or released) under the chunk: write
		// its bytes where the new layout puts them.
		err = w.transfer(in.c.bg, true, ch.buf, ch.off, false)
	}
	n := int64(len(ch.buf))
	in.mu.Lock()
	delete(in.wb.inflight, ch)
	in.wb.dirty -= n
	if err != nil {
		in.recordErr(err)
	} else if verifier != 0 {
		in.noteWritten(ch.ref, verifier)
	}
	in.cond.Broadcast()
	in.mu.Unlock()
	in.c.budget.release(n)
	putBuf(ch.buf)
	close(ch.done)
}

// flushRange sends the pending chunks overlapping [off, end) and waits for
// every chunk in flight there, so that a read of the range sees the data.
func (in *inode) flushRange(off, end int64) {
	in.mu.Lock()
	if len(in.wb.pending) == 0 && len(in.wb.inflight) == 0 {
		in.mu.Unlock()
		return
	}
	for _, ch := range in.wb.pending {
		if ch.overlaps(off, end) {
			in.issueLocked(ch)
		}
	}
	var wait []chan struct{}
	for ch := range in.wb.inflight {
		if ch.overlaps(off, end) {
			wait = append(wait, ch.done)
		}
	}
	in.mu.Unlock()
	for _, d := range wait {
		<-d
	}
}

// flushAll sends every pending chunk, waits for all chunks in flight and
// returns the first write error not reported yet (see takeErr).
func (in *inode) flushAll() error {
	in.flushWait()
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.takeErr()
}

// flushWait sends every pending chunk and waits for all chunks in flight,
// leaving any write error to be reported.
func (in *inode) flushWait() {
	in.mu.Lock()
	in.issueAllLocked()
	wait := make([]chan struct{}, 0, len(in.wb.inflight))
	for ch := range in.wb.inflight {
		wait = append(wait, ch.done)
	}
	in.mu.Unlock()
	for _, d := range wait {
		<-d
	}
}

// invalidateLocked drops what every open File of the inode read ahead in
// [off, end). Call with mu held.
func (in *inode) invalidateLocked(off, end int64) {
	for f := range in.files {
		f.ra.invalidate(off, end)
	}
}
