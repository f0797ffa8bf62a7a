package oss

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// TestDestroyMany: the objects of many files go in one call with one
// Destroy per OST; one file whose capability does not cover its objects
// makes the call delete nothing.
func TestDestroyMany(t *testing.T) {
	m := startFakeMDS(t, "")
	ts := startOSS(t, m, t.TempDir(), t.TempDir())
	ctx := context.Background()
	var files []proto.ObjDestroyReq
	for ino := uint64(10); ino < 30; ino++ {
		objs := []proto.ObjRef{ref(0, ino, 0), ref(1, ino, 1)}
		for _, o := range objs {
			if _, err := ts.write(ctx, capFor(ino, proto.RightWrite), o, 0, []byte("data")); err != nil {
				t.Fatal(err)
			}
		}
		files = append(files, proto.ObjDestroyReq{Cap: capFor(ino, proto.RightWrite), Objs: objs})
	}
	exists := func(ino uint64) bool {
		var r proto.ObjGetattrResp
		if err := ts.client.Call(ctx, ts.addr, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: capFor(ino, proto.RightRead), Obj: ref(1, ino, 1)}, &r); err != nil {
			t.Fatal(err)
		}
		return r.Exists
	}

	// A capability for the wrong file among them: nothing goes.
	bad := append([]proto.ObjDestroyReq(nil), files...)
	bad[5].Cap = capFor(99, proto.RightWrite)
	err := ts.client.Call(ctx, ts.addr, proto.OpObjDestroyMany, &proto.ObjDestroyManyReq{Files: bad}, nil)
	if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("destroy with one foreign capability: %v", err)
	}
	if !exists(10) || !exists(29) {
		t.Fatal("a refused destroy deleted objects")
	}

	before := ts.srv.Stats().Ops.Destroy
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjDestroyMany, &proto.ObjDestroyManyReq{Files: files}, nil); err != nil {
		t.Fatal(err)
	}
	if calls := ts.srv.Stats().Ops.Destroy - before; calls != 2 {
		t.Fatalf("%d OST destroys for 20 files on 2 OSTs, want 2", calls)
	}
	for ino := uint64(10); ino < 30; ino++ {
		if exists(ino) {
			t.Fatalf("object of %d still exists", ino)
		}
	}
	// Destroyed objects are tombstoned: a late write is refused.
	if _, err := ts.write(ctx, capFor(12, proto.RightWrite), ref(0, 12, 0), 0, []byte("late")); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write to a destroyed object: %v, want ESTALE", err)
	}
}
