package mds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// Destroy worker tuning.
const (
	destroyPage  = 256              // queue entries read per scan
	destroyRetry = 10 * time.Second // wait after a failed pass
	destroyIdle  = time.Minute      // rescan even without a kick
	// destroyGather is how long a kicked worker lets unlinks queue up
	// before a pass, so that a recursive delete is drained in passes of
	// many entries rather than a scan and a transaction per file.
	destroyGather = 20 * time.Millisecond
)

// queueDestroy adds a file's objects to the destroy queue. It reports
// whether there was anything to queue.
func (t *mtx) queueDestroy(ino uint64, objs []proto.ObjRef) (bool, error) {
	if len(objs) == 0 {
		return false, nil
	}
	seq := objs[0].ID.Seq
	for _, o := range objs[1:] {
		seq = min(seq, o.ID.Seq)
	}
	key := t.k.destroy(ino, seq)
	t.queued = append(t.queued, key)
	return true, t.setRecord(key, &destroyRecord{Objs: objs, Queued: t.now})
}

// maxDestroyHints bounds the keys a service remembers for its destroy
// worker; past it the worker scans the queue instead.
const maxDestroyHints = 1 << 16

// destroyHints are the destroy-queue entries this service queued since
// its worker's last pass. A pass over them reads just those keys: a scan
// of the queue from its start walks every entry deleted since the store
// last compacted, which made a long run of unlinks quadratic (at 15,000
// unlinks the scans took 42% of the MDS's CPU). Entries queued by another
// MDS, or left by a crash, are found by the periodic full scan.
type destroyHints struct {
	mu   sync.Mutex
	keys [][]byte
	lost bool // some were dropped (too many): scan
}

// add records keys queued by a committed transaction.
func (h *destroyHints) add(keys [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.keys)+len(keys) > maxDestroyHints {
		h.lost = true
		return
	}
	h.keys = append(h.keys, keys...)
}

// take returns the recorded keys and whether they are all there is to do
// (false: a full scan is needed), and forgets them.
func (h *destroyHints) take() ([][]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys, ok := h.keys, !h.lost
	h.keys, h.lost = nil, false
	return keys, ok
}

// drainHinted is drainDestroyQueue over the entries this service queued
// (destroyHints), read by key; it falls back to a full pass when hints
// were lost.
func (s *Service) drainHinted(ctx context.Context) (done, left int, err error) {
	keys, ok := s.hints.take()
	if !ok {
		return s.drainDestroyQueue(ctx)
	}
	if len(keys) == 0 {
		return 0, 0, nil
	}
	if err := s.db.Sync(ctx); err != nil {
		return 0, 0, fmt.Errorf("mds: sync before destroying objects: %w", err)
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), destroyPage)]
		keys = keys[len(batch):]
		var page []queuedDestroy
		err := s.view(ctx, func(t *mtx) error {
			page = page[:0]
			vals, err := t.kv.BatchGet(ctx, batch)
			if err != nil {
				return err
			}
			for i, v := range vals {
				if v == nil {
					continue // already destroyed (by a full pass)
				}
				q := queuedDestroy{key: batch[i]}
				if q.ino, _, err = t.k.destroyID(batch[i]); err != nil {
					return err
				}
				if err := decode(v, &q.rec); err != nil {
					return err
				}
				if s.serves(q.ino) {
					page = append(page, q)
				}
			}
			return nil
		})
		if err != nil {
			return done, left, fmt.Errorf("mds: read destroy queue: %w", err)
		}
		d, l, err := s.destroyAndSettle(ctx, page)
		done, left = done+d, left+l
		if err != nil {
			return done, left, err
		}
	}
	return done, left, nil
}

// kickDestroy wakes the destroy worker.
func (s *Service) kickDestroy() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// serves reports whether this service serves ino's MDT.
func (s *Service) serves(ino uint64) bool { return s.owns(inoMDT(ino)) }

// queuedDestroy is one destroy-queue entry.
type queuedDestroy struct {
	key []byte
	ino uint64
	rec destroyRecord
}

// drainDestroyQueue makes one pass over the destroy queue entries of the
// served MDTs: it asks each OSS to delete its objects and removes the
// entries whose objects are all gone, keeping the rest for a later pass.
// It returns how many entries finished and how many are left.
func (s *Service) drainDestroyQueue(ctx context.Context) (done, left int, err error) {
	start, end := s.keys.destroyRange()
	// Destroys on the OSTs are durable and final: the unlinks that queued
	// them must be durable first, or a crash could bring back a file
	// whose objects are gone.
	if err := s.db.Sync(ctx); err != nil {
		return 0, 0, fmt.Errorf("mds: sync before destroying objects: %w", err)
	}
	for {
		var page []queuedDestroy
		err := s.view(ctx, func(t *mtx) error {
			var derr error
			err := t.kv.Scan(ctx, start, end, destroyPage, func(k, v []byte) bool {
				q := queuedDestroy{key: slices.Clone(k)}
				if q.ino, _, derr = t.k.destroyID(k); derr != nil {
					return false
				}
				if derr = decode(v, &q.rec); derr != nil {
					return false
				}
				page = append(page, q)
				return true
			})
			return firstErr(err, derr)
		})
		if err != nil {
			return done, left, fmt.Errorf("mds: read destroy queue: %w", err)
		}
		mine := slices.DeleteFunc(slices.Clone(page), func(q queuedDestroy) bool { return !s.serves(q.ino) })
		d, l, err := s.destroyAndSettle(ctx, mine)
		done, left = done+d, left+l
		if err != nil {
			return done, left, err
		}
		if len(page) < destroyPage {
			return done, left, nil
		}
		start = append(page[len(page)-1].key, 0)
	}
}

