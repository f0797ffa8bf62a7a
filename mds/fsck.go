package mds

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// Filesystem check (strata fsck, Lustre's LFSCK). The MDS runs it, online:
// it owns the store and reaches the OSTs. A run is a list of checkers, one
// per class of inconsistency, each behind fsckChecker, so later state
// (sessions, the HSM queue, quotas) adds a checker rather than changing the
// others. The CLI drives a run one page (OpFsck) at a time; each page does
// a bounded amount of work in short transactions, so the filesystem stays
// in use and no request runs long.
//
// Nothing here takes the namespace offline, so what a checker reads may
// change under it. Each checker therefore verifies every suspect against a
// fresh read before it reports it, and again, in the transaction that
// repairs it, before it repairs it; a suspect that changed meanwhile is
// left for the next run rather than judged on stale data. Where a count
// spans many transactions (link counts), the inode's record is
// fingerprinted when first read: a record unchanged at the end proves that
// nothing that changes its links ran in between, since every link, unlink,
// rename and mkdir writes the inodes whose counts it changes.
//
// A run lives in the memory of the MDS that serves it (runs are small
// except for the namespace census of the link and directory checkers, a
// few dozen bytes per inode) and is forgotten when done, when idle for
// fsckRunIdle, or when the MDS restarts: the CLI then starts again.

// fsckChecker is one class of check.
type fsckChecker interface {
	// name is the class of the checker's findings, as the CLI shows it.
	name() string
	// step looks at the next bounded page of what the checker covers and
	// returns what is wrong there, each finding verified against a fresh
	// read, how many items it looked at, and whether it has now covered
	// everything. It advances its position only when it succeeds.
	step(ctx context.Context, r *fsckRun) (found []*fsckFinding, checked int, done bool, err error)
	// repair fixes one of the checker's findings, checking first, in the
	// transaction that repairs it, that the problem still holds. It
	// returns what it did, or errFsckVanished if the problem went away.
	repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error)
}

// fsckFinding is a finding with what its checker needs to repair it.
type fsckFinding struct {
	proto.FsckFinding
	fix any
}

// errFsckVanished is what a repair returns when a second look finds the
// problem gone (a concurrent operation fixed or removed it).
var errFsckVanished = errors.New("mds: fsck: the problem went away")

// fsckCheckers lists the checkers in the order a run uses them: entries
// before the shape of the tree they make up, the tree before the link
// counts it implies, metadata before the objects it references.
var fsckCheckers = []struct {
	name string
	make func() fsckChecker
}{
	{fsckDangling, func() fsckChecker { return &danglingChecker{} }},
	{fsckDirs, func() fsckChecker { return &dirChecker{} }},
	{fsckLinks, func() fsckChecker { return &linkChecker{} }},
	{fsckOrphanList, func() fsckChecker { return &orphanListChecker{} }},
	{fsckMigrations, func() fsckChecker { return &migrationChecker{} }},
	{fsckQuota, func() fsckChecker { return &quotaChecker{} }},
	{fsckDestroyQueue, func() fsckChecker { return &destroyQueueChecker{} }},
	{fsckHsmQueue, func() fsckChecker { return &hsmQueueChecker{} }},
	{fsckOrphanObjects, func() fsckChecker { return &orphanObjectChecker{} }},
	{fsckMissingObjects, func() fsckChecker { return &missingObjectChecker{} }},
}

// Checker names: the classes of findings.
const (
	fsckDangling       = "dangling-entries"
	fsckDirs           = "directories"
	fsckLinks          = "link-counts"
	fsckOrphanList     = "orphan-list"
	fsckDestroyQueue   = "destroy-queue"
	fsckMigrations     = "migrations"
	fsckQuota          = "quota"
	fsckOrphanObjects  = "orphan-objects"
	fsckMissingObjects = "missing-objects"
)

// Run tuning.
const (
	fsckPage        = 256                    // store keys a step reads
	fsckPageBudget  = 300 * time.Millisecond // work one request does at most (about)
	fsckMaxFindings = 256                    // findings one reply carries at most (about)
	fsckRunIdle     = 10 * time.Minute       // a run not asked for this long is dropped
	fsckMaxRuns     = 8                      // runs at once
)

