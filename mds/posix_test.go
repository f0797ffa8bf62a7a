package mds

import (
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// testSetidClearing checks when set-user-ID and set-group-ID bits go: on
// chown and chgrp (by anyone, as Linux), on a write reported at close or
// truncate by an unprivileged caller, and never the set-group-ID bit of a
// file without group execute (mandatory locking marker).
func testSetidClearing(t *testing.T, open opener) {
	e := newEnv(t, open)
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	mode := func(ino uint64) uint32 { return e.getattr(ino).Mode &^ modeType }
	chmod := func(ino uint64, m uint32) {
		t.Helper()
		_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: ino, Valid: proto.SetMode, Mode: m})
		e.must(err)
	}
	f := e.create(bob, pub.Ino, "f", 0o644)
	// chgrp by the (unprivileged) owner to a group of his.
	chmod(f.Ino, 0o6755)
	_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: bob, Ino: f.Ino, Valid: proto.SetGid, Gid: 500})
	e.must(err)
	if m := mode(f.Ino); m != 0o755 {
		t.Fatalf("mode %o after chgrp by the owner", m)
	}
	chmod(f.Ino, 0o6745)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: bob, Ino: f.Ino, Valid: proto.SetGid, Gid: bob.Gid})
	e.must(err)
	if m := mode(f.Ino); m != 0o2745 {
		t.Fatalf("mode %o after chgrp of a file without group execute", m)
	}
	// A write reported at close: root keeps the bits, others clear them.
	chmod(f.Ino, 0o6777)
	for _, c := range []struct {
		cred proto.Cred
		want uint32
	}{{root, 0o6777}, {alice, 0o777}} {
		h, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: c.cred, Session: e.session, Ino: f.Ino, Flags: syscall.O_WRONLY})
		e.must(err)
		_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Ino, Handle: h.Handle, Wrote: true, Size: 1})
		e.must(err)
		if m := mode(f.Ino); m != c.want {
			t.Fatalf("mode %o after a write by uid %d, want %o", m, c.cred.Uid, c.want)
		}
	}
	// A close without writes clears nothing.
	chmod(f.Ino, 0o6777)
	h, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: f.Ino, Flags: syscall.O_WRONLY})
	e.must(err)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Ino, Handle: h.Handle})
	e.must(err)
	if m := mode(f.Ino); m != 0o6777 {
		t.Fatalf("mode %o after a close without writes", m)
	}
	// Truncate by a writer whose kernel says it lacks CAP_FSETID, and an
	// O_TRUNC open that says the same.
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: f.Ino, Valid: proto.SetSize | proto.SetKillPrivs, Size: 0})
	e.must(err)
	if m := mode(f.Ino); m != 0o777 {
		t.Fatalf("mode %o after truncate by uid %d", m, alice.Uid)
	}
	chmod(f.Ino, 0o6777)
	h, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: f.Ino, Flags: syscall.O_WRONLY | syscall.O_TRUNC, KillPrivs: true})
	e.must(err)
	if m := mode(f.Ino); m != 0o777 {
		t.Fatalf("mode %o after open(O_TRUNC) by uid %d", m, alice.Uid)
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Ino, Handle: h.Handle})
	e.must(err)
}

// testTruncateTimes checks that a truncate updates mtime and ctime even
// when the size does not change, as Linux does for truncate and ftruncate.
func testTruncateTimes(t *testing.T, open opener) {
	e := newEnv(t, open)
	r := e.createOpen(alice, e.mkdir(root, RootIno, "pub", 0o777).Ino, "f", 0o644)
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: 100})
	e.must(err)
	for _, viaHandle := range []bool{false, true} {
		e.clock.Advance(time.Second)
		req := proto.SetattrReq{Cred: alice, Ino: r.Attr.Ino, Valid: proto.SetSize, Size: 100}
		if viaHandle {
			h, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_WRONLY})
			e.must(err)
			req.Handle = h.Handle
		}
		a, err := e.s.Setattr(e.ctx, &req)
		e.must(err)
		now := e.clock.Now().UnixNano()
		if a.Attr.Size != 100 || a.Attr.Mtime != now || a.Attr.Ctime != now {
			t.Fatalf("truncate to the same size (handle %v): %+v, want times %d", viaHandle, a.Attr, now)
		}
	}
}