// destroyAndSettle destroys the objects of a page of queue entries and
// settles the entries, reporting how many finished and how many are left.
func (s *Service) destroyAndSettle(ctx context.Context, page []queuedDestroy) (done, left int, err error) {
	var settled []settledDestroy
	rest := s.destroyPage(ctx, page)
	for i, q := range page {
		remaining := rest[i]
		if len(remaining) < len(q.rec.Objs) {
			settled = append(settled, settledDestroy{q, remaining})
		}
		if len(remaining) == 0 {
			done++
		} else {
			left++
		}
	}
	return done, left, s.settleDestroys(ctx, settled)
}

// destroyPage deletes the objects of a page of queue entries and returns,
// per entry, the objects that could not be deleted. With an ObjectIO that
// can, it sends one call per OSS for the whole page, in parallel (an OSS
// then syncs its tombstone log once for hundreds of unlinked files, not
// once each); otherwise one call per entry and OSS.
func (s *Service) destroyPage(ctx context.Context, page []queuedDestroy) [][]proto.ObjRef {
	left := make([][]proto.ObjRef, len(page))
	many, ok := s.io.(ManyDestroyer)
	if !ok {
		for i, q := range page {
			left[i] = s.destroyObjects(ctx, q.ino, q.rec.Objs)
		}
		return left
	}
	type part struct {
		entry int
		objs  []proto.ObjRef
	}
	byAddr := map[string][]part{}
	for i, q := range page {
		perAddr := map[string][]proto.ObjRef{}
		for _, o := range q.rec.Objs {
			addr, err := s.targets.addr(o.OST)
			if err != nil {
				left[i] = append(left[i], o)
				continue
			}
			perAddr[addr] = append(perAddr[addr], o)
		}
		for addr, objs := range perAddr {
			byAddr[addr] = append(byAddr[addr], part{i, objs})
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, parts := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			files := make([]proto.ObjDestroyReq, len(parts))
			for j, p := range parts {
				files[j] = proto.ObjDestroyReq{Cap: s.capability(page[p.entry].ino, proto.RightWrite, 0, 0), Objs: p.objs}
			}
			failed := func(p part) {
				mu.Lock()
				left[p.entry] = append(left[p.entry], p.objs...)
				mu.Unlock()
			}
			err := many.DestroyMany(ctx, addr, files)
			switch {
			case errors.Is(err, syscall.ENOSYS):
				// An OSS from before OpObjDestroyMany: a call per file.
				for j, p := range parts {
					if err := s.io.Destroy(ctx, addr, files[j].Cap, p.objs); err != nil {
						s.log.Warn("mds: destroy objects", "ino", fmt.Sprintf("%#x", page[p.entry].ino), "oss", addr, "err", err)
						failed(p)
					}
				}
			case err != nil:
				s.log.Warn("mds: destroy objects", "oss", addr, "files", len(files), "err", err)
				for _, p := range parts {
					failed(p)
				}
			}
		}()
	}
	wg.Wait()
	return left
}

