package mds

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// The changelog (see proto.ChangelogEntry). An operation notes its events
// in its transaction (mtx.changelog); update numbers them from the owning
// MDT's in-memory counter at the end of each attempt and writes them
// there, under P 'K' mdt index, so the entries commit with the change and
// no key is written by every transaction. A number stays in flight from
// the attempt that took it until that attempt's commit is over (a retry
// takes a new number, so changes that conflict are numbered in the order
// they commit); the safe point of an MDT is the number below the lowest in
// flight, and readers get nothing above it.
//
// A counter starts, when its MDS first needs it, above the highest entry
// in the store: an MDT's previous owner can commit nothing more once its
// lease is over (fencing), and every entry it committed is in the store.
// A number that is taken in the store anyway (a late commit of a previous
// owner during a planned hand-off) is skipped, and two writers of one
// number conflict.
//
// Consumers (P 'U' id) keep a cursor per MDT; the owner purges what every
// consumer has cleared, or, with none registered, all but the newest
// changelogKeep entries.

// Changelog tuning.
const (
	changelogKeep      = 100000          // entries kept per MDT when no consumer is registered
	changelogPage      = 1000            // entries one read returns at most
	changelogPurgeEach = 5 * time.Second // how often an MDS purges its MDTs' logs
	changelogPurgeStep = 1000            // entries one purge transaction deletes
)

// changelogEvent is an event an operation noted, not numbered yet.
type changelogEvent struct {
	mdt uint32
	e   proto.ChangelogEntry
}

// changelog notes an event of the operation t runs for cred: of type typ
// about inode ino, named name in directory parent.
func (t *mtx) changelog(c *proto.Cred, typ uint8, ino, parent uint64, name string) {
	mdt := inoMDT(ino)
	if parent != 0 {
		mdt = inoMDT(parent)
	}
	t.events = append(t.events, changelogEvent{mdt: mdt, e: proto.ChangelogEntry{Type: typ, Time: t.now, Ino: ino,
		Parent: parent, Name: name, Uid: c.Uid, Gid: c.Gid}})
}

// changelogFlags sets the flags of the event noted last.
func (t *mtx) changelogFlags(flags uint32) {
	if n := len(t.events); n > 0 {
		t.events[n-1].e.Flags = flags
	}
}

// changelogRename notes a rename of ino from sp/sname to p/name, which
// replaced victim (0: none).
func (t *mtx) changelogRename(c *proto.Cred, ino, p uint64, name string, sp uint64, sname string, victim uint64) {
	t.changelog(c, proto.ChangelogRename, ino, p, name)
	ev := &t.events[len(t.events)-1]
	ev.mdt = inoMDT(sp)
	ev.e.SrcParent, ev.e.SrcName, ev.e.Victim = sp, sname, victim
}

// mdtLog is the numbering of one MDT's changelog at its owner.
type mdtLog struct {
	loaded   bool
	next     uint64              // the next number to hand out
	inflight map[uint64]struct{} // numbers whose transactions may still commit
	moved    chan struct{}       // closed when the safe point moves
}

// changelogs holds the numbering of the MDTs this service owns.
type changelogs struct {
	mu   sync.Mutex
	mdts map[uint32]*mdtLog
}

// changelogTicket is the numbers one update holds in flight.
type changelogTicket struct {
	taken []changelogNumber
}

type changelogNumber struct {
	mdt   uint32
	index uint64
}

// logOf returns the numbering of mdt, loading it from the store first.
// Call with cl.mu held.
func (s *Service) logOf(ctx context.Context, mdt uint32) (*mdtLog, error) {
	cl := &s.clog
	if cl.mdts == nil {
		cl.mdts = map[uint32]*mdtLog{}
	}
	l := cl.mdts[mdt]
	if l != nil && l.loaded {
		return l, nil
	}
	last, err := s.lastChangelogIndex(ctx, mdt)
	if err != nil {
		return nil, err
	}
	l = &mdtLog{loaded: true, next: last + 1, inflight: map[uint64]struct{}{}, moved: make(chan struct{})}
	cl.mdts[mdt] = l
	return l, nil
}

