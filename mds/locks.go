package mds

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall"

	"github.com/stratafs/strata/mds/lock"
	"github.com/stratafs/strata/proto"
)

// Locks are served from an in-memory lock.Manager: they last while this
// MDS runs and their session lives. A session that ends (disconnect, or a
// lease the reaper finds expired) loses every lock it held, so the locks of
// a dead client are free again within about one lease. After an MDS
// restart (or an MDT takeover) clients replay the locks they held during
// the recovery window, in which no other lock is granted (recovery.go), so
// a held lock is still held afterwards and nobody slipped in between.
//
// The manager does not know which sessions are alive, so each request
// checks its session before and after asking: endSession forgets a session
// before it releases its locks, so a grant that races with the end is
// either released by it or seen by the second check, which releases it.

// lockRequest converts a wire request to the manager's form.
func lockRequest(req *proto.LockReq) lock.Request {
	return lock.Request{
		Ino:   req.Ino,
		Owner: lock.Owner{Session: req.Session, Owner: req.Owner, Pid: req.Pid},
		Type:  req.Type,
		Start: req.Start,
		End:   req.End,
		Flock: req.Flock,
	}
}

// Lock serves F_SETLK, F_SETLKW and flock(2) (OpLock). A request of an
// unknown or expired session fails with ENOTCONN. Without Wait a conflict
// fails with EAGAIN; with Wait the request blocks for at most one
// LockWaitSlice and then fails with EAGAIN, for the client to ask again.
// EDEADLK (a waiting fcntl request that would close a cycle) and EINVAL
// pass through. Type LockUnlock releases the range. The reply carries Type
// LockUnlock.
func (s *Service) Lock(ctx context.Context, req *proto.LockReq) (*proto.LockResp, error) {
	if err := s.open.live(req.Session, s.now()); err != nil {
		return nil, err
	}
	if !req.Replay && req.Type != proto.LockUnlock && s.recovering() {
		// Locks held before the restart are being replayed: a new one
		// waits for the window to close, so that it cannot take what a
		// replay is about to claim back.
		slice, cancel := context.WithTimeout(ctx, s.lockWait)
		closed := s.waitRecovery(slice)
		cancel()
		if !closed {
			if req.Wait {
				return nil, fmt.Errorf("mds: lock %#x: recovery in progress: %w", req.Ino, syscall.EAGAIN)
			}
			return nil, fmt.Errorf("mds: lock %#x: recovery in progress, try again: %w", req.Ino, syscall.EINPROGRESS)
		}
	}
	r := lockRequest(req)
	var err error
	if req.Wait && req.Type != proto.LockUnlock && !req.Replay {
		slice, cancel := context.WithTimeout(ctx, s.lockWait)
		err = s.locks.Lock(slice, r, true)
		cancel()
		if errors.Is(err, syscall.EINTR) {
			err = syscall.EAGAIN // the slice ran out: the client asks again
		}
	} else {
		err = s.locks.Lock(ctx, r, false)
	}
	if lerr := s.open.live(req.Session, s.now()); lerr != nil {
		// The session ended while the request was in flight: whatever it
		// was granted goes with it.
		s.locks.ReleaseSession(req.Session)
		return nil, lerr
	}
	if err != nil {
		return nil, fmt.Errorf("mds: lock %#x [%d, %d] type %d for owner %#x of session %#x: %w",
			req.Ino, req.Start, req.End, req.Type, req.Owner, req.Session, err)
	}
	return &proto.LockResp{Type: proto.LockUnlock}, nil
}

// GetLk serves F_GETLK (OpGetLk): it returns the first lock that would
// block the request, with the pid of the process that set it, or Type
// LockUnlock if none would. A range to the end of the file has End -1, as
// in requests; a flock lock covers [0, -1]. A request of an unknown or
// expired session fails with ENOTCONN, a Type of LockUnlock with EINVAL.
func (s *Service) GetLk(ctx context.Context, req *proto.LockReq) (*proto.LockResp, error) {
	if err := s.open.live(req.Session, s.now()); err != nil {
		return nil, err
	}
	c, found, err := s.locks.Test(lockRequest(req))
	if err != nil {
		return nil, fmt.Errorf("mds: test lock %#x [%d, %d] type %d: %w", req.Ino, req.Start, req.End, req.Type, err)
	}
	if !found {
		return &proto.LockResp{Type: proto.LockUnlock}, nil
	}
	end := c.End
	if end == math.MaxInt64 {
		end = -1
	}
	return &proto.LockResp{Type: c.Type, Start: c.Start, End: end, Pid: c.Pid}, nil
}

// Unlock serves OpUnlock: with Ino 0 it releases every lock of the
// session (and fails its waiting requests with ENOLCK); otherwise every
// lock Owner holds on Ino in one namespace, as close(2) releases a
// process's fcntl locks (Flock false) or an open file's flock lock (Flock
// true). A request of an unknown or expired session fails with ENOTCONN:
// its locks are gone already.
func (s *Service) Unlock(ctx context.Context, req *proto.UnlockReq) error {
	if err := s.open.live(req.Session, s.now()); err != nil {
		return err
	}
	if req.Ino == 0 {
		s.locks.ReleaseSession(req.Session)
		return nil
	}
	s.locks.ReleaseOwner(req.Ino, lock.Owner{Session: req.Session, Owner: req.Owner}, req.Flock)
	return nil
}
