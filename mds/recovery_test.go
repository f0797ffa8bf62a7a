package mds

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// Recovery tests: exactly-once execution of resent requests, handles and
// sessions that outlive an MDS restart, and lock replay in the recovery
// window. They run on both engines (suite.go).

// testExactlyOnce resends create, rename, unlink, append and mkdir with the
// same tag after their first execution committed (the reply lost on the
// way): each resend gets the first result, never EEXIST or ENOENT, and the
// change is made once. Reply records are in the store, so this holds across
// an MDS restart too.
func testExactlyOnce(t *testing.T, open opener) {
	e := newEnv(t, open)
	tag := func(slot uint16, id uint64) proto.ReqTag { return proto.ReqTag{Session: e.session, Slot: slot, ID: id} }
	create := &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "f", Mode: 0o644,
		Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL, Tag: tag(1, 1)}
	first, err := e.s.Create(e.ctx, create)
	e.must(err)
	again, err := e.s.Create(e.ctx, create)
	if err != nil {
		t.Fatalf("resent create: %v, want the first reply", err)
	}
	if again.Attr.Ino != first.Attr.Ino || again.Handle != first.Handle {
		t.Fatalf("resent create answered ino %#x handle %#x, first %#x %#x", again.Attr.Ino, again.Handle, first.Attr.Ino, first.Handle)
	}
	if n := len(e.names(RootIno, 100)); n != 1 {
		t.Fatalf("%d entries after a resent create", n)
	}

	app := &proto.AppendReq{Session: e.session, Ino: first.Attr.Ino, Handle: first.Handle, Len: 10, Tag: tag(2, 1)}
	a1, err := e.s.Append(e.ctx, app)
	e.must(err)
	a2, err := e.s.Append(e.ctx, app)
	e.must(err)
	if a1.Offset != a2.Offset || e.getattr(first.Attr.Ino).Size != 10 {
		t.Fatalf("resent append: offsets %d %d, size %d", a1.Offset, a2.Offset, e.getattr(first.Attr.Ino).Size)
	}

	mk := &proto.MkdirReq{Cred: root, Parent: RootIno, Name: "d", Mode: 0o755, MDT: -1, Tag: tag(3, 1)}
	d1, err := e.s.Mkdir(e.ctx, mk)
	e.must(err)
	d2, err := e.s.Mkdir(e.ctx, mk)
	if err != nil || d2.Attr.Ino != d1.Attr.Ino {
		t.Fatalf("resent mkdir: %v %#x, want %#x", err, d2.Attr.Ino, d1.Attr.Ino)
	}

	// Across a restart: the records are durable with the changes.
	e.restart()
	old := create.Tag.Session
	ren := &proto.RenameReq{Cred: root, Parent: RootIno, Name: "f", NewParent: d1.Attr.Ino, NewName: "g", Tag: proto.ReqTag{Session: old, Slot: 1, ID: 2}}
	e.must(e.s.Rename(e.ctx, ren))
	e.restart()
	if err := e.s.Rename(e.ctx, ren); err != nil {
		t.Fatalf("resent rename after a restart: %v, want success", err)
	}
	un := &proto.UnlinkReq{Cred: root, Parent: d1.Attr.Ino, Name: "g", Tag: proto.ReqTag{Session: old, Slot: 1, ID: 3}}
	e.must(e.s.Unlink(e.ctx, un))
	if err := e.s.Unlink(e.ctx, un); err != nil {
		t.Fatalf("resent unlink: %v, want success", err)
	}
	// A new request through the slot is executed, not replayed.
	un.Tag.ID = 4
	if err := e.s.Unlink(e.ctx, un); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("new unlink of a missing name: %v, want ENOENT", err)
	}
	// The create's handle, open for writing, is still open after the
	// restarts (its record is in the store).
	if _, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", Session: old}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Close(e.ctx, &proto.CloseReq{Session: old, Ino: first.Attr.Ino, Handle: first.Handle}); err != nil {
		t.Fatalf("close of the create's handle after restarts: %v", err)
	}
}

