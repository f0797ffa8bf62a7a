package mds

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratafs/strata/proto"
)

// Recovery (Lustre's, in spirit). An MDS keeps nothing that must outlive it
// in memory: sessions, handles open for writing and reply records are in
// the store. When it starts (or takes an MDT over) it loads the sessions and
// write handles, restarts every session's lease clock (a short outage must
// not evict anyone) and opens a recovery window, during which its clients
// reconnect, resume their sessions, replay their read opens and their locks
// (proto.OpenReq.Replay, proto.LockReq.Replay) and say so (OpRecovered).
// Until the window closes (every known session recovered, or the window's
// time is up) no new lock is granted, so a replayed lock always wins over a
// newcomer's, and no orphan is reaped, so an open-unlinked file survives
// until its opener has replayed the open. Sessions that did not come back
// by then are evicted: their locks go and their handles are closed.

// recoveryState is the recovery window of this run of the MDS.
type recoveryState struct {
	mu      sync.Mutex
	waiting map[uint64]bool // sessions from before that have not recovered
	done    chan struct{}   // closed when the window closes
	closed  bool
}

// recovering reports whether the recovery window is open.
func (s *Service) recovering() bool {
	select {
	case <-s.recov.done:
		return false
	default:
		return true
	}
}

// endRecovery closes the recovery window.
func (s *Service) endRecovery(why string) {
	r := &s.recov
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	close(r.done)
	s.log.Info("mds: recovery window closed", "reason", why, "not_recovered", len(r.waiting))
}

// loadRecovery reads the sessions and write handles of the store into the
// open table, each session's lease clock starting now plus the window, and
// opens the recovery window (closed at once if there is nobody to wait for).
func (s *Service) loadRecovery(ctx context.Context) error {
	s.recov.done = make(chan struct{})
	s.recov.waiting = map[uint64]bool{}
	var sessions []uint64
	recs := map[uint64]sessionRecord{}
	var handles []handleRecord
	var handleIDs []uint64
	err := s.view(ctx, func(t *mtx) error {
		start, end := t.k.sessionRange()
		var derr error
		err := t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			id, err := t.k.idOf(k, tagSession)
			if err != nil {
				derr = err
				return false
			}
			var r sessionRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			sessions = append(sessions, id)
			recs[id] = r
			return true
		})
		if err = firstErr(err, derr); err != nil {
			return err
		}
		start, end = t.k.handleRange()
		return firstErr(t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			id, err := t.k.idOf(k, tagHandle)
			if err != nil {
				derr = err
				return false
			}
			var h handleRecord
			if derr = decode(v, &h); derr != nil {
				return false
			}
			if s.serves(h.Ino) {
				handles = append(handles, h)
				handleIDs = append(handleIDs, id)
			}
			return true
		}), derr)
	})
	if err != nil {
		return fmt.Errorf("mds: load sessions for recovery: %w", err)
	}
	deadline := s.now().Add(s.recoveryWindow)
	o := &s.open
	o.mu.Lock()
	for _, id := range sessions {
		o.sessions[id] = &session{id: id, clientID: recs[id].ClientID, expires: deadline, handles: map[uint64]struct{}{},
			recovering: true}
		s.recov.waiting[id] = true
	}
	o.mu.Unlock()
	var stale []uint64
	for i, h := range handles {
		_, err := s.open.restore(&handle{id: handleIDs[i], session: h.Session, ino: h.Ino, flags: h.Flags, uid: h.Uid, rights: h.Rights})
		if err != nil {
			stale = append(stale, handleIDs[i]) // its session is gone
		}
	}
	if len(stale) > 0 {
		err := s.update(ctx, func(t *mtx) error {
			for _, id := range stale {
				if err := t.kv.Delete(t.k.handle(id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("mds: drop handles of vanished sessions: %w", err)
		}
	}
	if len(sessions) == 0 {
		s.endRecovery("no client sessions to recover")
		return nil
	}
	s.log.Info("mds: recovery window open", "sessions", len(sessions), "write_handles", len(handles)-len(stale),
		"window", s.recoveryWindow)
	return nil
}

// Recovered records that a client has replayed its opens and locks; the
// window closes when the last one has.
func (s *Service) Recovered(ctx context.Context, req *proto.RecoveredReq) error {
	o := &s.open
	o.mu.Lock()
	if ss := o.sessions[req.Session]; ss != nil {
		ss.recovering = false
	}
	o.mu.Unlock()
	r := &s.recov
	r.mu.Lock()
	delete(r.waiting, req.Session)
	left := len(r.waiting)
	r.mu.Unlock()
	if left == 0 {
		s.endRecovery("every client recovered")
	}
	return nil
}

// runRecoveryWindow closes the recovery window when its time is up. The
// sessions that did not come back by then are evicted by the lease reaper:
// their clocks, started at load, run out at the same moment, while those
// that resumed renew as usual.
func (s *Service) runRecoveryWindow(ctx context.Context) {
	t := time.NewTimer(max(0, s.recoveryWindow-s.now().Sub(s.start)))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.recov.done:
	case <-t.C:
		s.endRecovery("window time up")
	}
}

// waitRecovery waits until the recovery window closes or ctx ends, and
// reports whether it closed.
func (s *Service) waitRecovery(ctx context.Context) bool {
	select {
	case <-s.recov.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// forgetSession deletes a session's record and reply slots from the store.
func (s *Service) forgetSession(ctx context.Context, id uint64) error {
	err := s.update(ctx, func(t *mtx) error {
		if err := t.kv.Delete(t.k.session(id)); err != nil {
			return err
		}
		start, end := t.k.replyRange(id)
		var keys [][]byte
		err := t.kv.Scan(ctx, start, end, 0, func(k, _ []byte) bool {
			keys = append(keys, slices.Clone(k))
			return true
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := t.kv.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mds: forget session %#x: %w", id, err)
	}
	s.recov.mu.Lock()
	delete(s.recov.waiting, id)
	s.recov.mu.Unlock()
	return nil
}

// recordHandle writes a write handle's record in t (see keys.go).
func (t *mtx) recordHandle(h *handle) error {
	return t.setRecord(t.k.handle(h.id), &handleRecord{Session: h.session, Ino: h.ino, Flags: h.flags, Uid: h.uid, Rights: h.rights})
}
