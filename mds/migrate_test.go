package mds

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

func (e *env) migrate(phase string, ino uint64, gen uint32, spec layout.Spec) (*proto.MigrateResp, error) {
	return e.s.Migrate(e.ctx, &proto.MigrateReq{Cred: root, Ino: ino, Phase: phase, Gen: gen, Spec: spec})
}

func TestMigratePhases(t *testing.T) {
	onEachEngine(t, func(t *testing.T, e *env) {
		e.s.lockWait = 50 * time.Millisecond
		d := e.mkdir(root, RootIno, "d", 0o777)
		f := e.createOpen(alice, d.Ino, "f", 0o644)
		ino := f.Attr.Ino
		_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: f.Handle, Wrote: true, Size: 1 << 20})
		e.must(err)
		_, err = e.s.Migrate(e.ctx, &proto.MigrateReq{Cred: bob, Ino: ino, Phase: proto.MigrateStart})
		wantErrno(t, err, syscall.EACCES)

		// Start: a new layout of the next generation, objects of its own.
		st, err := e.migrate(proto.MigrateStart, ino, 0, layout.DefaultSpec(3, 128<<10))
		e.must(err)
		if st.Old.Gen != 1 || st.New.Gen != 2 || st.New.Components[0].StripeCount != 3 || st.Cap.Gen != 2 || st.Size != 1<<20 {
			t.Fatalf("start: %+v", st)
		}
		_, err = e.migrate(proto.MigrateStart, ino, 0, layout.Spec{})
		wantErrno(t, err, syscall.EBUSY)
		// The file keeps its layout until the commit.
		if gl, _ := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: ino}); gl.Layout.Gen != 1 {
			t.Fatalf("layout changed before commit: %+v", gl.Layout)
		}
		_, err = e.migrate(proto.MigrateCommit, ino, 2, layout.Spec{})
		wantErrno(t, err, syscall.EINVAL) // not frozen
		fr, err := e.migrate(proto.MigrateFreeze, ino, 2, layout.Spec{})
		e.must(err)
		if fr.Changed || fr.FreezeMillis <= 0 {
			t.Fatalf("freeze: %+v", fr)
		}

		// A reader's capability refresh waits while the file is frozen,
		// and gets the new layout once the migration commits.
		r, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: ino, Flags: syscall.O_RDONLY})
		e.must(err)
		_, err = e.s.GetCap(e.ctx, &proto.GetCapReq{Session: e.session, Ino: ino, Handle: r.Handle})
		wantErrno(t, err, syscall.EINPROGRESS)
		var wg sync.WaitGroup
		var capResp *proto.GetCapResp
		var capErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				capResp, capErr = e.s.GetCap(e.ctx, &proto.GetCapReq{Session: e.session, Ino: ino, Handle: r.Handle})
				if !errors.Is(capErr, syscall.EINPROGRESS) {
					return
				}
			}
		}()
		cm, err := e.s.Migrate(e.ctx, &proto.MigrateReq{Cred: root, Ino: ino, Phase: proto.MigrateCommit, Gen: 2, Written: []byte{5}})
		e.must(err)
		wg.Wait()
		e.must(capErr)
		if capResp.Layout.Gen != 2 || capResp.Cap.Gen != 2 || cm.New.Gen != 2 {
			t.Fatalf("after commit: cap %+v layout gen %d", capResp.Cap, capResp.Layout.Gen)
		}
		in := e.inodeOf(ino)
		if in.Layout.Gen != 2 || !in.wroteObject(0) || in.wroteObject(1) || !in.wroteObject(2) {
			t.Fatalf("inode after commit: layout %+v written %v", in.Layout, in.Written)
		}
		if e.queueLen() != 1 {
			t.Fatalf("old objects not queued: %d entries", e.queueLen())
		}
		_, err = e.migrate(proto.MigrateCommit, ino, 2, layout.Spec{})
		wantErrno(t, err, syscall.ENOENT)

		// An abort before the freeze leaves the layout alone; after it,
		// the layout takes the new generation (the old objects may have
		// been fenced to it).
		st, err = e.migrate(proto.MigrateStart, ino, 0, layout.Spec{})
		e.must(err)
		e.must(e.s.migrateAbort(e.ctx, ino, st.New.Gen, proto.ReqTag{}))
		if g := e.inodeOf(ino).Layout.Gen; g != 2 {
			t.Fatalf("abort before freeze: gen %d", g)
		}
		st, err = e.migrate(proto.MigrateStart, ino, 0, layout.Spec{})
		e.must(err)
		if st.New.Gen != 3 || st.New.Components[0].StripeCount != 3 {
			t.Fatalf("second start: %+v", st.New)
		}
		_, err = e.migrate(proto.MigrateFreeze, ino, 3, layout.Spec{})
		e.must(err)
		_, err = e.migrate(proto.MigrateAbort, ino, 3, layout.Spec{})
		e.must(err)
		if in := e.inodeOf(ino); in.Layout.Gen != 3 || in.Layout.Components[0].Objects[0] != cm.New.Components[0].Objects[0] {
			t.Fatalf("abort after freeze: %+v", in.Layout)
		}
		if e.queueLen() != 3 {
			t.Fatalf("aborted objects not queued: %d entries", e.queueLen())
		}
	})
}

// TestMigrateAbandonedFreeze: a freeze nobody renews ends at its deadline;
// the next refresh aborts it, and a truncate that waited goes on.
func TestMigrateAbandonedFreeze(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	e.s.lockWait = 50 * time.Millisecond
	d := e.mkdir(root, RootIno, "d", 0o777)
	f := e.createOpen(alice, d.Ino, "f", 0o644)
	ino := f.Attr.Ino
	st, err := e.migrate(proto.MigrateStart, ino, 0, layout.Spec{})
	e.must(err)
	_, err = e.migrate(proto.MigrateFreeze, ino, st.New.Gen, layout.Spec{})
	e.must(err)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: ino, Valid: proto.SetSize, Size: 10})
	wantErrno(t, err, syscall.EINPROGRESS)
	e.clock.Advance(migrateFreezeTTL + time.Second)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: ino, Valid: proto.SetSize, Size: 10})
	e.must(err)
	in := e.inodeOf(ino)
	if in.Layout.Gen != st.New.Gen || in.Size != 10 {
		t.Fatalf("after the abandoned freeze: gen %d size %d", in.Layout.Gen, in.Size)
	}
	// fsck finds an abandoned migration that nothing met.
	e.heartbeat()
	st, err = e.migrate(proto.MigrateStart, ino, 0, layout.Spec{})
	e.must(err)
	e.clock.Advance(migrateTTL + time.Second)
	var found bool
	e.must(e.s.view(e.ctx, func(tx *mtx) error {
		rec, err := tx.migrationOf(ino)
		if err != nil {
			return err
		}
		p, err := migrationProblem(tx, ino, rec)
		found = p != ""
		return err
	}))
	if !found {
		t.Fatal("fsck does not see the abandoned migration")
	}
	_, err = (&migrationChecker{}).repair(e.ctx, &fsckRun{s: e.s}, &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino}, fix: st.New.Gen})
	e.must(err)
	e.must(e.s.view(e.ctx, func(tx *mtx) error {
		rec, err := tx.migrationOf(ino)
		if rec != nil {
			t.Errorf("migration record left after repair: %+v", rec)
		}
		return err
	}))
}