// testHandlesOutliveRestart: a handle open for writing is in the store, so
// after an MDS restart the writer's close still merges its size; a read
// handle comes back when the client replays its open.
func testHandlesOutliveRestart(t *testing.T, open opener) {
	e := newEnv(t, open)
	w := e.createOpen(root, RootIno, "f", 0o644)
	rd, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: w.Attr.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	old := e.session
	e.restart()
	if _, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", Session: old}); err != nil {
		t.Fatalf("resume the session after a restart: %v", err)
	}
	c, err := e.s.Close(e.ctx, &proto.CloseReq{Session: old, Ino: w.Attr.Ino, Handle: w.Handle, Wrote: true, Size: 5000})
	if err != nil || c.Attr.Size != 5000 {
		t.Fatalf("close of a write handle after a restart: %+v %v", c, err)
	}
	if _, err := e.s.Close(e.ctx, &proto.CloseReq{Session: old, Ino: w.Attr.Ino, Handle: rd.Handle}); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("read handle before its replay: %v, want EBADF", err)
	}
	re, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: old, Ino: w.Attr.Ino, Flags: syscall.O_RDONLY, Replay: true, Handle: rd.Handle})
	if err != nil || re.Handle != rd.Handle || re.Attr.Size != 5000 {
		t.Fatalf("replayed open: %+v %v", re, err)
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: old, Ino: w.Attr.Ino, Handle: rd.Handle})
	e.must(err)
	// A session nobody knows cannot be resumed.
	if _, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", Session: 12345}); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("resume of an unknown session: %v, want ENOTCONN", err)
	}
}

// testLockReplay: a lock held before a restart is replayed in the recovery
// window and wins over a newcomer's conflicting request, which waits for
// the window; an outage longer than the lease does not evict a client that
// comes back within the window.
func testLockReplay(t *testing.T, open opener) {
	e := newEnv(t, open)
	f := e.create(root, RootIno, "f", 0o644)
	a := e.session
	lk := &proto.LockReq{Session: a, Ino: f.Ino, Owner: 1, Pid: 11, Type: proto.LockWrite, Start: 0, End: 99}
	_, err := e.s.Lock(e.ctx, lk)
	e.must(err)
	e.restart()
	b := e.session // connected after the restart: a newcomer
	if !e.s.recovering() {
		t.Fatal("no recovery window after a restart with a session to recover")
	}
	blk := &proto.LockReq{Session: b, Ino: f.Ino, Owner: 2, Pid: 22, Type: proto.LockWrite, Start: 50, End: 60}
	if _, err := e.s.Lock(e.ctx, blk); !errors.Is(err, syscall.EINPROGRESS) {
		t.Fatalf("new lock during recovery: %v, want EINPROGRESS (try again)", err)
	}
	e.s.lockWait = 10 * time.Millisecond
	blk.Wait = true
	if _, err := e.s.Lock(e.ctx, blk); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("waiting lock during recovery: %v, want EAGAIN (wait on)", err)
	}
	// The first client comes back later than its lease would allow.
	e.clock.Advance(40 * time.Second)
	e.s.reapSessions(e.ctx, e.clock.Now())
	if _, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", Session: a}); err != nil {
		t.Fatalf("resume within the recovery window after more than a lease: %v", err)
	}
	lk.Replay = true
	if _, err := e.s.Lock(e.ctx, lk); err != nil {
		t.Fatalf("replayed lock: %v", err)
	}
	e.must(e.s.Recovered(e.ctx, &proto.RecoveredReq{Session: a}))
	if e.s.recovering() {
		t.Fatal("recovery window open after every client recovered")
	}
	nc, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	blk.Session, blk.Wait = nc.Session, false
	if _, err := e.s.Lock(e.ctx, blk); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("newcomer's lock over the replayed one: %v, want EAGAIN", err)
	}
}
