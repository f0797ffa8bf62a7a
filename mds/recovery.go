package mds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
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

// recoveryState is the recovery window of this MDS: opened at its start
// and again at each takeover of an MDT.
type recoveryState struct {
	mu      sync.Mutex
	waiting map[uint64]bool // sessions from before that have not recovered
	done    chan struct{}   // closed when the window closes
	until   time.Time       // when the window closes at the latest
}

// init makes a closed window.
func (r *recoveryState) init() {
	r.waiting = map[uint64]bool{}
	r.done = make(chan struct{})
	close(r.done)
}

// closedCh returns the channel closed when the current window closes.
func (s *Service) closedCh() chan struct{} {
	s.recov.mu.Lock()
	defer s.recov.mu.Unlock()
	return s.recov.done
}

// recovering reports whether a recovery window is open.
func (s *Service) recovering() bool {
	select {
	case <-s.closedCh():
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
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
	s.log.Info("mds: recovery window closed", "reason", why, "not_recovered", len(r.waiting))
}

// recoverMDTs takes over the state of mdts (just acquired, at start or by
// takeover): it loads the sessions this MDS does not know yet and the
// handles open for writing of those MDTs into the open table, each session
// given until the end of a recovery window to come back (its lease clock
// restarted, so a short outage evicts nobody), and opens the window; with
// nobody to wait for, it stays closed.
func (s *Service) recoverMDTs(ctx context.Context, mdts []uint32) error {
	if len(mdts) == 0 {
		return nil
	}
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
			if slices.Contains(mdts, inoMDT(h.Ino)) {
				handles = append(handles, h)
				handleIDs = append(handleIDs, id)
			}
			return true
		}), derr)
	})
	if err != nil {
		return fmt.Errorf("mds: load sessions for recovery: %w", err)
	}
	// The previous owner may have leased anything of these MDTs to any
	// of these sessions.
	var leasing []uint64
	for _, id := range sessions {
		if recs[id].Leases {
			leasing = append(leasing, id)
		}
	}
	s.leases.takeOver(mdts, leasing)
	deadline := s.now().Add(s.recoveryWindow)
	var waiting []uint64
	o := &s.open
	o.mu.Lock()
	for _, id := range sessions {
		if ss := o.sessions[id]; ss != nil {
			// Known and live here: its lease stays as it is, but it
			// may hold opens and locks of the MDTs just taken, which
			// it replays when it sees their new epoch (at its next
			// request or renewal); the window waits for it too.
			waiting = append(waiting, id)
			continue
		}
		o.sessions[id] = &session{id: id, clientID: recs[id].ClientID, expires: deadline, handles: map[uint64]struct{}{},
			recovering: true}
		waiting = append(waiting, id)
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
	if len(waiting) == 0 {
		return nil
	}
	r := &s.recov
	r.mu.Lock()
	select {
	case <-r.done:
		r.done = make(chan struct{})
	default:
	}
	for _, id := range waiting {
		r.waiting[id] = true
	}
	r.until = deadline
	r.mu.Unlock()
	s.log.Info("mds: recovery window open", "mdts", mdts, "sessions", len(waiting), "write_handles", len(handles)-len(stale),
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

// runRecoveryWindow closes each recovery window when its time is up. The
// sessions that did not come back by then are evicted by the lease reaper:
// their clocks, started at load, run out at the same moment, while those
// that resumed renew as usual.
func (s *Service) runRecoveryWindow(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.recov.mu.Lock()
		until := s.recov.until
		s.recov.mu.Unlock()
		if s.recovering() && !s.now().Before(until) {
			s.endRecovery("window time up")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitRecovery waits until the recovery window closes or ctx ends, and
// reports whether it closed.
func (s *Service) waitRecovery(ctx context.Context) bool {
	select {
	case <-s.closedCh():
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

// Evict ends a client's session here (its locks released, its handles
// closed) and deletes it from the store, so no MDS resumes it: the client
// learns at its next request (ENOTCONN, then EIO for what it held). A
// session is named by id, or by the client id it connected with.
func (s *Service) Evict(ctx context.Context, req *proto.EvictReq) (*proto.EvictResp, error) {
	ids, err := s.sessionsOf(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := s.endSession(ctx, id, "evicted by an operator"); err != nil {
			return nil, err
		}
		// endSession forgets only a session it knew; one only in the
		// store goes too.
		if err := s.forgetSession(ctx, id); err != nil {
			return nil, err
		}
	}
	return &proto.EvictResp{Evicted: len(ids)}, nil
}

// sessionsOf lists the sessions an eviction names.
func (s *Service) sessionsOf(ctx context.Context, req *proto.EvictReq) ([]uint64, error) {
	if req.Session != 0 {
		return []uint64{req.Session}, nil
	}
	if req.ClientID == "" {
		return nil, fmt.Errorf("mds: evict: name a session or a client: %w", syscall.EINVAL)
	}
	var ids []uint64
	err := s.view(ctx, func(t *mtx) error {
		start, end := t.k.sessionRange()
		var derr error
		err := t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			var r sessionRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			if r.ClientID == req.ClientID || strings.HasPrefix(r.ClientID, req.ClientID+":") {
				id, err := t.k.idOf(k, tagSession)
				if err != nil {
					derr = err
					return false
				}
				ids = append(ids, id)
			}
			return true
		})
		return firstErr(err, derr)
	})
	return ids, err
}

// AbortRecovery closes the recovery window at once; the clients that have
// not come back are evicted as their clocks run out (now).
func (s *Service) AbortRecovery(ctx context.Context, _ *proto.AbortRecoveryReq) error {
	s.recov.mu.Lock()
	late := make([]uint64, 0, len(s.recov.waiting))
	for id := range s.recov.waiting {
		late = append(late, id)
	}
	s.recov.mu.Unlock()
	s.endRecovery("aborted by an operator")
	for _, id := range late {
		if err := s.endSession(ctx, id, "recovery aborted"); err != nil {
			return err
		}
	}
	return nil
}
