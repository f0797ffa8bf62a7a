package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// File is an open regular file: an MDS open handle, a capability for the
// file's objects and the striped I/O engine. ReadAt and WriteAt may be called
// concurrently; Read, Write and Seek share a file position as os.File does.
//
// Writes are buffered (write-behind) unless the file is strict (the client's
// mode, or the file's own AttrFlagStrict), the write bound is negative, or
// the file was opened with O_SYNC, O_DSYNC or O_DIRECT. The first write
// error is remembered and returned by Flush, Sync, Close and every later
// write.
//
// A file opened with O_APPEND writes at the end of the file whatever offset
// it is given: every write reserves its range at the MDS first (OpAppend),
// so appends from any number of clients never overlap.
type File struct {
	c       *Client
	in      *inode
	ino     uint64
	handle  uint64
	session uint64
	flags   int
	strict  bool // no data caching: the client's mode or the file's flag
	quota   bool // the file's IDs have block limits: extending needs room (quota.go)
	cred    proto.Cred
	attr    proto.Attr // at open
	ra      *readAhead // nil when the file reads without readahead

	capMu     sync.Mutex
	cap       proto.Capability
	capIssued time.Time

	posMu sync.Mutex
	pos   int64

	closed atomic.Bool
	once   sync.Once
	err    error // Close's result
}

// capMargin is how long before expiry a capability is refreshed; a shorter
// lived capability is refreshed after three quarters of its life.
const capMargin = 10 * time.Second

// newFile wraps an open reply.
func (c *Client) newFile(cred proto.Cred, flags int, resp *proto.OpenResp) *File {
	f := &File{
		c:         c,
		ino:       resp.Attr.Ino,
		handle:    resp.Handle,
		session:   c.sessionID(),
		flags:     flags &^ OKillPrivs,
		strict:    c.strict || resp.Attr.Flags&proto.AttrFlagStrict != 0,
		cred:      cred,
		attr:      resp.Attr,
		cap:       resp.Cap,
		capIssued: time.Now(),
	}
	f.quota = resp.Attr.Flags&proto.AttrFlagQuota != 0
	if c.cfg.ReadAhead > 0 && !f.strict && flags&syscall.O_DIRECT == 0 && f.canRead() {
		f.ra = newReadAhead(f, c.cfg.ReadAhead, &resp.Layout)
	}
	// Last: once the inode lists f, writes through its other Files
	// invalidate f.ra.
	f.in = c.acquireInode(f, resp)
	return f
}

// Ino returns the file's inode number.
func (f *File) Ino() uint64 { return f.ino }

// Handle returns the MDS's open handle, for requests made on behalf of this
// open file (ftruncate through Client.Setattr).
func (f *File) Handle() uint64 { return f.handle }

// Flags returns the O_* flags the file was opened with.
func (f *File) Flags() int { return f.flags }

// Attr returns the attributes the MDS reported at open.
func (f *File) Attr() proto.Attr { return f.attr }

// Strict reports whether the file is read and written without client-side
// caching: the client is strict, or the file was created strict
// (proto.AttrFlagStrict, from its directory).
func (f *File) Strict() bool { return f.strict }

// Layout returns the file's layout.
func (f *File) Layout() layout.Layout {
	f.in.mu.Lock()
	defer f.in.mu.Unlock()
	return f.in.lay
}

// Size returns the file size as this client knows it: the larger of the MDS
// size (at open or the last Getattr) and the end of this client's writes.
func (f *File) Size() int64 {
	f.in.mu.Lock()
	defer f.in.mu.Unlock()
	return f.in.size()
}

// sizeForRead returns the size as Size does, and whether a lock was granted
// since this client learnt it: another client may have changed it.
func (f *File) sizeForRead() (int64, bool) {
	f.in.mu.Lock()
	defer f.in.mu.Unlock()
	return f.in.size(), f.in.sizeStale
}

func (f *File) canRead() bool  { return f.flags&syscall.O_ACCMODE != syscall.O_WRONLY }
func (f *File) canWrite() bool { return f.flags&syscall.O_ACCMODE != syscall.O_RDONLY }

// syncWrites reports whether writes bypass the write-behind buffer.
func (f *File) syncWrites() bool {
	return f.strict || f.c.cfg.WriteBehind < 0 || f.flags&(syscall.O_SYNC|syscall.O_DSYNC|syscall.O_DIRECT) != 0
}