// destroyObjects asks the OSSes to delete objs of ino, one call per OSS in
// parallel, and returns the objects that could not be deleted.
func (s *Service) destroyObjects(ctx context.Context, ino uint64, objs []proto.ObjRef) []proto.ObjRef {
	byAddr := map[string][]proto.ObjRef{}
	var failed []proto.ObjRef
	for _, o := range objs {
		addr, err := s.targets.addr(o.OST)
		if err != nil {
			failed = append(failed, o)
			continue
		}
		byAddr[addr] = append(byAddr[addr], o)
	}
	capab := s.capability(ino, proto.RightWrite, 0, 0)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, batch := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.io.Destroy(ctx, addr, capab, batch); err != nil {
				s.log.Warn("mds: destroy objects", "ino", fmt.Sprintf("%#x", ino), "oss", addr,
					"objects", len(batch), "err", err)
				mu.Lock()
				failed = append(failed, batch...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// settledDestroy is a queue entry some of whose objects are gone.
type settledDestroy struct {
	q         queuedDestroy
	remaining []proto.ObjRef // objects still to delete
}

// settleDestroys removes the finished queue entries of a pass and rewrites
// the others with the objects still to delete, in one transaction: a
// recursive delete queues thousands of entries, and a transaction each
// would cost the MDS more than the unlinks did.
func (s *Service) settleDestroys(ctx context.Context, settled []settledDestroy) error {
	if len(settled) == 0 {
		return nil
	}
	err := s.update(ctx, func(t *mtx) error {
		for _, e := range settled {
			if len(e.remaining) == 0 {
				if err := t.kv.Delete(e.q.key); err != nil {
					return err
				}
				continue
			}
			rec := e.q.rec
			rec.Objs = e.remaining
			if err := t.setRecord(e.q.key, &rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mds: update %d destroy queue entries: %w", len(settled), err)
	}
	return nil
}

// runDestroyWorker drains the destroy queue destroyGather after it is
// kicked (the entries this service queued, by key), and all of it at
// start, every destroyIdle, and destroyRetry after a pass that left work,
// until ctx ends.
func (s *Service) runDestroyWorker(ctx context.Context) {
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		pass := s.drainDestroyQueue // the periodic full pass
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
			if !sleepCtx(ctx, destroyGather) {
				return
			}
			pass = s.drainHinted // what this service queued since
		case <-t.C:
		}
		done, left, err := pass(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("mds: destroy queue pass failed", "err", err)
		}
		if done > 0 || left > 0 {
			s.log.Debug("mds: destroy queue pass", "destroyed", done, "left", left)
		}
		wait = destroyIdle
		if err != nil || left > 0 {
			wait = destroyRetry
		}
	}
}

// reapOrphans destroys the orphans of the served MDTs that no handle holds
// open: after a restart, files unlinked while open whose clients did not
// come back to reopen them. It returns how many it destroyed.
func (s *Service) reapOrphans(ctx context.Context) (int, error) {
	var inos []uint64
	err := s.view(ctx, func(t *mtx) error {
		start, end := t.k.orphanRange()
		var kerr error
		err := t.kv.Scan(ctx, start, end, 0, func(k, _ []byte) bool {
			var ino uint64
			if ino, kerr = t.k.orphanIno(k); kerr != nil {
				return false
			}
			inos = append(inos, ino)
			return true
		})
		return firstErr(err, kerr)
	})
	if err != nil {
		return 0, fmt.Errorf("mds: read orphan list: %w", err)
	}
	n := 0
	for _, ino := range inos {
		if !s.serves(ino) {
			continue
		}
		destroyed, err := s.reapOrphan(ctx, ino)
		if err != nil {
			return n, err
		}
		if destroyed {
			n++
		}
	}
	if n > 0 {
		s.log.Info("mds: destroyed orphans left by clients that did not return", "count", n)
		s.kickDestroy()
	}
	return n, nil
}

// reapOrphan destroys one orphan unless it is open.
func (s *Service) reapOrphan(ctx context.Context, ino uint64) (bool, error) {
	gate := s.gates.of(ino)
	gate.Lock()
	defer gate.Unlock()
	if s.open.count(ino) > 0 {
		return false, nil
	}
	destroyed := false
	err := s.update(ctx, func(t *mtx) error {
		destroyed = false
		in, err := t.inode(ino)
		if isErrno(err, syscall.ENOENT) {
			return t.kv.Delete(t.k.orphan(ino))
		}
		if err != nil {
			return err
		}
		if in.Nlink > 0 {
			return t.kv.Delete(t.k.orphan(ino))
		}
		destroyed = true
		_, err = s.destroyInode(t, in)
		return err
	})
	return destroyed, err
}

// runOrphanReaper reaps orphans once the recovery window has closed (the
// clients that held them open have replayed their opens by then, or been
// evicted), and again every two leases after.
func (s *Service) runOrphanReaper(ctx context.Context) {
	grace := 2 * s.lease
	if !s.waitRecovery(ctx) {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.reapOrphans(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("mds: orphan reaper", "err", err)
		}
		t.Reset(grace)
	}
}

// Background runs the service's housekeeping until ctx ends: the destroy
// worker, the session lease reaper, the orphan reaper and the recovery of
// truncates a crash interrupted.
func (s *Service) Background(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){s.runDestroyWorker, s.runLeaseReaper, s.runOrphanReaper, s.runTruncateRecovery,
		s.runRecoveryWindow, s.runLeases, s.runOSTWatch, s.runHsmWatch, s.runChangelogPurge} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	wg.Wait()
}

// sleepCtx waits d, or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runTruncateRecovery finishes the truncates a crash interrupted, retrying
// every destroyRetry while some cannot finish (an OSS is down).
func (s *Service) runTruncateRecovery(ctx context.Context) {
	for {
		n, err := s.recoverTruncates(ctx)
		if n > 0 {
			s.log.Info("mds: finished interrupted truncates", "count", n)
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Warn("mds: interrupted truncate not finished yet", "err", err)
		if !sleepCtx(ctx, destroyRetry) {
			return
		}
	}
}
