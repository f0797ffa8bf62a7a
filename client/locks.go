package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Locks: fcntl byte-range locks and flock(2) locks are kept by the MDS, for
// every client of the filesystem at once; this client only forwards
// requests. A lock belongs to an owner within the client's session: for
// fcntl locks the kernel's lock owner (one per process), for flock locks
// the open file. The MDS releases every lock of a session that ends, so
// Close (or a client that dies and lets its lease expire) frees them all.
//
// Locks also order data between clients, as they do with NFS: before a lock
// is released this client's writes to the file reach the OSSes and its size
// the MDS, and once a lock is granted this client drops what it read ahead
// of the file and asks the MDS for the size at the next read. So a reader that takes a lock sees what the writer wrote before it
// released that lock, in close-to-open mode too. (The kernel's page cache,
// where a mount uses it, is checked at open only.)
//
// A request that waits for a conflicting lock is a loop of requests, each
// of which the MDS holds for at most proto.LockWaitSlice before it answers
// EAGAIN. The caller's context is looked at only between them, never to
// abandon a request in flight, so a lock is either granted and reported
// granted, or not granted at all: there is no grant behind the caller's back
// that nobody will release.

// Lock is a byte-range (fcntl) or whole-file (flock) lock.
type Lock struct {
	// Type is proto.LockRead, proto.LockWrite or proto.LockUnlock.
	Type uint8
	// Start and End are the first and the last byte covered; End -1 means
	// to the end of the file, however far it grows. flock ignores both.
	Start, End int64
	// Pid is the process that asks for the lock, or in GetLk's answer the
	// process that holds the conflicting one; it plays no part in
	// ownership.
	Pid uint32
	// Flock selects flock(2) locks, which never conflict with fcntl locks.
	Flock bool
}

// lockKey names the locks one owner may hold on one inode in one namespace.
type lockKey struct {
	ino, owner uint64
	flock      bool
}

// lockOwners remembers the owners that asked for a lock since their locks
// were last released, so that Unlock, which the FUSE layer calls on every
// close(2), costs a round trip to the MDS only for those.
type lockOwners struct {
	mu   sync.Mutex
	keys map[lockKey]struct{}
}

// note records that k may hold a lock.
func (o *lockOwners) note(k lockKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys == nil {
		o.keys = map[lockKey]struct{}{}
	}
	o.keys[k] = struct{}{}
}

// forget drops k and reports whether it may have held a lock.
func (o *lockOwners) forget(k lockKey) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.keys[k]
	delete(o.keys, k)
	return ok
}

// reset forgets every owner.
func (o *lockOwners) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.keys = nil
}

// lockReq builds the wire form of a lock request of owner on ino.
func lockReq(session, ino, owner uint64, lk Lock, wait bool) *proto.LockReq {
	return &proto.LockReq{Session: session, Ino: ino, Owner: owner, Pid: lk.Pid, Type: lk.Type,
		Start: lk.Start, End: lk.End, Flock: lk.Flock, Wait: wait}
}

// GetLk tests whether owner could take lk on ino (F_GETLK): it returns the
// first lock of another owner that conflicts, with its holder's pid, or a
// Lock of Type proto.LockUnlock if none does.
func (c *Client) GetLk(ctx context.Context, ino, owner uint64, lk Lock) (Lock, error) {
	var resp proto.LockResp
	err := c.mdsCall(ctx, ino, proto.OpGetLk, lockReq(c.sessionID(), ino, owner, lk, false), &resp)
	if err != nil {
		return Lock{}, fmt.Errorf("client: test lock %#x [%d, %d] type %d: %w", ino, lk.Start, lk.End, lk.Type, err)
	}
	return Lock{Type: resp.Type, Start: resp.Start, End: resp.End, Pid: resp.Pid, Flock: lk.Flock}, nil
}