// fsckRun is one run of fsck.
type fsckRun struct {
	s      *Service
	id     uint64
	repair bool
	// start is the run's metadata snapshot time: an object younger than
	// it is never taken for an orphan.
	start time.Time

	mu       sync.Mutex // one page at a time
	checkers []fsckChecker
	cur      int // the checker at work
	checked  map[string]uint64
	pages    uint64          // replies produced
	last     *proto.FsckResp // the last reply, for a resend
	touched  time.Time
	notes    []string        // notes for the next reply
	noted    map[string]bool // every note made, so that each is made once

	census    *fsckCensus // the namespace census, shared by two checkers
	lostFound uint64      // /lost+found once a repair made or found it
}

// fsckRuns is the table of runs in progress.
type fsckRuns struct {
	mu   sync.Mutex
	runs map[uint64]*fsckRun
	next uint64
}

// Fsck serves one page of a filesystem check (see proto.FsckReq).
func (s *Service) Fsck(ctx context.Context, req *proto.FsckReq) (*proto.FsckResp, error) {
	r, err := s.fsckRun(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.touched = time.Now()
	switch {
	case req.Run != 0 && r.last != nil && req.Page+1 == r.pages:
		return r.last, nil
	case req.Run != 0 && req.Page != r.pages:
		return nil, fmt.Errorf("mds: fsck run %d: page %d asked for, %d served: %w", r.id, req.Page, r.pages, syscall.EINVAL)
	}
	resp, err := r.page(ctx)
	if err != nil {
		return nil, err
	}
	r.pages++
	r.last = resp
	if resp.Done {
		r.census = nil // the run stays only to answer a resend
	}
	return resp, nil
}

// fsckRun returns the run a request names, or a new one for Run 0.
func (s *Service) fsckRun(req *proto.FsckReq) (*fsckRun, error) {
	t := &s.fsck
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for id, r := range t.runs {
		if r.mu.TryLock() {
			idle := now.Sub(r.touched) > fsckRunIdle || r.last != nil && r.last.Done && now.Sub(r.touched) > time.Minute
			r.mu.Unlock()
			if idle {
				delete(t.runs, id)
			}
		}
	}
	if req.Run != 0 {
		r := t.runs[req.Run]
		if r == nil {
			return nil, fmt.Errorf("mds: fsck run %d is unknown (finished, idle too long, or the MDS restarted): %w", req.Run, syscall.ENOENT)
		}
		return r, nil
	}
	if t.runs == nil {
		t.runs = map[uint64]*fsckRun{}
	}
	if len(t.runs) >= fsckMaxRuns {
		return nil, fmt.Errorf("mds: fsck: %d runs in progress already: %w", len(t.runs), syscall.EBUSY)
	}
	r := &fsckRun{s: s, repair: req.Repair, start: s.now(), checked: map[string]uint64{}, touched: now}
	names := req.Checkers
	if len(names) == 0 {
		for _, c := range fsckCheckers {
			names = append(names, c.name)
		}
	}
	for _, c := range fsckCheckers {
		if slices.Contains(names, c.name) {
			r.checkers = append(r.checkers, c.make())
		}
	}
	if len(r.checkers) != len(slices.Compact(slices.Sorted(slices.Values(names)))) {
		return nil, fmt.Errorf("mds: fsck: unknown check in %v (known: %v): %w", names, fsckCheckerNames(), syscall.EINVAL)
	}
	t.next++
	r.id = t.next
	t.runs[r.id] = r
	s.log.Info("mds: fsck started", "run", r.id, "repair", r.repair, "checks", names)
	return r, nil
}

// fsckCheckerNames lists every checker's name in run order.
func fsckCheckerNames() []string {
	var out []string
	for _, c := range fsckCheckers {
		out = append(out, c.name)
	}
	return out
}

// page runs checker steps until the page's budget is spent or the current
// checker is done, repairing what they find if the run repairs.
func (r *fsckRun) page(ctx context.Context) (*proto.FsckResp, error) {
	deadline := time.Now().Add(fsckPageBudget)
	resp := &proto.FsckResp{Run: r.id}
	for _, c := range r.checkers {
		resp.Checkers = append(resp.Checkers, c.name())
	}
	for r.cur < len(r.checkers) {
		c := r.checkers[r.cur]
		resp.Checker = c.name()
		found, n, done, err := c.step(ctx, r)
		r.checked[c.name()] += uint64(n)
		if err != nil {
			return nil, fmt.Errorf("mds: fsck %s: %w", c.name(), err)
		}
		for _, f := range found {
			f.Class = c.name()
			if r.repair {
				action, err := c.repair(ctx, r, f)
				switch {
				case errors.Is(err, errFsckVanished):
					continue
				case err != nil:
					f.Action = "repair failed: " + err.Error()
				default:
					f.Repaired, f.Action = true, action
				}
			}
			r.s.log.Info("mds: fsck finding", "run", r.id, "class", f.Class, "ino", fmt.Sprintf("%#x", f.Ino),
				"problem", f.Problem, "repaired", f.Repaired, "action", f.Action)
			resp.Findings = append(resp.Findings, f.FsckFinding)
		}
		if done {
			r.cur++
			break
		}
		if time.Now().After(deadline) || len(resp.Findings) >= fsckMaxFindings || ctx.Err() != nil {
			break
		}
	}
	resp.Checked = maps.Clone(r.checked)
	resp.Done = r.cur == len(r.checkers)
	resp.Notes, r.notes = r.notes, nil
	if resp.Done {
		r.s.log.Info("mds: fsck finished", "run", r.id, "checked", r.checked)
	}
	return resp, nil
}

// note records what the run could not check, once.
func (r *fsckRun) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if r.noted[msg] {
		return
	}
	if r.noted == nil {
		r.noted = map[string]bool{}
	}
	r.noted[msg] = true
	r.notes = append(r.notes, msg)
	r.s.log.Warn("mds: fsck: "+msg, "run", r.id)
}