// durableWrites reports whether each write must be on stable storage before
// it returns (O_SYNC, O_DSYNC, O_DIRECT).
func (f *File) durableWrites() bool {
	return f.flags&(syscall.O_SYNC|syscall.O_DSYNC|syscall.O_DIRECT) != 0
}

// ReadAt reads len(p) bytes at off. Holes and bytes past an object's end
// read as zeros up to the file size; it never returns bytes beyond the size
// and returns io.EOF when it stops short there.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.readLen(p, off)
	if n == 0 {
		return 0, err
	}
	if f.ra != nil {
		err = f.ra.read(p[:n], off)
	} else {
		err = f.readDirect(p[:n], off)
	}
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// ReadAtView reads as ReadAt does, but leaves what readahead holds where it
// is: v.Bufs gets the bytes read, slices of readahead buffers lent to v and
// of p (read into directly where no prefetched piece has the data). The
// caller sends v.Bufs on and then calls v.Release; after an error v holds
// nothing.
func (f *File) ReadAtView(v *ReadView, p []byte, off int64) (int, error) {
	n, err := f.readLen(p, off)
	if n == 0 {
		return 0, err
	}
	if f.ra != nil {
		err = f.ra.view(v, p[:n], off)
	} else if err = f.readDirect(p[:n], off); err == nil {
		v.Bufs = append(v.Bufs, p[:n])
	}
	if err != nil {
		v.Release()
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readLen checks a read of len(p) bytes at off and returns how many of them
// lie within the file size: 0 with io.EOF at or past the end, 0 with a nil
// error for an empty p.
func (f *File) readLen(p []byte, off int64) (int, error) {
	if f.closed.Load() {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("client: read %#x at %d: %w", f.ino, off, syscall.EINVAL)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := f.Restore(f.c.bg); err != nil {
		return 0, err
	}
	size, stale := f.sizeForRead()
	if stale || f.strict && off+int64(len(p)) > size {
		// Another client's extending writes are at the MDS once written
		// (strict), and its size changes once it released a lock that
		// this client took since.
		if _, err := f.c.Getattr(f.c.bg, f.ino); err != nil {
			return 0, err
		}
		size = f.Size()
	}
	if off >= size {
		return 0, io.EOF
	}
	return int(min(int64(len(p)), size-off)), nil
}

// readDirect reads p at off from the OSSes, after this client's buffered
// writes to the range.
func (f *File) readDirect(p []byte, off int64) error {
	f.in.flushRange(off, off+int64(len(p)))
	return f.transfer(f.c.bg, false, p, off, false)
}

// WriteAt writes p at off. On a file opened with O_APPEND it writes at the
// end of the file instead, as pwrite(2) does on Linux.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	_, n, err := f.write(p, off)
	return n, err
}

// write writes p at off, or at the end of the file with O_APPEND, and
// returns where it wrote.
func (f *File) write(p []byte, off int64) (int64, int, error) {
	if f.closed.Load() {
		return off, 0, ErrClosed
	}
	if !f.canWrite() {
		return off, 0, fmt.Errorf("client: write %#x: not open for writing: %w", f.ino, syscall.EBADF)
	}
	if off < 0 {
		return off, 0, fmt.Errorf("client: write %#x at %d: %w", f.ino, off, syscall.EINVAL)
	}
	if len(p) == 0 {
		return off, 0, nil
	}
	if err := f.Restore(f.c.bg); err != nil {
		return off, 0, err
	}
	in := f.in
	in.mu.Lock()
	err := in.err
	in.mu.Unlock()
	if err != nil {
		return off, 0, err
	}
	if f.flags&syscall.O_APPEND != 0 {
		at, err := f.reserveAppend(int64(len(p)))
		if err != nil {
			return off, 0, err
		}
		off = at
	}
	if err := f.quotaRoom(f.c.bg, off+int64(len(p))); err != nil {
		return off, 0, err
	}
	if f.syncWrites() {
		if err := f.writeSync(p, off); err != nil {
			return off, 0, err
		}
		return off, len(p), nil
	}
	n, err := in.bufferWrite(f, p, off)
	return off, n, err
}

// reserveAppend reserves n bytes at the end of the file at the MDS, which
// raises the size over them at once, and returns their offset. This
// client's writes that extended the file and are not reported yet are
// reported first, so that the reservation comes after them.
func (f *File) reserveAppend(n int64) (int64, error) {
	in := f.in
	in.mu.Lock()
	behind := in.unreported && in.writeEnd > in.mdsSize
	in.mu.Unlock()
	if behind {
		if err := f.reportSize(f.c.bg, false); err != nil {
			return 0, err
		}
	}
	req := proto.AppendReq{Session: f.session, Ino: f.ino, Handle: f.handle, Len: uint64(n)}
	var resp proto.AppendResp
	if err := f.c.mdsCall(f.c.bg, f.ino, proto.OpAppend, &req, &resp); err != nil {
		return 0, fmt.Errorf("client: append %d bytes to %#x: %w", n, f.ino, err)
	}
	off := int64(resp.Offset)
	in.mu.Lock()
	// The MDS size covers the reservation already; the write itself
	// moves writeEnd when it is made.
	in.mdsSize = max(in.mdsSize, off+n)
	in.mu.Unlock()
	return off, nil
}

// writeSync writes p at off straight to the OSSes and, where the mode asks
// for it, reports an extended size to the MDS before returning.
func (f *File) writeSync(p []byte, off int64) error {
	in := f.in
	end := off + int64(len(p))
	in.flushRange(off, end)
	in.mu.Lock()
	in.invalidateLocked(off, end)
	in.mu.Unlock()
	durable := f.durableWrites()
	if err := f.transfer(f.c.bg, true, p, off, durable); err != nil {
		in.mu.Lock()
		in.recordErr(err)
		in.mu.Unlock()
		return err
	}
	in.mu.Lock()
	extends := end > in.mdsSize
	in.noteWrite(end)
	in.mu.Unlock()
	if extends && (f.strict || f.flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0) {
		return f.reportSize(f.c.bg, f.flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0)
	}
	return nil
}

// Read reads from the file position and advances it.
func (f *File) Read(p []byte) (int, error) {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Write writes at the file position (at the end with O_APPEND) and advances it.
func (f *File) Write(p []byte) (int, error) {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	off, n, err := f.write(p, f.pos)
	f.pos = off + int64(n)
	return n, err
}

// Seek sets the file position for Read and Write as io.Seeker describes.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.pos
	case io.SeekEnd:
		base = f.Size()
	default:
		return 0, fmt.Errorf("client: seek whence %d: %w", whence, syscall.EINVAL)
	}
	if base+offset < 0 {
		return 0, fmt.Errorf("client: seek to %d: %w", base+offset, syscall.EINVAL)
	}
	f.pos = base + offset
	return f.pos, nil
}

// Truncate sets the file size, as ftruncate(2) on this open file.
func (f *File) Truncate(size int64) error {
	if f.closed.Load() {
		return ErrClosed
	}
	if size < 0 {
		return fmt.Errorf("client: truncate %#x to %d: %w", f.ino, size, syscall.EINVAL)
	}
	req := proto.SetattrReq{Valid: proto.SetSize, Size: uint64(size), Handle: f.handle}
	if f.cred.Uid != 0 {
		// The library cannot see capabilities: a non-root caller is
		// taken to lack CAP_FSETID, as the FUSE mount's kernel says.
		req.Valid |= proto.SetKillPrivs
	}
	_, err := f.c.Setattr(f.c.bg, f.cred, f.ino, req)
	return err
}

// KillPrivs clears the file's set-id bits at the MDS, as a write by a caller
// without CAP_FSETID does on Linux (the FUSE mount calls it when the kernel
// flags such a write), and returns the new attributes.
func (f *File) KillPrivs(ctx context.Context, cred proto.Cred) (proto.Attr, error) {
	return f.c.Setattr(ctx, cred, f.ino, proto.SetattrReq{Valid: proto.SetKillPrivs, Handle: f.handle})
}

// Flush sends every buffered write of the file to the OSSes, waits for them
// and reports the written size to the MDS, so that a client opening the file
// next sees the data. It returns the first write error of the file.
func (f *File) Flush() error {
	if f.closed.Load() {
		return ErrClosed
	}
	if err := f.in.flushAll(); err != nil {
		return err
	}
	return f.reportSize(f.c.bg, false)
}

// Sync makes the file's data and size durable (fsync): it flushes, syncs
// every object of the file's layout (whoever wrote it, through whichever
// descriptor: data another process or an earlier open left in an OSS's page
// cache is made durable too), then has the MDS record the size durably. If
// an OST's write verifier changed since this client's unsynced writes to it
// (the OSS host rebooted and may have lost them), Sync fails with EIO
// rather than report them durable.
func (f *File) Sync() error {
	if f.closed.Load() {
		return ErrClosed
	}
	in := f.in
	if err := in.flushAll(); err != nil {
		return err
	}
	in.mu.Lock()
	written := in.written
	in.written = map[layout.Object]writtenObj{}
	objs := layoutObjects(&in.lay)
	w := in.writerLocked(f)
	in.mu.Unlock()
	verifiers, err := w.syncObjects(f.c.bg, objs)
	if err != nil {
		in.mu.Lock()
		for k, v := range written {
			if _, again := in.written[k]; !again {
				in.written[k] = v
			}
		}
		in.mu.Unlock()
		return err
	}
	for key, wr := range written {
		if v, ok := verifiers[key]; ok && (wr.mixed || v != wr.verifier) {
			return fmt.Errorf("client: fsync %#x: the OSS of OST %d restarted with a new verifier since object %s was written: unsynced writes may be lost: %w",
				f.ino, wr.ref.OST, wr.ref.ID, syscall.EIO)
		}
	}
	return f.reportSize(f.c.bg, true)
}

// layoutObjects lists every object of a layout once.
func layoutObjects(lay *layout.Layout) []proto.ObjRef {
	var out []proto.ObjRef
	for _, c := range lay.Components {
		for s, o := range c.Objects {
			out = append(out, proto.ObjRef{OST: o.OST, ID: o.ID, Stripe: uint32(s)})
		}
	}
	return out
}

// syncObjects sends OpObjSync for every object, in parallel, and returns
// the verifier each OST answered with.
func (f *File) syncObjects(ctx context.Context, objs []proto.ObjRef) (map[layout.Object]uint64, error) {
	verifiers := make(map[layout.Object]uint64, len(objs))
	var mu sync.Mutex
	err := parallel(len(objs), func(i int) error {
		ref := objs[i]
		var resp proto.ObjSyncResp
		err := f.objCall(ctx, ref, func(cp proto.Capability, addr string) error {
			return f.c.rpc.Call(ctx, addr, proto.OpObjSync, &proto.ObjSyncReq{Cap: cp, Obj: ref}, &resp)
		})
		if err != nil {
			return fmt.Errorf("client: sync object %s on OST %d: %w", ref.ID, ref.OST, err)
		}
		mu.Lock()
		verifiers[layout.Object{OST: ref.OST, ID: ref.ID}] = resp.Verifier
		mu.Unlock()
		return nil
	})
	return verifiers, err
}

// reportSize tells the MDS the largest end written through this client and
// the time of the last write, if any write is unreported (or, with sync, not
// yet durable at the MDS). It goes through a handle open for writing when f
// is not one.
func (f *File) reportSize(ctx context.Context, sync bool) error {
	in := f.in
	in.mu.Lock()
	if !in.unreported && !(sync && in.unsynced) && len(in.stored) == 0 {
		in.mu.Unlock()
		return nil
	}
	w := in.writerLocked(f)
	stored := in.takeStoredLocked()
	req := proto.SetSizeReq{Session: f.c.sessionID(), Ino: f.ino, Handle: w.handle, Size: uint64(in.writeEnd), Mtime: in.lastWrite, Sync: sync, Epoch: in.epoch,
		Written: stored.index, WrittenGen: stored.gen}
	wasUnreported, wasUnsynced := in.unreported, in.unsynced
	in.unreported = false
	if sync {
		in.unsynced = false
	}
	in.mu.Unlock()
	var resp proto.AttrResp
	gen := f.c.leaseGen()
	err := f.c.mdsCall(ctx, f.ino, proto.OpSetSize, &req, &resp)
	f.c.refreshAttr(gen, f.ino, err, &resp)
	if err != nil {
		in.mu.Lock()
		in.unreported = in.unreported || wasUnreported
		in.unsynced = in.unsynced || wasUnsynced
		in.restoreStoredLocked(stored)
		in.mu.Unlock()
		return fmt.Errorf("client: report size of %#x: %w", f.ino, err)
	}
	in.mu.Lock()
	in.mdsSize = int64(resp.Attr.Size)
	in.mu.Unlock()
	return nil
}

// Close flushes the file, releases the MDS handle with the written size and
// returns the first error met (a buffered write's included). Closing twice
// returns the first result.
func (f *File) Close() error {
	f.once.Do(func() {
		in := f.in
		err := in.flushAll() // a deferred write error not reported yet
		in.mu.Lock()
		// Only a handle open for writing reports writes; one is open
		// while any are unreported, since only such handles write.
		req := proto.CloseReq{Session: f.session, Ino: f.ino, Handle: f.handle}
		if f.canWrite() && (in.unreported || len(in.stored) > 0) {
			req.Wrote, req.Size, req.Mtime, req.Epoch = true, uint64(in.writeEnd), in.lastWrite, in.epoch
			stored := in.takeStoredLocked()
			req.Written, req.WrittenGen = stored.index, stored.gen
			in.unreported = false
		}
		in.mu.Unlock()
		f.closed.Store(true)
		f.ra.close()
		if !f.canWrite() {
			// Nothing to report and nothing to learn: deferred
			// and batched (release.go). Nothing changed either: the
			// attributes cached under a lease stay.
			f.c.deferRelease(req)
			f.c.releaseInode(in, f)
			f.err = err
			return
		}
		var resp proto.AttrResp
		ctx, cancel := context.WithTimeout(context.Background(), f.c.cfg.RecoveryTimeout+time.Minute)
		defer cancel()
		gen := f.c.leaseGen()
		cerr := f.c.mdsCall(ctx, f.ino, proto.OpClose, &req, &resp)
		if req.Wrote || cerr != nil {
			// (A close that reports nothing changes nothing: what
			// is cached stays.)
			f.c.refreshAttr(gen, f.ino, cerr, &resp)
		}
		if errors.Is(cerr, syscall.EBADF) && !req.Wrote {
			// A read handle the MDS no longer has (a resend of a close
			// that went through, or one dropped by a restart): closed.
			cerr = nil
		}
		if cerr != nil && err == nil {
			err = fmt.Errorf("client: close %#x: %w", f.ino, cerr)
		} else if cerr == nil {
			in.mu.Lock()
			in.mdsSize = int64(resp.Attr.Size)
			in.mu.Unlock()
		}
		f.c.releaseInode(in, f)
		f.err = err
	})
	return f.err
}

// capability returns a capability for the file's objects, refreshing it
// from the MDS when it is about to expire or when it is the capability
// rejected (an OSS said it had expired; nil otherwise). Requests that were
// rejected together cause one refresh.
func (f *File) capability(ctx context.Context, rejected *proto.Capability) (proto.Capability, error) {
	f.capMu.Lock()
	defer f.capMu.Unlock()
	expiry := time.Unix(0, f.cap.Expiry)
	margin := min(capMargin, expiry.Sub(f.capIssued)/4)
	stale := rejected != nil && rejected.Expiry == f.cap.Expiry
	if !stale && time.Until(expiry) > margin {
		return f.cap, nil
	}
	if _, err := f.refreshLocked(ctx); err != nil {
		return proto.Capability{}, err
	}
	return f.cap, nil
}

// refresh fetches a new capability with the file's current layout, truncate
// epoch and size, after an OSS answered ESTALE to rejected (a capability
// already replaced is not refreshed again). It reports whether the layout
// changed, in which case requests mapped with the old one must be mapped
// again.
func (f *File) refresh(ctx context.Context, rejected proto.Capability) (bool, error) {
	f.capMu.Lock()
	defer f.capMu.Unlock()
	if f.cap.Gen != rejected.Gen || f.cap.Epoch != rejected.Epoch {
		return f.cap.Gen != rejected.Gen, nil
	}
	return f.refreshLocked(ctx)
}

// refreshLocked asks the MDS for a capability and what goes with it. Call
// with capMu held.
func (f *File) refreshLocked(ctx context.Context) (bool, error) {
	var resp proto.GetCapResp
	req := proto.GetCapReq{Session: f.session, Ino: f.ino, Handle: f.handle}
	if err := f.c.mdsCall(ctx, f.ino, proto.OpGetCap, &req, &resp); err != nil {
		return false, fmt.Errorf("client: refresh capability of %#x: %w", f.ino, err)
	}
	oldGen := f.cap.Gen
	f.cap, f.capIssued = resp.Cap, time.Now()
	f.in.mu.Lock()
	changed := f.in.refreshedLocked(&resp.Layout, resp.Cap.Epoch, int64(resp.Attr.Size))
	f.in.mu.Unlock()
	return changed || resp.Cap.Gen != oldGen, nil
}

// errLayoutChanged means an object request was refused because the file's
// layout changed under it (ESTALE, then a newer layout from the MDS): the
// caller maps the request again.
var errLayoutChanged = errors.New("client: the file's layout changed")

// objCall runs one object request with the file's capability against the
// OSS serving ref's OST. It refreshes the capability once when the OSS finds
// it expired, and once when the OSS answers ESTALE (a truncate this client
// had not heard of: the new epoch goes with the retry; or a new layout:
// errLayoutChanged). Through an outage of the OSS (restarting, or moved:
// the OST table is fetched again now and then) it resends until the
// recovery timeout, then fails with EIO.
func (f *File) objCall(ctx context.Context, ref proto.ObjRef, call func(cp proto.Capability, addr string) error) error {
	refreshed, restaled := false, false
	waited := 0
	for attempt := 0; ; attempt++ {
		cp, err := f.capability(ctx, nil)
		if err != nil {
			return err
		}
		addr, err := f.c.ossFor(ctx, ref.OST)
		if err != nil {
			return err
		}
		err = call(cp, addr)
		switch {
		case err == nil:
			if waited > 0 {
				f.c.endOutage(ostTarget(ref.OST))
			}
			return nil
		case errors.Is(err, syscall.EKEYEXPIRED) && !refreshed:
			refreshed = true
			if _, rerr := f.capability(ctx, &cp); rerr != nil {
				return rerr
			}
		case errors.Is(err, syscall.ESTALE) && !restaled:
			restaled = true
			changed, rerr := f.refresh(ctx, cp)
			if rerr != nil {
				return rerr
			}
			if changed || !f.holdsObject(ref) {
				return errLayoutChanged
			}
		case transient(err) && ctx.Err() == nil:
			if werr := f.c.waitOutage(ctx, ostTarget(ref.OST), err, waited); werr != nil {
				return werr
			}
			if waited++; waited%4 == 0 {
				// The OSS may have come back at another address.
				if _, terr := f.c.Targets(ctx); terr != nil {
					f.c.log.Debug("client: refresh the OST table", "err", terr)
				}
			}
		default:
			return err
		}
	}
}

// ostTarget names an OST in outage messages. It is formatted only when an
// outage needs it: object calls are made per megabyte of data.
func ostTarget(ost uint32) string { return fmt.Sprintf("OST%04x", ost) }

// holdsObject reports whether the file's current layout has ref.
func (f *File) holdsObject(ref proto.ObjRef) bool {
	f.in.mu.Lock()
	defer f.in.mu.Unlock()
	for _, c := range f.in.lay.Components {
		for _, o := range c.Objects {
			if o.OST == ref.OST && o.ID == ref.ID {
				return true
			}
		}
	}
	return false
}

// writeObject writes data at objOff in one object and returns the OST's
// write verifier.
func (f *File) writeObject(ctx context.Context, ref proto.ObjRef, objOff int64, data []byte, sync bool) (uint64, error) {
	var resp proto.ObjWriteResp
	err := f.objCall(ctx, ref, func(cp proto.Capability, addr string) error {
		req := proto.ObjWriteReq{Cap: cp, Obj: ref, Offset: objOff, Sync: sync}
		_, err := f.c.rpc.CallBulk(ctx, addr, proto.OpObjWrite, &req, data, &resp, nil)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("client: write %d bytes at %d of object %s on OST %d: %w", len(data), objOff, ref.ID, ref.OST, err)
	}
	return resp.Verifier, nil
}

// readObject reads len(p) bytes at objOff of one object; what the object
// does not hold (a hole past its end, a missing object) reads as zeros.
func (f *File) readObject(ctx context.Context, ref proto.ObjRef, objOff int64, p []byte) error {
	var n int
	err := f.objCall(ctx, ref, func(cp proto.Capability, addr string) error {
		req := proto.ObjReadReq{Cap: cp, Obj: ref, Offset: objOff, Length: int64(len(p))}
		var resp proto.ObjReadResp
		var err error
		n, err = f.c.rpc.CallBulk(ctx, addr, proto.OpObjRead, &req, nil, &resp, p)
		return err
	})
	if err != nil {
		return fmt.Errorf("client: read %d bytes at %d of object %s on OST %d: %w", len(p), objOff, ref.ID, ref.OST, err)
	}
	clear(p[n:])
	return nil
}