// SetLk takes, changes or releases (Type proto.LockUnlock) a lock of owner
// on ino (F_SETLK, F_SETLKW, flock). Without wait a conflicting lock fails
// it with EAGAIN at once. With wait it blocks until the lock is granted,
// until the MDS finds that waiting would deadlock (EDEADLK), or until ctx
// ends, which it notices within proto.LockWaitSlice and reports as ctx's
// error (Errno maps a cancelled context to EINTR).
func (c *Client) SetLk(ctx context.Context, ino, owner uint64, lk Lock, wait bool) error {
	key := lockKey{ino: ino, owner: owner, flock: lk.Flock}
	// Each request runs to its answer whatever happens to ctx.
	call := context.WithoutCancel(ctx)
	if lk.Type == proto.LockUnlock {
		c.publish(call, ino)
	} else {
		c.locks.note(key)
	}
	for {
		err := c.mdsCall(call, ino, proto.OpLock, lockReq(c.sessionID(), ino, owner, lk, wait), &proto.LockResp{})
		switch {
		case err == nil:
			c.noteHeld(ino, owner, lk)
			if lk.Type != proto.LockUnlock {
				// An Unlock of the owner racing with this request
				// may have forgotten it meanwhile.
				c.locks.note(key)
				c.revalidate(ino)
			}
			return nil
		case !wait || !errors.Is(err, syscall.EAGAIN):
			return fmt.Errorf("client: lock %#x [%d, %d] type %d: %w", ino, lk.Start, lk.End, lk.Type, err)
		case ctx.Err() != nil:
			return fmt.Errorf("client: wait for lock %#x [%d, %d]: %w", ino, lk.Start, lk.End, ctx.Err())
		}
	}
}

// Unlock releases every lock owner holds on ino: its fcntl locks (as
// close(2) of any descriptor of the file does for a process), or with flock
// its flock lock (as the last close of an open file does). It asks the MDS
// only if owner asked this client for such a lock since its locks were last
// released.
func (c *Client) Unlock(ctx context.Context, ino, owner uint64, flock bool) error {
	if !c.locks.forget(lockKey{ino: ino, owner: owner, flock: flock}) {
		return nil
	}
	c.forgetOwner(ino, owner, flock)
	c.publish(ctx, ino)
	err := c.mdsCall(ctx, ino, proto.OpUnlock, &proto.UnlockReq{Session: c.sessionID(), Ino: ino, Owner: owner, Flock: flock}, nil)
	if err != nil && !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, ErrEvicted) { // a lost session holds no locks
		return fmt.Errorf("client: release locks of owner %#x on %#x: %w", owner, ino, err)
	}
	return nil
}

// UnlockAll releases every lock the client's session holds, and fails its
// requests waiting for one with ENOLCK.
func (c *Client) UnlockAll(ctx context.Context) error {
	c.locks.reset()
	c.forgetHeld()
	c.mu.RLock()
	addr, session := c.mdsAddr, c.session
	c.mu.RUnlock()
	err := c.rpc.Call(ctx, addr, proto.OpUnlock, &proto.UnlockReq{Session: session}, nil)
	if err != nil && !errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("client: release the session's locks: %w", err)
	}
	return nil
}

// publish makes this client's writes to ino visible to other clients before
// a lock on it is released: it sends the buffered data to the OSSes and
// reports the size to the MDS. A failure is not the unlock's: a write error
// stays with the file for fsync and close to report, and the size goes with
// the next report.
func (c *Client) publish(ctx context.Context, ino uint64) {
	in := c.openInode(ino)
	if in == nil {
		return
	}
	in.flushWait()
	in.mu.Lock()
	w := in.writerLocked(nil)
	failed := in.err != nil // it stays for fsync or close to report
	in.mu.Unlock()
	if failed {
		return
	}
	if w == nil {
		return
	}
	if err := w.reportSize(ctx, false); err != nil {
		c.log.Debug("client: report size before unlock", "ino", ino, "err", err)
	}
}

// revalidate makes this client read ino afresh after a lock on it was
// granted, since another client may have written under the lock: it drops
// the readahead of the open files and has the next read ask for the size.
func (c *Client) revalidate(ino uint64) {
	in := c.openInode(ino)
	if in == nil {
		return
	}
	in.mu.Lock()
	in.invalidateLocked(0, layout.EOF)
	in.sizeStale = true
	in.mu.Unlock()
}
