package client

import (
	"sync"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// inode is the state that every File of one inode opened through this client
// shares: the layout, what is known of the size, the write-behind buffer, the
// objects written since the last fsync and the first write error. It lives
// while at least one File of the inode is open.
//
// Sharing it is what makes two descriptors of one file in one process see
// each other's writes in order: dirty data is per inode, not per handle.
type inode struct {
	c   *Client
	ino uint64

	mu   sync.Mutex
	cond *sync.Cond // broadcast when write-behind chunks complete
	lay  layout.Layout

	mdsSize    int64  // the size the MDS last reported
	epoch      uint64 // the truncate epoch this client's capabilities name
	writeEnd   int64  // the largest end written through this client
	lastWrite  int64  // unix nanoseconds of the last write
	unreported bool   // written since the size was last reported to the MDS
	unsynced   bool   // written since the last fsync
	sizeStale  bool   // a lock was granted since the MDS last reported the size
	err        error  // the first write error; sticky until the last close
	quotaEnd   int64  // how far the MDS granted room to extend the file (quota.go)

	files map[*File]struct{}
	wb    writeBehind
	// written lists the objects written since the last fsync with the
	// OST's write verifier at the time, which the next fsync compares.
	written map[layout.Object]writtenObj
	// stored are the objects written since the size was last reported,
	// which the next report names (stored.go).
	stored map[layout.ObjectID]struct{}
}

// writtenObj is an object with writes not yet synced.
type writtenObj struct {
	ref      proto.ObjRef
	verifier uint64
	// mixed: writes since the last sync saw different verifiers (the OST
	// restarted between them), so earlier ones may be lost whatever the
	// sync says.
	mixed bool
}

// noteWritten records a write to ref that the OST acknowledged with
// verifier. Call with mu held.
func (in *inode) noteWritten(ref proto.ObjRef, verifier uint64) {
	key := layout.Object{OST: ref.OST, ID: ref.ID}
	w, ok := in.written[key]
	if ok && w.verifier != verifier {
		w.mixed = true
	}
	w.ref, w.verifier = ref, verifier
	in.written[key] = w
	in.noteStoredLocked(ref.ID)
}

// size returns what this client knows of the file size: the MDS's size or
// the end of its own writes, whichever is larger. Call with mu held.
func (in *inode) size() int64 { return max(in.mdsSize, in.writeEnd) }

// acquireInode returns the shared state of ino, creating it from an open's
// reply, and registers f with it.
func (c *Client) acquireInode(f *File, resp *proto.OpenResp) *inode {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	in := c.open[resp.Attr.Ino]
	if in == nil {
		in = &inode{
			c:       c,
			ino:     resp.Attr.Ino,
			lay:     resp.Layout,
			mdsSize: int64(resp.Attr.Size),
			epoch:   resp.Cap.Epoch,
			files:   map[*File]struct{}{},
			written: map[layout.Object]writtenObj{},
		}
		in.cond = sync.NewCond(&in.mu)
		in.wb.init()
		c.open[in.ino] = in
	}
	in.mu.Lock()
	in.refreshedLocked(&resp.Layout, resp.Cap.Epoch, int64(resp.Attr.Size))
	in.files[f] = struct{}{}
	in.mu.Unlock()
	return in
}

// refreshedLocked takes in what the MDS said of the file (at an open, or a
// refresh after an OSS's ESTALE): a newer layout, and a newer truncate epoch
// with the size it left. After a truncate this client had not heard of, only
// its writes not yet sent count towards the size it reports: what it sent
// before was cut. It reports whether the layout changed. Call with mu held.
func (in *inode) refreshedLocked(lay *layout.Layout, epoch uint64, mdsSize int64) bool {
	changed := lay.Gen > in.lay.Gen
	if changed {
		in.lay = *lay
	}
	// The MDS size is fresh; this client's unreported writes are kept in
	// writeEnd.
	in.mdsSize = mdsSize
	if epoch > in.epoch {
		in.epoch = epoch
		in.writeEnd = 0
		for _, ch := range in.wb.pending {
			in.writeEnd = max(in.writeEnd, ch.end())
		}
		for ch := range in.wb.inflight {
			in.writeEnd = max(in.writeEnd, ch.end())
		}
		for f := range in.files {
			f.ra.invalidate(0, layout.EOF)
		}
	}
	return changed
}

// releaseInode unregisters f; the state is dropped with the last File.
func (c *Client) releaseInode(in *inode, f *File) {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	in.mu.Lock()
	delete(in.files, f)
	last := len(in.files) == 0
	if last {
		in.wb.stopTimer()
	}
	in.mu.Unlock()
	if last && c.open[in.ino] == in {
		delete(c.open, in.ino)
	}
}

// openInode returns the shared state of ino if a File of it is open.
func (c *Client) openInode(ino uint64) *inode {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	return c.open[ino]
}

// openInodes returns every inode with open Files.
func (c *Client) openInodes() []*inode {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	out := make([]*inode, 0, len(c.open))
	for _, in := range c.open {
		out = append(out, in)
	}
	return out
}

// mergeAttr folds this client's unflushed writes into attributes fetched
// from the MDS and records the MDS's size. It is how stat shows the size a
// writer sees before the writer closes.
func (in *inode) mergeAttr(a *proto.Attr) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.mdsSize = int64(a.Size)
	in.sizeStale = false
	if in.writeEnd > int64(a.Size) {
		a.Size = uint64(in.writeEnd)
	}
	if in.unreported && in.lastWrite > a.Mtime {
		a.Mtime = in.lastWrite
		a.Ctime = max(a.Ctime, in.lastWrite)
	}
}

// noteWrite records a write ending at end, made now. Call with mu held.
func (in *inode) noteWrite(end int64) {
	in.writeEnd = max(in.writeEnd, end)
	in.lastWrite = time.Now().UnixNano()
	in.unreported = true
	in.unsynced = true
}

// truncated records that the file's size was set to size at the MDS, which
// cut (or extended) every object accordingly. Call with no write-behind data
// pending below the old end (Setattr flushes first).
func (in *inode) truncated(size int64) {
	in.mu.Lock()
	in.mdsSize = size
	in.writeEnd = min(in.writeEnd, size)
	files := in.filesLocked()
	in.mu.Unlock()
	for _, f := range files {
		f.ra.invalidate(size, layout.EOF)
	}
}

// filesLocked returns the open Files. Call with mu held.
func (in *inode) filesLocked() []*File {
	out := make([]*File, 0, len(in.files))
	for f := range in.files {
		out = append(out, f)
	}
	return out
}

// writerLocked returns an open File of the inode that may write, preferring
// f, for requests that need a write capability. Call with mu held.
func (in *inode) writerLocked(f *File) *File {
	if f != nil && f.canWrite() {
		return f
	}
	for g := range in.files {
		if g.canWrite() {
			return g
		}
	}
	return f
}

// recordErr remembers the first write error. Call with mu held.
func (in *inode) recordErr(err error) {
	if in.err == nil {
		in.err = err
	}
}

// takeErr returns the first write error not reported yet and forgets it: a
// deferred error (ENOSPC, EIO) is reported once, by the next fsync, flush
// or close. Call with mu held.
func (in *inode) takeErr() error {
	err := in.err
	in.err = nil
	return err
}
