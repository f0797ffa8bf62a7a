package mds

import (
	"context"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/kvtest"
	"github.com/stratafs/strata/proto"
)

// Power-loss tests of the metadata rules: the store is a kvtest.Lossy over
// the embedded engine, whose Crash undoes every commit not synced, as a
// power loss does to a store that syncs its log in the background.

// lossyEnv is an env whose store can lose power.
func lossyEnv(t *testing.T) (*env, func() *kvtest.Lossy) {
	var cur *kvtest.Lossy
	e := newEnv(t, func(t testing.TB, dir string) *kv.DB {
		db := openEmbedded(t, dir)
		cur = kvtest.NewLossy(db.Engine)
		return &kv.DB{Engine: cur}
	})
	return e, func() *kvtest.Lossy { return cur }
}

// powerLoss crashes the store and restarts the service over it.
func (e *env) powerLoss(store *kvtest.Lossy) {
	e.t.Helper()
	if err := store.Crash(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.restart()
}

// TestPowerLossSyncOps: Sync (fsync of a directory) and SetSize with Sync
// (fsync, O_SYNC) make what was committed before them durable.
func TestPowerLossSyncOps(t *testing.T) {
	e, store := lossyEnv(t)
	d := e.mkdir(root, RootIno, "d", 0o755)
	e.create(root, d.Ino, "kept", 0o644)
	e.must(e.s.Sync(e.ctx, &proto.SyncReq{}))
	r := e.createOpen(root, d.Ino, "sized", 0o644)
	_, err := e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: r.Attr.Ino, Handle: r.Handle, Size: 4242, Sync: true})
	e.must(err)
	e.create(root, d.Ino, "lost", 0o644)
	if store().Unsynced() == 0 {
		t.Fatal("nothing unsynced to lose: the test proves nothing")
	}
	e.powerLoss(store())
	if _, err := e.lookup(root, d.Ino, "kept"); err != nil {
		t.Fatalf("entry synced by Sync lost: %v", err)
	}
	if a, err := e.lookup(root, d.Ino, "sized"); err != nil || a.Size != 4242 {
		t.Fatalf("size synced by SetSize lost: %+v %v", a, err)
	}
	if _, err := e.lookup(root, d.Ino, "lost"); !isErrno(err, syscall.ENOENT) {
		t.Fatalf("unsynced create survived (%v): the store loses nothing", err)
	}
}

// TestPowerLossTruncate: a truncate whose punches reached the OSTs (they
// are durable there at once) must not be forgotten by the MDS in a crash:
// its record is synced before the first punch, and recovery finishes it.
func TestPowerLossTruncate(t *testing.T) {
	e, store := lossyEnv(t)
	spec := layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 2, StripeSize: 64 << 10, StripeOffset: -1}}}
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT, Mode: 0o644, Layout: spec})
	e.must(err)
	_, err = e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: r.Attr.Ino, Handle: r.Handle, Size: 1 << 20, Sync: true})
	e.must(err)
	// The crash comes after the first punch reached its OST.
	e.io.mu.Lock()
	e.io.punchesLeft = 1
	e.io.mu.Unlock()
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: r.Attr.Ino, Valid: proto.SetSize, Size: 1000})
	wantErrno(t, err, syscall.EIO)
	e.io.setFail(nil)
	e.powerLoss(store())
	if _, err := e.s.recoverTruncates(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.getattr(r.Attr.Ino); a.Size != 1000 {
		t.Fatalf("after a crash mid-truncate the size is %d over cut objects, want 1000", a.Size)
	}
}

// TestPowerLossDestroy: objects are destroyed only once the unlink that
// queued them is durable, so a crash never brings back a file whose
// objects are gone.
func TestPowerLossDestroy(t *testing.T) {
	e, store := lossyEnv(t)
	f := e.create(root, RootIno, "f", 0o644)
	e.must(e.s.Sync(e.ctx, &proto.SyncReq{}))
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}))
	if _, _, err := e.s.drainDestroyQueue(e.ctx); err != nil {
		t.Fatal(err)
	}
	destroyed := len(e.io.destroyedInos()) > 0
	e.powerLoss(store())
	_, err := e.lookup(root, RootIno, "f")
	if destroyed && err == nil {
		t.Fatalf("file %#x is back after a crash but its objects were destroyed", f.Ino)
	}
	if !destroyed {
		t.Fatal("the destroy worker destroyed nothing: the test proves nothing")
	}
}