// fingerprint hashes a stored record, to tell later whether it changed.
func fingerprint(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// fsckScan reads up to fsckPage keys of [*cursor, end) in t, calling fn on
// each, and moves *cursor past the last; it reports how many keys it read
// and whether the range is exhausted. *cursor moves even if fn fails, so
// call it in a transaction whose failure discards the page.
func fsckScan(ctx context.Context, t *mtx, cursor *[]byte, end []byte, fn func(k, v []byte) error) (int, bool, error) {
	n := 0
	var ferr error
	var last []byte
	err := t.kv.Scan(ctx, *cursor, end, fsckPage, func(k, v []byte) bool {
		n++
		last = append(last[:0], k...)
		ferr = fn(k, v)
		return ferr == nil
	})
	if err = firstErr(err, ferr); err != nil {
		return n, false, err
	}
	if n > 0 {
		*cursor = append(last, 0)
	}
	return n, n < fsckPage, nil
}

// fsckView runs fn in a read-only snapshot for a step whose cursor is
// *cursor: the cursor moves only if fn succeeds.
func (s *Service) fsckView(ctx context.Context, cursor *[]byte, fn func(t *mtx, cur *[]byte) error) error {
	cur := slices.Clone(*cursor)
	err := s.view(ctx, func(t *mtx) error {
		cur = slices.Clone(*cursor)
		return fn(t, &cur)
	})
	if err == nil {
		*cursor = cur
	}
	return err
}

// fsckRecords is a checker's step over one record range: a page of
// [*cursor (start at first), end) in one snapshot, judging each record
// with judge, which returns a finding or nil. The cursor moves only when
// the page was read whole.
func (s *Service) fsckRecords(ctx context.Context, cursor *[]byte, start, end []byte,
	judge func(t *mtx, key, v []byte) (*fsckFinding, error)) ([]*fsckFinding, int, bool, error) {
	if *cursor == nil {
		*cursor = start
	}
	var found []*fsckFinding
	var n int
	var done bool
	err := s.fsckView(ctx, cursor, func(t *mtx, cur *[]byte) error {
		found = nil
		var err error
		n, done, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
			f, err := judge(t, key, v)
			if f != nil {
				found = append(found, f)
			}
			return err
		})
		return err
	})
	return found, n, done, err
}
