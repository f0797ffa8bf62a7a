// Package lock is the metadata server's table of POSIX byte-range (fcntl)
// locks and flock(2) locks, kept coherent across every client of the
// filesystem.
//
// It lives in memory only and does no I/O: locks last as long as the MDS runs
// and the session that took them stays connected. Request handlers call it
// from their own goroutines; a blocking request parks its caller until the
// lock is granted, its context is done, its session is released or waiting
// would deadlock. Errors are syscall.Errno values, ready for the wire.
//
// It is not a lock cache or a lease protocol: clients hold no copy of these
// locks, and nothing here is recalled from a client.
package lock

import (
	"context"
	"math"
	"slices"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Owner names the holder of a lock.
type Owner struct {
	// Session is the client session that took the lock.
	Session uint64
	// Owner is the kernel's lock owner for fcntl locks (one per process)
	// or the open-file id for flock locks.
	Owner uint64
	// Pid is the process that asked, reported by F_GETLK; it plays no part
	// in deciding who owns a lock.
	Pid uint32
}

// Request asks to set, clear or test a lock on one inode.
type Request struct {
	// Ino is the locked inode.
	Ino uint64
	// Owner is who asks; two requests with the same Session and Owner come
	// from the same owner and never conflict with each other.
	Owner Owner
	// Type is proto.LockRead, proto.LockWrite or proto.LockUnlock.
	Type uint8
	// Start is the first byte of an fcntl range.
	Start int64
	// End is the last byte of an fcntl range, inclusive; math.MaxInt64 or
	// -1 means to the end of the file, however far it grows.
	End int64
	// Flock selects the whole-file flock(2) namespace, where Start and End
	// are ignored. flock and fcntl locks never conflict with each other.
	Flock bool
}

// Conflict describes one held lock: the lock that blocks a request (Test) or
// an entry of an inode's table (Locks). A range to the end of the file has
// End math.MaxInt64.
type Conflict struct {
	// Type is proto.LockRead or proto.LockWrite.
	Type uint8
	// Start is the first byte locked.
	Start int64
	// End is the last byte locked, inclusive.
	End int64
	// Pid is the process that set the lock.
	Pid uint32
	// Owner is the lock's owner, Pid included.
	Owner Owner
	// Flock is set for a flock(2) lock, which covers the whole file.
	Flock bool
}

// Manager holds the locks of every inode. The zero value is not usable; call
// NewManager. A Manager is safe for concurrent use and starts no goroutines.
type Manager struct {
	shards [shardCount]shard
	graph  waitGraph

	// afterChange, set only by tests, sees an inode's state after every
	// change, with the inode's mutex held, to check invariants.
	afterChange func(*inodeState)
}

// NewManager returns an empty lock manager.
func NewManager() *Manager {
	m := &Manager{graph: waitGraph{waiting: make(map[ownerKey][]*waiter)}}
	for i := range m.shards {
		m.shards[i].inodes = make(map[uint64]*inodeState)
	}
	return m
}

// Lock serves F_SETLK, F_SETLKW and flock(2). A Type of proto.LockUnlock
// clears the owner's locks in the range (the whole file for flock) and
// always succeeds. Otherwise the lock replaces whatever the owner held in the
// range, merged with its adjacent and overlapping locks of the same type.
//
// If another owner holds a conflicting lock, Lock fails with syscall.EAGAIN
// when wait is false. When wait is true it blocks until the lock can be
// granted, and fails with syscall.EINTR once ctx is done (the lock is then
// not granted, and never will be), syscall.ENOLCK if the owner's session is
// released meanwhile, or syscall.EDEADLK, for fcntl locks only, if the
// owner it would wait for waits, directly or through others, for this owner.
// An invalid type or range fails with syscall.EINVAL.
//
// A blocking flock conversion that cannot be granted at once first drops the
// lock the owner holds, as Linux does, so that two shared holders upgrading
// together cannot deadlock; a non-blocking one that fails keeps it.
func (m *Manager) Lock(ctx context.Context, r Request, wait bool) error {
	r, err := r.normalized()
	if err != nil {
		return err
	}
	o := r.Owner.key()
	if r.Type == proto.LockUnlock {
		if st := m.pin(r.Ino, 0, false); st != nil {
			m.change(st, func() { st.apply(o, r) })
			m.unlockAndUnpin(st)
		}
		return nil
	}
	if ctx.Err() != nil {
		return syscall.EINTR
	}
	st := m.pin(r.Ino, r.Owner.Session, true)
	var blockers []ownerKey
	if r.Flock {
		if !st.flockBlocked(o, r.Type) {
			m.change(st, func() { st.apply(o, r) })
			m.unlockAndUnpin(st)
			return nil
		}
	} else if blockers = st.posixBlockers(o, r, nil); len(blockers) == 0 {
		m.change(st, func() { st.apply(o, r) })
		m.unlockAndUnpin(st)
		return nil
	}
	if !wait {
		m.unlockAndUnpin(st)
		return syscall.EAGAIN
	}
	return m.block(ctx, st, &waiter{ctx: ctx, req: r, owner: o, done: make(chan struct{})}, blockers)
}

// block queues w on st, whose mutex the caller holds and releases here, and
// waits for w to finish. An fcntl request first has its wait-for edges to
// blockers checked for a cycle; a flock conversion first drops the owner's
// current lock.
func (m *Manager) block(ctx context.Context, st *inodeState, w *waiter, blockers []ownerKey) error {
	if w.req.Flock {
		if st.holdsFlock(w.owner) {
			m.change(st, func() { st.setFlock(w.owner, 0, proto.LockUnlock) })
		}
	} else if !m.graph.enqueue(w, blockers) {
		m.unlockAndUnpin(st)
		return syscall.EDEADLK
	} else {
		st.posixWaiters++
	}
	st.waiters = append(st.waiters, w)
	if m.afterChange != nil {
		m.afterChange(st)
	}
	st.mu.Unlock()

	select {
	case <-w.done:
	case <-ctx.Done():
		// w may have been granted just before ctx was done (wake grants
		// nothing to a done context); the grant then stands.
		st.mu.Lock()
		if i := slices.Index(st.waiters, w); i >= 0 {
			m.change(st, func() {
				st.waiters = slices.Delete(st.waiters, i, i+1)
				m.finish(st, w, syscall.EINTR)
			})
		}
		st.mu.Unlock()
	}
	m.unpin(st)
	return w.err
}

// Test serves F_GETLK: it reports the first lock, by start offset, that
// would block r, or false if r could be granted now. r.Type must be
// proto.LockRead or proto.LockWrite; otherwise, or for an invalid range,
// Test fails with syscall.EINVAL.
func (m *Manager) Test(r Request) (Conflict, bool, error) {
	r, err := r.normalized()
	if err != nil {
		return Conflict{}, false, err
	}
	if r.Type == proto.LockUnlock {
		return Conflict{}, false, syscall.EINVAL
	}
	st := m.pin(r.Ino, 0, false)
	if st == nil {
		return Conflict{}, false, nil
	}
	h, ok := st.firstConflict(r.Owner.key(), r)
	m.unlockAndUnpin(st)
	if !ok {
		return Conflict{}, false, nil
	}
	return h.conflict(r.Flock), true, nil
}

// ReleaseOwner drops every lock o holds on ino in one namespace, as close(2)
// does: with flock false, all the fcntl locks of the process (o.Owner is its
// lock owner); with flock true, the flock lock of the open file (o.Owner is
// its id). Waiters the release unblocks are granted. o.Pid is ignored.
func (m *Manager) ReleaseOwner(ino uint64, o Owner, flock bool) {
	st := m.pin(ino, 0, false)
	if st == nil {
		return
	}
	m.change(st, func() { st.dropOwner(o.key(), flock) })
	m.unlockAndUnpin(st)
}

// ReleaseSession forgets a client that died or disconnected: every lock its
// session holds is dropped, waking the waiters of other sessions, and every
// request of its still waiting fails with syscall.ENOLCK.
func (m *Manager) ReleaseSession(session uint64) {
	var pinned []*inodeState
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, st := range sh.inodes {
			if slices.Contains(st.sessions, session) {
				st.refs++
				pinned = append(pinned, st)
			}
		}
		sh.mu.Unlock()
	}
	for _, st := range pinned {
		st.mu.Lock()
		m.change(st, func() {
			st.dropSession(session)
			st.waiters = slices.DeleteFunc(st.waiters, func(w *waiter) bool {
				if w.owner.session != session {
					return false
				}
				m.finish(st, w, syscall.ENOLCK)
				return true
			})
		})
		m.unlockAndUnpin(st)
	}
}

