package mds

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// waitLeaseOver waits until the store's clock has passed the lease of mdt.
func waitLeaseOver(t *testing.T, s *Service, mdt uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := s.mdtRecords(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		now, err := s.clockNow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Index == mdt && r.Lease < now {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease of MDT %d never ran out", mdt)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testFencing: an owner paused past its MDT lease while a standby takes
// the MDT over can commit nothing when it resumes, not even through state
// it still holds in memory; its next renewal finds it lost the MDT; the
// new owner serves on. Both engines run it (on TiKV the bound is
// client-go's commit timestamp check).
func testFencing(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	old, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
		Now: e.clock.Now, MDTLease: 200 * time.Millisecond, Addr: "env-mds"})
	e.must(err)
	if !old.owns(0) {
		t.Fatal("the first owner did not take MDT 0")
	}
	oc, err := old.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	_, err = old.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d.Ino, Name: "before", Mode: 0o755, MDT: -1})
	e.must(err)

	// The old owner "pauses": no renewal runs while its lease runs out
	// and a standby takes over.
	waitLeaseOver(t, old, 0)
	standby, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
		Now: e.clock.Now, Standby: true, MDTLease: time.Hour, Addr: "standby"})
	e.must(err)
	if standby.owns(0) {
		t.Fatal("a standby owned MDT 0 at start")
	}
	e.must(standby.takeOverDead(e.ctx))
	if !standby.owns(0) {
		t.Fatal("the standby did not take over MDT 0 after its owner's lease ran out")
	}

	// The old owner resumes: every commit it tries fails.
	_, err = old.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d.Ino, Name: "stale", Mode: 0o755, MDT: -1})
	if !errors.Is(err, kv.ErrFenced) {
		t.Fatalf("mkdir by the fenced owner: %v, want ErrFenced", err)
	}
	if _, err := old.Create(e.ctx, &proto.CreateReq{Cred: root, Session: oc.Session, Parent: d.Ino, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT}); !errors.Is(err, kv.ErrFenced) {
		t.Fatalf("create by the fenced owner: %v, want ErrFenced", err)
	}
	e.must(old.renewLeases(e.ctx))
	if old.owns(0) {
		t.Fatal("the old owner still believes it owns MDT 0 after renewing")
	}
	// The new owner serves.
	if _, err := standby.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d.Ino, Name: "after", Mode: 0o755, MDT: -1}); err != nil {
		t.Fatalf("mkdir by the new owner: %v", err)
	}
	if _, err := e.lookup(root, d.Ino, "stale"); !isErrno(err, syscall.ENOENT) {
		t.Fatalf("the fenced mkdir is visible: %v", err)
	}
	table, err := standby.mdtTable(e.ctx)
	e.must(err)
	if table[0].Owner != standby.instance || table[0].Epoch < 2 || table[0].State == "down" {
		t.Fatalf("MDT table after the takeover: %+v", table[0])
	}
}