// lastChangelogIndex finds the highest number in mdt's log (0: none) by
// bisecting the number space with one-key scans.
func (s *Service) lastChangelogIndex(ctx context.Context, mdt uint32) (uint64, error) {
	var last uint64
	err := s.view(ctx, func(t *mtx) error {
		lo, hi := uint64(0), uint64(1)<<63 // an entry exists at or above lo; none at or above hi
		start, end := t.k.changelogRange(mdt, 0)
		found := false
		if err := t.kv.Scan(ctx, start, end, 1, func(_, _ []byte) bool { found = true; return false }); err != nil || !found {
			return err
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			start, _ := t.k.changelogRange(mdt, mid)
			any := false
			if err := t.kv.Scan(ctx, start, end, 1, func(_, _ []byte) bool { any = true; return false }); err != nil {
				return err
			}
			if any {
				lo = mid
			} else {
				hi = mid
			}
		}
		last = lo
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mds: find the end of MDT%04x's changelog: %w", mdt, err)
	}
	return last, nil
}

// changelogRelease ends the flight of the numbers tk holds: their attempt
// committed, failed, or is being retried.
func (s *Service) changelogRelease(tk *changelogTicket) {
	if len(tk.taken) == 0 {
		return
	}
	cl := &s.clog
	cl.mu.Lock()
	for _, n := range tk.taken {
		if l := cl.mdts[n.mdt]; l != nil {
			delete(l.inflight, n.index)
			close(l.moved)
			l.moved = make(chan struct{})
		}
	}
	cl.mu.Unlock()
	tk.taken = tk.taken[:0]
}

// changelogWrite numbers the events t noted and writes them, holding the
// numbers in tk.
func (s *Service) changelogWrite(t *mtx, tk *changelogTicket) error {
	for i := range t.events {
		ev := &t.events[i]
		if !s.owns(ev.mdt) {
			// An event about another MDT's inode (mkdir -i): logged
			// on the MDT this MDS serves the request for. An MDS that
			// serves none takes no request a client routes, so only
			// its own housekeeping gets here: that is not recorded,
			// since no numbering of this MDS could be safe.
			owned := s.ownedMDTs()
			if len(owned) == 0 {
				s.log.Debug("mds: changelog event on no MDT served here: not recorded", "type", ev.e.Type, "ino", ev.e.Ino)
				continue
			}
			ev.mdt = slices.Min(owned)
		}
		for {
			idx, err := s.changelogTake(t.ctx, ev.mdt, tk)
			if err != nil {
				return err
			}
			key := t.k.changelogEntry(ev.mdt, idx)
			b, err := t.kv.Get(t.ctx, key)
			if err != nil {
				return err
			}
			if b != nil {
				continue // taken by an earlier owner: skip it
			}
			ev.e.MDT, ev.e.Index = ev.mdt, idx
			if err := t.setRecord(key, &ev.e); err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// changelogTake hands out mdt's next number, in flight in tk.
func (s *Service) changelogTake(ctx context.Context, mdt uint32, tk *changelogTicket) (uint64, error) {
	cl := &s.clog
	cl.mu.Lock()
	defer cl.mu.Unlock()
	l, err := s.logOf(ctx, mdt)
	if err != nil {
		return 0, err
	}
	idx := l.next
	l.next++
	l.inflight[idx] = struct{}{}
	tk.taken = append(tk.taken, changelogNumber{mdt: mdt, index: idx})
	return idx, nil
}

// safePoint returns mdt's safe point and the channel closed when it moves.
func (s *Service) safePoint(ctx context.Context, mdt uint32) (uint64, <-chan struct{}, error) {
	cl := &s.clog
	cl.mu.Lock()
	defer cl.mu.Unlock()
	l, err := s.logOf(ctx, mdt)
	if err != nil {
		return 0, nil, err
	}
	safe := l.next - 1
	for idx := range l.inflight {
		safe = min(safe, idx-1)
	}
	return safe, l.moved, nil
}

// forgetChangelog drops the numbering of MDTs this service no longer owns,
// so that owning one again starts from the store.
func (s *Service) forgetChangelog() {
	cl := &s.clog
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for m, l := range cl.mdts {
		if !s.owns(m) && len(l.inflight) == 0 {
			delete(cl.mdts, m)
		}
	}
}

// Changelog reads entries of an MDT this MDS owns, up to its safe point.
func (s *Service) Changelog(ctx context.Context, req *proto.ChangelogReq) (*proto.ChangelogResp, error) {
	if !s.owns(req.MDT) {
		return nil, fmt.Errorf("mds: changelog of MDT%04x: %w: %w", req.MDT, ErrNotOwner, syscall.EREMOTE)
	}
	limit := req.Limit
	if limit <= 0 || limit > changelogPage {
		limit = changelogPage
	}
	wait := time.NewTimer(time.Duration(min(max(req.Wait, 0), 60_000)) * time.Millisecond)
	defer wait.Stop()
	for {
		safe, moved, err := s.safePoint(ctx, req.MDT)
		if err != nil {
			return nil, err
		}
		resp := &proto.ChangelogResp{SafePoint: safe}
		if safe > req.After {
			err = s.view(ctx, func(t *mtx) error {
				resp.Entries = resp.Entries[:0]
				start, end := t.k.changelogRange(req.MDT, 0)
				var derr error
				if err := t.kv.Scan(ctx, start, end, 1, func(k, _ []byte) bool {
					resp.First, derr = t.k.changelogIndex(k, req.MDT)
					return false
				}); err != nil || derr != nil {
					return firstErr(err, derr)
				}
				from, end := t.k.changelogRange(req.MDT, req.After+1)
				return t.kv.Scan(ctx, from, end, limit, func(k, v []byte) bool {
					var e proto.ChangelogEntry
					if derr = decode(v, &e); derr != nil {
						return false
					}
					if e.Index > safe {
						return false
					}
					resp.Entries = append(resp.Entries, e)
					return true
				})
			})
			if err != nil {
				return nil, fmt.Errorf("mds: read MDT%04x's changelog: %w", req.MDT, err)
			}
		}
		if len(resp.Entries) > 0 || req.Wait <= 0 {
			return resp, nil
		}
		select {
		case <-moved:
		case <-wait.C:
			return resp, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// changelogUser is a consumer's record (P 'U' id).
type changelogUser struct {
	Name    string            `msgpack:"n,omitempty"`
	Cursors map[uint32]uint64 `msgpack:"c,omitempty"`
	Created int64             `msgpack:"t"`
}

// ChangelogUser registers, clears, deregisters or lists consumers.
func (s *Service) ChangelogUser(ctx context.Context, req *proto.ChangelogUserReq) (*proto.ChangelogUserResp, error) {
	var resp proto.ChangelogUserResp
	var err error
	switch req.Op {
	case proto.ChangelogUsers:
	case proto.ChangelogRegister:
		err = s.update(ctx, func(t *mtx) error {
			users, err := t.changelogUsers()
			if err != nil {
				return err
			}
			n := 1
			for _, u := range users {
				if v, err := strconv.Atoi(strings.TrimPrefix(u.ID, "cl")); err == nil && v >= n {
					n = v + 1
				}
			}
			id := "cl" + strconv.Itoa(n)
			resp.Users = []proto.ChangelogUser{{ID: id, Name: req.Name, Cursors: map[uint32]uint64{}}}
			return t.setRecord(t.k.changelogUser(id), &changelogUser{Name: req.Name, Created: t.now})
		})
		if err == nil {
			return &resp, nil
		}
	case proto.ChangelogClear:
		if !s.owns(req.MDT) {
			return nil, fmt.Errorf("mds: changelog clear on MDT%04x: %w: %w", req.MDT, ErrNotOwner, syscall.EREMOTE)
		}
		safe, _, serr := s.safePoint(ctx, req.MDT)
		if serr != nil {
			return nil, serr
		}
		err = s.update(ctx, func(t *mtx) error {
			var u changelogUser
			ok, err := t.getRecord(t.k.changelogUser(req.ID), &u)
			if err != nil || !ok {
				return firstErr(err, fmt.Errorf("mds: no changelog consumer %q: %w", req.ID, syscall.ENOENT))
			}
			if u.Cursors == nil {
				u.Cursors = map[uint32]uint64{}
			}
			// Never past the safe point, nor back.
			u.Cursors[req.MDT] = max(u.Cursors[req.MDT], min(req.Index, safe))
			return t.setRecord(t.k.changelogUser(req.ID), &u)
		})
	case proto.ChangelogDeregister:
		err = s.update(ctx, func(t *mtx) error {
			ok, err := t.getRecord(t.k.changelogUser(req.ID), &changelogUser{})
			if err != nil || !ok {
				return firstErr(err, fmt.Errorf("mds: no changelog consumer %q: %w", req.ID, syscall.ENOENT))
			}
			return t.kv.Delete(t.k.changelogUser(req.ID))
		})
	default:
		return nil, fmt.Errorf("mds: changelog consumer operation %q: %w", req.Op, syscall.EINVAL)
	}
	if err != nil {
		return nil, err
	}
	err = s.view(ctx, func(t *mtx) error {
		var err error
		resp.Users, err = t.changelogUsers()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// changelogUsers reads every consumer, in id order.
func (t *mtx) changelogUsers() ([]proto.ChangelogUser, error) {
	out := []proto.ChangelogUser{}
	start, end := t.k.changelogUserRange()
	var derr error
	err := t.kv.Scan(t.ctx, start, end, 0, func(k, v []byte) bool {
		var u changelogUser
		if derr = decode(v, &u); derr != nil {
			return false
		}
		cur := map[uint32]uint64{}
		for m, c := range u.Cursors {
			cur[m] = c
		}
		out = append(out, proto.ChangelogUser{ID: t.k.changelogUserID(k), Name: u.Name, Cursors: cur})
		return true
	})
	if err = firstErr(err, derr); err != nil {
		return nil, fmt.Errorf("mds: read changelog consumers: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		return len(out[i].ID) < len(out[j].ID) || len(out[i].ID) == len(out[j].ID) && out[i].ID < out[j].ID
	})
	return out, nil
}

// runChangelogPurge purges the logs of the owned MDTs now and then.
func (s *Service) runChangelogPurge(ctx context.Context) {
	for sleepCtx(ctx, changelogPurgeEach) {
		s.forgetChangelog()
		for _, m := range s.ownedMDTs() {
			if _, err := s.purgeChangelog(ctx, m, changelogKeep); err != nil && ctx.Err() == nil {
				s.log.Warn("mds: purge changelog", "mdt", m, "err", err)
			}
		}
	}
}

// purgeChangelog deletes the entries of mdt that every consumer has
// cleared, or with no consumer all but the newest keep below the safe
// point. It returns how many it deleted.
func (s *Service) purgeChangelog(ctx context.Context, mdt uint32, keep uint64) (int, error) {
	safe, _, err := s.safePoint(ctx, mdt)
	if err != nil {
		return 0, err
	}
	var below uint64
	err = s.view(ctx, func(t *mtx) error {
		users, err := t.changelogUsers()
		if err != nil {
			return err
		}
		if len(users) == 0 {
			below = max(safe, keep) - keep
			return nil
		}
		below = safe
		for _, u := range users {
			below = min(below, u.Cursors[mdt])
		}
		return nil
	})
	if err != nil || below == 0 {
		return 0, err
	}
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(t *mtx) error {
			n = 0
			start, end := t.k.changelogEntry(mdt, 0), t.k.changelogEntry(mdt, below+1)
			var keys [][]byte
			if err := t.kv.Scan(ctx, start, end, changelogPurgeStep, func(k, _ []byte) bool {
				keys = append(keys, slices.Clone(k))
				return true
			}); err != nil {
				return err
			}
			for _, k := range keys {
				if err := t.kv.Delete(k); err != nil {
					return err
				}
			}
			n = len(keys)
			return nil
		})
		total += n
		if err != nil || n < changelogPurgeStep {
			return total, err
		}
	}
}
