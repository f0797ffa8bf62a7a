package mds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Online restripe (strata migrate; see proto.MigrateReq for the phases).
// The migration record (P 'J' ino) holds the new layout until it is
// swapped in. The rules that span transactions:
//
//   - Start, commit and abort write the inode and the record, so two
//     migrations of one file conflict, and a release, a setstripe or a
//     truncate's commit (which write the inode) conflicts with a commit
//     that did not see it. Commit swaps only if the layout is still the
//     generation the migration started from.
//   - Freeze and commit hold the inode's truncMu, and a truncate or a
//     capability refresh waits while the file is frozen (an in-memory
//     wait on this MDS, which owns the inode; the record's deadline when
//     it restarted): a truncate never punches objects the migration has
//     fenced, and a client sent back by the OSS's ESTALE gets the new
//     layout, not the fenced old one.
//   - The old objects are fenced (take the new generation on their OSTs)
//     only while the file is frozen, and the last copy runs after the
//     fence, so every write that got through to an old object is copied;
//     every later one gets ESTALE, waits, and goes to the new layout.
//
// A migration abandoned by its client ends at its deadline: whoever meets
// it then (a refresh, a truncate, a new migration, fsck) aborts it. An
// abort after the freeze keeps the old objects under the new generation,
// since the fence may have given it to them.

// Migration timing.
const (
	migrateTTL       = time.Hour        // a migration not committed by then is abandoned
	migrateFreezeTTL = 30 * time.Second // a freeze not renewed for this long is abandoned
)

// migrationRecord is a restripe in progress.
type migrationRecord struct {
	From        uint32        `msgpack:"f"` // the layout generation it replaces
	Layout      layout.Layout `msgpack:"l"` // the new layout
	DataVersion uint64        `msgpack:"v"` // the file's data version at start
	Frozen      bool          `msgpack:"z,omitempty"`
	Deadline    int64         `msgpack:"d"` // unix nanoseconds
}

// thawWaits are the in-memory waits for frozen files to thaw.
type thawWaits struct {
	mu sync.Mutex
	m  map[uint64]chan struct{}
}

// waitCh returns the channel closed when ino thaws.
func (w *thawWaits) waitCh(ino uint64) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[uint64]chan struct{}{}
	}
	ch := w.m[ino]
	if ch == nil {
		ch = make(chan struct{})
		w.m[ino] = ch
	}
	return ch
}

// thaw wakes everything waiting for ino.
func (w *thawWaits) thaw(ino uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch := w.m[ino]; ch != nil {
		close(ch)
		delete(w.m, ino)
	}
}

// migrationOf reads ino's migration record, or nil.
func (t *mtx) migrationOf(ino uint64) (*migrationRecord, error) {
	var rec migrationRecord
	ok, err := t.getRecord(t.k.migration(ino), &rec)
	if err != nil || !ok {
		return nil, err
	}
	return &rec, nil
}

// errMigrating is what a phase gets when the migration it names is gone
// or the file changed under it.
var errMigrating = errors.New("mds: migrate")