// Locks lists the locks held on ino: fcntl locks by start offset, then flock
// locks. It is meant for tests and debugging.
func (m *Manager) Locks(ino uint64) []Conflict {
	st := m.pin(ino, 0, false)
	if st == nil {
		return nil
	}
	defer m.unlockAndUnpin(st)
	out := make([]Conflict, 0, len(st.posix)+len(st.flock))
	for _, h := range st.posix {
		out = append(out, h.conflict(false))
	}
	for _, h := range st.flock {
		out = append(out, h.conflict(true))
	}
	return out
}

// normalized checks r and returns it with its range in canonical form:
// End math.MaxInt64 for to-EOF, and the whole file for flock.
func (r Request) normalized() (Request, error) {
	switch r.Type {
	case proto.LockRead, proto.LockWrite, proto.LockUnlock:
	default:
		return r, syscall.EINVAL
	}
	if r.Flock {
		r.Start, r.End = 0, math.MaxInt64
		return r, nil
	}
	if r.End == -1 {
		r.End = math.MaxInt64
	}
	if r.Start < 0 || r.End < r.Start {
		return r, syscall.EINVAL
	}
	return r, nil
}

// ownerKey identifies an owner across sessions; the pid is not part of it.
type ownerKey struct {
	session, owner uint64
}

func (o Owner) key() ownerKey { return ownerKey{session: o.Session, owner: o.Owner} }
