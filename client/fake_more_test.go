package client

import (
	"fmt"
	"math"
	"slices"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// The fake MDS's appends, consistency modes and locks. Its lock table is
// simpler than the MDS's: a request replaces or removes the owner's locks
// that overlap its range whole, without splitting them, which is enough for
// the client's tests of what it sends and when.

// fakeLock is one granted lock; end is inclusive, math.MaxInt64 to EOF.
type fakeLock struct {
	session, owner, ino uint64
	flock               bool
	typ                 uint8
	start, end          int64
	pid                 uint32
}

func (l *fakeLock) sameOwner(o *fakeLock) bool {
	return l.session == o.session && l.owner == o.owner && l.ino == o.ino && l.flock == o.flock
}

func (l *fakeLock) overlaps(o *fakeLock) bool {
	return l.flock || (l.start <= o.end && o.start <= l.end)
}

// fakeLockOf converts a request; a flock lock covers the whole file.
func fakeLockOf(req *proto.LockReq) fakeLock {
	l := fakeLock{session: req.Session, owner: req.Owner, ino: req.Ino, flock: req.Flock, typ: req.Type,
		start: req.Start, end: req.End, pid: req.Pid}
	if l.end < 0 || l.flock {
		l.end = math.MaxInt64
	}
	if l.flock {
		l.start = 0
	}
	return l
}

// conflictLocked returns the first lock of another owner that l conflicts
// with. Call with mu held.
func (fc *fakeCluster) conflictLocked(l *fakeLock) *fakeLock {
	for i := range fc.locks {
		h := &fc.locks[i]
		if h.ino == l.ino && h.flock == l.flock && !h.sameOwner(l) && h.overlaps(l) &&
			(h.typ == proto.LockWrite || l.typ == proto.LockWrite) {
			return h
		}
	}
	return nil
}

// setLockLocked replaces the owner's locks that overlap l by l (none for an
// unlock). Call with mu held.
func (fc *fakeCluster) setLockLocked(l fakeLock) {
	fc.locks = slices.DeleteFunc(fc.locks, func(h fakeLock) bool { return h.sameOwner(&l) && h.overlaps(&l) })
	if l.typ != proto.LockUnlock {
		fc.locks = append(fc.locks, l)
	}
}

// liveLocked fails a request of a session the fake does not know. Call with
// mu held.
func (fc *fakeCluster) liveLocked(session uint64) error {
	if !fc.sessions[session] {
		return fmt.Errorf("fake: session %d: %w", session, syscall.ENOTCONN)
	}
	return nil
}

// heldLocks returns a copy of the granted locks.
func (fc *fakeCluster) heldLocks() []fakeLock {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return slices.Clone(fc.locks)
}

// dropSession forgets a session and its locks, as the MDS does when its
// lease expires.
func (fc *fakeCluster) dropSession(session uint64) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.sessions[session] = false // kept, so that session ids are not reused
	fc.locks = slices.DeleteFunc(fc.locks, func(h fakeLock) bool { return h.session == session })
}

func (fc *fakeCluster) moreMDSHandlers() map[uint16]func(*rpc.Request) (any, error) {
	return map[uint16]func(*rpc.Request) (any, error){
		proto.OpAppend: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.AppendReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if fc.handles[req.Handle] != req.Ino {
				return nil, syscall.EBADF
			}
			in := fc.inodes[req.Ino]
			off := in.attr.Size
			in.attr.Size += req.Len
			in.attr.Mtime = time.Now().UnixNano()
			in.attr.DataVersion++
			return &proto.AppendResp{Offset: off}, nil
		},
		proto.OpSetConsistency: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.SetConsistencyReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			if in == nil || in.entries == nil {
				return nil, syscall.ENOTDIR
			}
			flags := map[string]uint32{Strict: proto.AttrFlagStrict, CloseToOpen: proto.AttrFlagCloseToOpen, "": 0}
			bits, ok := flags[req.Mode]
			if !ok {
				return nil, syscall.EINVAL
			}
			in.attr.Flags = bits
			return &proto.Empty{}, nil
		},
		proto.OpGetLk: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.LockReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if err := fc.liveLocked(req.Session); err != nil {
				return nil, err
			}
			l := fakeLockOf(req)
			h := fc.conflictLocked(&l)
			if h == nil {
				return &proto.LockResp{Type: proto.LockUnlock}, nil
			}
			end := h.end
			if end == math.MaxInt64 {
				end = -1
			}
			return &proto.LockResp{Type: h.typ, Start: h.start, End: end, Pid: h.pid}, nil
		},
		proto.OpLock: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.LockReq](r)
			if err != nil {
				return nil, err
			}
			l := fakeLockOf(req)
			deadline := time.Now()
			if req.Wait {
				deadline = deadline.Add(fc.lockSlice)
			}
			for {
				fc.mu.Lock()
				if err := fc.liveLocked(req.Session); err != nil {
					fc.mu.Unlock()
					return nil, err
				}
				if l.typ == proto.LockUnlock || fc.conflictLocked(&l) == nil {
					fc.setLockLocked(l)
					fc.mu.Unlock()
					return &proto.LockResp{Type: proto.LockUnlock}, nil
				}
				fc.mu.Unlock()
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("fake: lock conflict: %w", syscall.EAGAIN)
				}
				time.Sleep(5 * time.Millisecond)
			}
		},
		proto.OpUnlock: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.UnlockReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if err := fc.liveLocked(req.Session); err != nil {
				return nil, err
			}
			fc.locks = slices.DeleteFunc(fc.locks, func(h fakeLock) bool {
				return h.session == req.Session &&
					(req.Ino == 0 || (h.ino == req.Ino && h.owner == req.Owner && h.flock == req.Flock))
			})
			return &proto.Empty{}, nil
		},
	}
}