// Migrate serves one phase of a migration.
func (s *Service) Migrate(ctx context.Context, req *proto.MigrateReq) (*proto.MigrateResp, error) {
	var resp proto.MigrateResp
	var err error
	switch req.Phase {
	case proto.MigrateStart:
		err = s.migrateStart(ctx, req, &resp)
	case proto.MigrateFreeze:
		err = s.migrateFreeze(ctx, req, &resp)
	case proto.MigrateRenew:
		err = s.updateInode(ctx, req.Ino, func(t *mtx) error {
			rec, err := t.liveMigration(req)
			if err != nil {
				return err
			}
			ttl := migrateTTL
			if rec.Frozen {
				ttl = migrateFreezeTTL
			}
			rec.Deadline = t.now + int64(ttl)
			return t.setRecord(t.k.migration(req.Ino), rec)
		})
	case proto.MigrateCommit:
		err = s.migrateCommit(ctx, req, &resp)
	case proto.MigrateAbort:
		err = s.migrateAbort(ctx, req.Ino, req.Gen, req.Tag)
	default:
		err = fmt.Errorf("mds: migrate phase %q: %w", req.Phase, syscall.EINVAL)
	}
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// liveMigration returns the migration req names, failing if it is gone or
// past its deadline.
func (t *mtx) liveMigration(req *proto.MigrateReq) (*migrationRecord, error) {
	rec, err := t.migrationOf(req.Ino)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.Layout.Gen != req.Gen || rec.Deadline < t.now {
		return nil, fmt.Errorf("%w %#x: no migration to generation %d in progress: %w", errMigrating, req.Ino, req.Gen, syscall.ENOENT)
	}
	return rec, nil
}

// migrateStart allocates the new layout and records the migration.
func (s *Service) migrateStart(ctx context.Context, req *proto.MigrateReq, resp *proto.MigrateResp) error {
	if err := req.Spec.Validate(); err != nil {
		return fmt.Errorf("mds: migrate %#x: %w: %w", req.Ino, err, syscall.EINVAL)
	}
	var expired *migrationRecord
	err := s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpMigrate, resp, func(t *mtx) error {
		expired = nil
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := checkOpenable(in); err != nil {
			return err
		}
		if !isOwner(&req.Cred, in) && !permits(&req.Cred, in, mayWrite) {
			return fmt.Errorf("mds: migrate %#x by uid %d: %w", in.Ino, req.Cred.Uid, syscall.EACCES)
		}
		if in.released() || in.Layout.Released {
			return fmt.Errorf("mds: migrate %#x: the file is released (restore it first): %w", in.Ino, syscall.ENODATA)
		}
		if act, err := t.hsmAction(in.Ino); err != nil || act != nil {
			return firstErr(err, fmt.Errorf("mds: migrate %#x: an HSM action is in progress: %w", in.Ino, syscall.EBUSY))
		}
		if t.checkSpecPools(&req.Spec) != nil {
			return fmt.Errorf("mds: migrate %#x: no such pool: %w", in.Ino, syscall.EINVAL)
		}
		rec, err := t.migrationOf(in.Ino)
		if err != nil {
			return err
		}
		if rec != nil {
			if rec.Deadline >= t.now {
				return fmt.Errorf("mds: migrate %#x: another migration is in progress: %w", in.Ino, syscall.EBUSY)
			}
			if err := t.endMigration(in, rec); err != nil {
				return err
			}
			expired = rec
		}
		spec := req.Spec.Resolve(in.Layout.Spec())
		lay, next, err := s.instantiate1(spec, in)
		if err != nil {
			return err
		}
		lay.Gen = in.Layout.Gen + 1
		in.NextObjSeq = next
		t.put(in)
		rec = &migrationRecord{From: in.Layout.Gen, Layout: lay, DataVersion: in.DataVersion, Deadline: t.now + int64(migrateTTL)}
		if err := t.setRecord(t.k.migration(in.Ino), rec); err != nil {
			return err
		}
		*resp = proto.MigrateResp{Old: *in.Layout, New: lay, Size: in.Size,
			Cap: s.capability(in.Ino, proto.RightRead|proto.RightWrite, lay.Gen, in.TruncEpoch)}
		return nil
	}))
	if err != nil {
		return err
	}
	if expired != nil {
		s.migr.thaw(req.Ino)
		s.kickDestroy()
	}
	s.log.Info("mds: migrate started", "ino", fmt.Sprintf("%#x", req.Ino), "gen", resp.New.Gen)
	return nil
}

// instantiate1 allocates objects for spec on the active OSTs, reading the
// OST table again once if too few are known (as allocate does).
func (s *Service) instantiate1(spec layout.Spec, in *inode) (layout.Layout, uint32, error) {
	lay, next, err := s.alloc.Instantiate(spec, in.Ino, in.NextObjSeq, s.targets.allocTargets(s.now()))
	if errors.Is(err, layout.ErrNoTargets) {
		if lerr := s.targets.load(context.Background(), s); lerr == nil {
			lay, next, err = s.alloc.Instantiate(spec, in.Ino, in.NextObjSeq, s.targets.allocTargets(s.now()))
		}
	}
	if err != nil {
		return layout.Layout{}, 0, layoutErrno(fmt.Errorf("mds: migrate %#x: %w", in.Ino, err))
	}
	return lay, next, nil
}

// migrateFreeze freezes the file for the last copy.
func (s *Service) migrateFreeze(ctx context.Context, req *proto.MigrateReq, resp *proto.MigrateResp) error {
	mu := s.truncMu.of(req.Ino)
	mu.Lock()
	defer mu.Unlock()
	if err := s.finishTruncate(ctx, req.Ino); err != nil {
		return err
	}
	return s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpMigrate, resp, func(t *mtx) error {
		rec, err := t.liveMigration(req)
		if err != nil {
			return err
		}
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if in.Layout == nil || in.Layout.Gen != rec.From {
			return fmt.Errorf("%w %#x: the layout changed during the copy: %w", errMigrating, in.Ino, syscall.EBUSY)
		}
		rec.Frozen, rec.Deadline = true, t.now+int64(migrateFreezeTTL)
		if err := t.setRecord(t.k.migration(in.Ino), rec); err != nil {
			return err
		}
		*resp = proto.MigrateResp{Old: *in.Layout, New: rec.Layout, Size: in.Size, Changed: in.DataVersion != rec.DataVersion,
			Cap:          s.capability(in.Ino, proto.RightRead|proto.RightWrite, rec.Layout.Gen, in.TruncEpoch),
			FreezeMillis: migrateFreezeTTL.Milliseconds()}
		return nil
	}))
}

// migrateCommit swaps the new layout in.
func (s *Service) migrateCommit(ctx context.Context, req *proto.MigrateReq, resp *proto.MigrateResp) error {
	mu := s.truncMu.of(req.Ino)
	mu.Lock()
	defer mu.Unlock()
	err := s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpMigrate, resp, func(t *mtx) error {
		rec, err := t.liveMigration(req)
		if err != nil {
			return err
		}
		if !rec.Frozen {
			return fmt.Errorf("%w %#x: commit before freeze: %w", errMigrating, req.Ino, syscall.EINVAL)
		}
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if in.Layout == nil || in.Layout.Gen != rec.From {
			return fmt.Errorf("%w %#x: the layout changed during the copy: %w", errMigrating, in.Ino, syscall.EBUSY)
		}
		old := in.objects()
		lay := rec.Layout
		in.Layout = &lay
		in.Written = nil
		in.noteWritten(lay.Gen, bitmapIndices(req.Written, objectCount(&lay)))
		// The data is the same, but clients validate their caches by
		// the data version, and the layout they map with changed.
		in.DataVersion++
		t.put(in)
		t.changelog(&req.Cred, proto.ChangelogMigrate, in.Ino, 0, "")
		if _, err := t.queueDestroy(in.Ino, old); err != nil {
			return err
		}
		*resp = proto.MigrateResp{New: lay, Size: in.Size}
		return t.kv.Delete(t.k.migration(in.Ino))
	}))
	if err != nil {
		return err
	}
	s.migr.thaw(req.Ino)
	s.kickDestroy()
	s.log.Info("mds: migrate committed", "ino", fmt.Sprintf("%#x", req.Ino), "gen", req.Gen)
	return nil
}

// bitmapIndices lists the set bits of a written bitmap below n.
func bitmapIndices(b []byte, n int) []uint32 {
	var out []uint32
	for i := range min(len(b)*8, n) {
		if b[i/8]&(1<<(i%8)) != 0 {
			out = append(out, uint32(i))
		}
	}
	return out
}

// migrateAbort ends a migration without swapping (gen 0: whichever is in
// progress).
func (s *Service) migrateAbort(ctx context.Context, ino uint64, gen uint32, tag proto.ReqTag) error {
	mu := s.truncMu.of(ino)
	mu.Lock()
	defer mu.Unlock()
	ended := false
	err := s.updateInode(ctx, ino, s.tagged(tag, proto.OpMigrate, nil, func(t *mtx) error {
		ended = false
		rec, err := t.migrationOf(ino)
		if err != nil || rec == nil || gen != 0 && rec.Layout.Gen != gen {
			return err
		}
		in, err := t.inode(ino)
		if isErrno(err, syscall.ENOENT) {
			ended = true
			if _, err := t.queueDestroy(ino, layoutObjects(&rec.Layout)); err != nil {
				return err
			}
			return t.kv.Delete(t.k.migration(ino))
		}
		if err != nil {
			return err
		}
		ended = true
		return t.endMigration(in, rec)
	}))
	if err != nil {
		return err
	}
	if ended {
		s.migr.thaw(ino)
		s.kickDestroy()
		s.log.Info("mds: migrate aborted", "ino", fmt.Sprintf("%#x", ino), "gen", gen)
	}
	return nil
}

// endMigration aborts rec in t: its new objects are queued for
// destruction and, if the file was frozen (its old objects may have been
// fenced to the new generation), the layout takes that generation.
func (t *mtx) endMigration(in *inode, rec *migrationRecord) error {
	if rec.Frozen && in.Layout != nil && in.Layout.Gen == rec.From {
		in.Layout.Gen = rec.Layout.Gen
		t.put(in)
	}
	if _, err := t.queueDestroy(in.Ino, layoutObjects(&rec.Layout)); err != nil {
		return err
	}
	return t.kv.Delete(t.k.migration(in.Ino))
}

// waitThawed returns once ino is not frozen by a migration, aborting a
// freeze past its deadline. It waits at most a lock wait slice, then
// fails with EINPROGRESS: the client asks again.
func (s *Service) waitThawed(ctx context.Context, ino uint64) error {
	deadline := time.NewTimer(s.lockWait)
	defer deadline.Stop()
	for {
		ch := s.migr.waitCh(ino)
		var rec *migrationRecord
		err := s.view(ctx, func(t *mtx) error {
			var err error
			rec, err = t.migrationOf(ino)
			return err
		})
		switch {
		case err != nil:
			return err
		case rec == nil || !rec.Frozen:
			return nil
		case rec.Deadline < s.now().UnixNano():
			return s.migrateAbort(ctx, ino, rec.Layout.Gen, proto.ReqTag{})
		}
		left := time.NewTimer(time.Duration(rec.Deadline - s.now().UnixNano()))
		select {
		case <-ch:
		case <-left.C:
		case <-deadline.C:
			left.Stop()
			return fmt.Errorf("mds: %#x is frozen by a migration, try again: %w", ino, syscall.EINPROGRESS)
		case <-ctx.Done():
			left.Stop()
			return ctx.Err()
		}
		left.Stop()
	}
}

// lockTruncThawed takes ino's truncMu once no migration holds the file
// frozen, and returns the function that releases it.
func (s *Service) lockTruncThawed(ctx context.Context, ino uint64) (func(), error) {
	mu := s.truncMu.of(ino)
	for {
		if err := s.waitThawed(ctx, ino); err != nil {
			return nil, err
		}
		mu.Lock()
		frozen := false
		err := s.view(ctx, func(t *mtx) error {
			rec, err := t.migrationOf(ino)
			frozen = rec != nil && rec.Frozen
			return err
		})
		if err == nil && !frozen {
			return mu.Unlock, nil
		}
		mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}
