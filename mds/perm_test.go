package mds

import (
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

func testPermissions(t *testing.T, open opener) {
	e := newEnv(t, open)
	// Root-owned 0755: others may look up but not create.
	pub := e.mkdir(root, RootIno, "pub", 0o755)
	f := e.create(root, pub.Ino, "f", 0o640)
	if _, err := e.lookup(alice, pub.Ino, "f"); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: pub.Ino, Name: "x", Flags: syscall.O_WRONLY})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: alice, Parent: pub.Ino, Name: "x", MDT: -1})
	wantErrno(t, err, syscall.EACCES)
	wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: pub.Ino, Name: "f"}), syscall.EACCES)
	wantErrno(t, e.rename(alice, pub.Ino, "f", pub.Ino, "g", 0), syscall.EACCES)
	_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: alice, Ino: f.Ino, NewParent: pub.Ino, Name: "l"})
	wantErrno(t, err, syscall.EACCES)

	// No search permission: lookup fails, even for a readable directory.
	priv := e.mkdir(root, RootIno, "priv", 0o754)
	e.create(root, priv.Ino, "f", 0o644)
	_, err = e.lookup(alice, priv.Ino, "f")
	wantErrno(t, err, syscall.EACCES)
	// Root passes permission checks.
	if _, err := e.lookup(root, priv.Ino, "f"); err != nil {
		t.Fatal(err)
	}

	// Group permissions through supplementary groups.
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f.Ino, Valid: proto.SetGid, Gid: 500})
	e.must(err)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDWR})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY | syscall.O_TRUNC})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: 3})
	wantErrno(t, err, syscall.EINVAL)

	// Access.
	for _, c := range []struct {
		cred proto.Cred
		mask uint32
		ok   bool
	}{
		{alice, 0, true}, {alice, 4, false}, {bob, 4, true}, {bob, 2, false}, {bob, 1, false},
		{root, 7 &^ 1, true}, {root, 1, false}, // root may not execute a file without x bits
	} {
		err := e.s.Access(e.ctx, &proto.AccessReq{Cred: c.cred, Ino: f.Ino, Mask: c.mask})
		if (err == nil) != c.ok {
			t.Fatalf("access uid %d mask %o: %v, want ok %v", c.cred.Uid, c.mask, err, c.ok)
		}
		if err != nil {
			wantErrno(t, err, syscall.EACCES)
		}
	}
	if err := e.s.Access(e.ctx, &proto.AccessReq{Cred: root, Ino: priv.Ino, Mask: 7}); err != nil {
		t.Fatalf("root search on directory: %v", err)
	}
	wantErrno(t, e.s.Access(e.ctx, &proto.AccessReq{Cred: root, Ino: f.Ino, Mask: 8}), syscall.EINVAL)

	// A user's own directory: full control, others denied.
	home := e.mkdir(root, RootIno, "home", 0o755)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: home.Ino, Valid: proto.SetUid | proto.SetGid, Uid: alice.Uid, Gid: alice.Gid})
	e.must(err)
	af := e.create(alice, home.Ino, "mine", 0o600)
	if af.Uid != alice.Uid || af.Gid != alice.Gid {
		t.Fatalf("owner %d:%d", af.Uid, af.Gid)
	}
	e.must(e.rename(alice, home.Ino, "mine", home.Ino, "mine2", 0))
	wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: bob, Parent: home.Ino, Name: "mine2"}), syscall.EACCES)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: home.Ino, Name: "mine2"}))

	// Moving a directory to another parent needs write permission on it
	// (its ".." changes).
	sub := e.mkdir(root, home.Ino, "rootsub", 0o755)
	other := e.mkdir(alice, home.Ino, "other", 0o755)
	wantErrno(t, e.rename(alice, home.Ino, "rootsub", other.Ino, "rootsub", 0), syscall.EACCES)
	e.must(e.rename(alice, home.Ino, "rootsub", home.Ino, "renamed", 0))
	e.wantEntry(home.Ino, "renamed", sub.Ino)
}

func testSticky(t *testing.T, open opener) {
	e := newEnv(t, open)
	tmp := e.mkdir(root, RootIno, "tmp", 0o1777)
	if tmp.Mode&modeStick == 0 {
		t.Fatalf("mode %o lost the sticky bit", tmp.Mode)
	}
	e.create(alice, tmp.Ino, "a", 0o666)
	e.create(bob, tmp.Ino, "b", 0o666)
	e.mkdir(alice, tmp.Ino, "adir", 0o777)
	wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: bob, Parent: tmp.Ino, Name: "a"}), syscall.EPERM)
	wantErrno(t, e.rename(bob, tmp.Ino, "a", tmp.Ino, "stolen", 0), syscall.EPERM)
	wantErrno(t, e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: bob, Parent: tmp.Ino, Name: "adir"}), syscall.EPERM)
	// Renaming over someone else's file is removing it.
	wantErrno(t, e.rename(bob, tmp.Ino, "b", tmp.Ino, "a", 0), syscall.EPERM)
	e.must(e.rename(alice, tmp.Ino, "a", tmp.Ino, "a2", 0))
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: tmp.Ino, Name: "a2"}))
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: tmp.Ino, Name: "b"}))
	e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: alice, Parent: tmp.Ino, Name: "adir"}))
	// The directory's owner may remove anything in it.
	own := e.mkdir(root, RootIno, "own", 0o777)
	_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: own.Ino, Valid: proto.SetUid | proto.SetMode, Uid: alice.Uid, Mode: 0o1777})
	e.must(err)
	e.create(bob, own.Ino, "b", 0o644)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: own.Ino, Name: "b"}))
}

func testSetgid(t *testing.T, open opener) {
	e := newEnv(t, open)
	shared := e.mkdir(root, RootIno, "shared", 0o777)
	_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: shared.Ino, Valid: proto.SetGid | proto.SetMode, Gid: 500, Mode: 0o2777})
	e.must(err)
	f := e.create(alice, shared.Ino, "f", 0o644)
	if f.Gid != 500 || f.Uid != alice.Uid {
		t.Fatalf("file in setgid dir owned %d:%d, want %d:500", f.Uid, f.Gid, alice.Uid)
	}
	d := e.mkdir(alice, shared.Ino, "d", 0o755)
	if d.Gid != 500 || d.Mode&modeSgid == 0 {
		t.Fatalf("subdir of setgid dir: gid %d mode %o", d.Gid, d.Mode)
	}
	dd := e.mkdir(alice, d.Ino, "dd", 0o755)
	if dd.Gid != 500 || dd.Mode&modeSgid == 0 {
		t.Fatalf("setgid not inherited two levels down: gid %d mode %o", dd.Gid, dd.Mode)
	}
	// A non-member cannot create a setgid-executable file in the group.
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: shared.Ino, Name: "sg",
		Mode: 0o2755, Flags: syscall.O_WRONLY | syscall.O_CREAT})
	e.must(err)
	if r.Attr.Mode&modeSgid != 0 {
		t.Fatalf("non-member kept setgid: %o", r.Attr.Mode)
	}
	r, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: bob, Session: e.session, Parent: shared.Ino, Name: "sg2",
		Mode: 0o2755, Flags: syscall.O_WRONLY | syscall.O_CREAT})
	e.must(err)
	if r.Attr.Mode&modeSgid == 0 {
		t.Fatalf("member lost setgid: %o", r.Attr.Mode)
	}
	// A plain directory gives the creator's group.
	plain := e.mkdir(root, RootIno, "plain", 0o777)
	if g := e.create(alice, plain.Ino, "g", 0o644); g.Gid != alice.Gid {
		t.Fatalf("gid %d, want %d", g.Gid, alice.Gid)
	}
}

func testSetattr(t *testing.T, open opener) {
	e := newEnv(t, open)
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	f := e.create(alice, pub.Ino, "f", 0o644)
	set := func(c proto.Cred, r proto.SetattrReq) (proto.Attr, error) {
		r.Cred, r.Ino = c, f.Ino
		resp, err := e.s.Setattr(e.ctx, &r)
		if err != nil {
			return proto.Attr{}, err
		}
		return resp.Attr, nil
	}
	// chmod: owner or root only.
	_, err := set(bob, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o777})
	wantErrno(t, err, syscall.EPERM)
	a, err := set(alice, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o4755})
	e.must(err)
	if a.Mode != proto.ModeRegular|0o4755 {
		t.Fatalf("mode %o", a.Mode)
	}
	// chmod g+s by an owner outside the file's group drops the bit.
	_, err = set(root, proto.SetattrReq{Valid: proto.SetGid, Gid: 500})
	e.must(err)
	a, err = set(alice, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o2755})
	e.must(err)
	if a.Mode&modeSgid != 0 {
		t.Fatalf("setgid kept for non-member: %o", a.Mode)
	}
	// chown: root only; the owner may give the file to a group of his.
	_, err = set(alice, proto.SetattrReq{Valid: proto.SetUid, Uid: bob.Uid})
	wantErrno(t, err, syscall.EPERM)
	_, err = set(alice, proto.SetattrReq{Valid: proto.SetGid, Gid: 500})
	e.must(err) // unchanged group
	_, err = set(alice, proto.SetattrReq{Valid: proto.SetGid, Gid: 4242})
	wantErrno(t, err, syscall.EPERM)
	_, err = set(alice, proto.SetattrReq{Valid: proto.SetGid, Gid: alice.Gid})
	e.must(err)
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetGid, Gid: 500})
	wantErrno(t, err, syscall.EPERM)
	_, err = set(alice, proto.SetattrReq{Valid: proto.SetUid, Uid: alice.Uid})
	e.must(err) // chown to oneself
	// chown clears set-id bits of a file.
	_, err = set(root, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o6755})
	e.must(err)
	a, err = set(root, proto.SetattrReq{Valid: proto.SetUid, Uid: bob.Uid})
	e.must(err)
	if a.Uid != bob.Uid || a.Mode&(modeSuid|modeSgid) != 0 {
		t.Fatalf("after chown: uid %d mode %o", a.Uid, a.Mode)
	}
	_, err = set(root, proto.SetattrReq{Valid: proto.SetUid | proto.SetMode, Uid: alice.Uid, Mode: 0o666})
	e.must(err)

	// Times: NOW by a writer, explicit only by the owner.
	e.clock.Advance(5e9)
	now := e.clock.Now().UnixNano()
	a, err = set(bob, proto.SetattrReq{Valid: proto.SetAtime | proto.SetMtime | proto.SetAtimeNow | proto.SetMtimeNow})
	e.must(err)
	if a.Atime != now || a.Mtime != now {
		t.Fatalf("touch: %d/%d want %d", a.Atime, a.Mtime, now)
	}
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetMtime, Mtime: 42})
	wantErrno(t, err, syscall.EPERM)
	a, err = set(alice, proto.SetattrReq{Valid: proto.SetMtime | proto.SetAtime, Mtime: 42, Atime: 43})
	e.must(err)
	if a.Mtime != 42 || a.Atime != 43 || a.Ctime != now {
		t.Fatalf("utimes: %+v", a)
	}
	_, err = set(root, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o644})
	e.must(err)
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetMtimeNow})
	wantErrno(t, err, syscall.EACCES)

	// Truncate needs write permission, or a handle open for writing.
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetSize, Size: 0})
	wantErrno(t, err, syscall.EACCES)
	_, err = set(root, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o4666})
	e.must(err)
	h, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_WRONLY})
	e.must(err)
	_, err = set(root, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o4644})
	e.must(err)
	// A truncate keeps the set-id bits unless the caller's kernel says it
	// lacks CAP_FSETID (SetKillPrivs), as root's truncate keeps them.
	a, err = set(root, proto.SetattrReq{Valid: proto.SetSize, Size: 20})
	e.must(err)
	if a.Size != 20 || a.Mode&modeSuid == 0 {
		t.Fatalf("privileged truncate: size %d mode %o", a.Size, a.Mode)
	}
	a, err = set(bob, proto.SetattrReq{Valid: proto.SetSize | proto.SetKillPrivs, Size: 10, Handle: h.Handle})
	e.must(err)
	if a.Size != 10 || a.Mode&modeSuid != 0 {
		t.Fatalf("ftruncate by non-root: size %d mode %o", a.Size, a.Mode)
	}
	// A write's kill needs a handle open for writing or write permission.
	_, err = set(root, proto.SetattrReq{Valid: proto.SetMode, Mode: 0o6744})
	e.must(err)
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetKillPrivs})
	wantErrno(t, err, syscall.EPERM)
	a, err = set(bob, proto.SetattrReq{Valid: proto.SetKillPrivs, Handle: h.Handle})
	e.must(err)
	if a.Mode&0o7777 != 0o2744 {
		t.Fatalf("write by non-root left mode %o, want 2744 (sgid kept without group-execute)", a.Mode&0o7777)
	}
	ro, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetSize, Size: 1, Handle: ro.Handle})
	wantErrno(t, err, syscall.EINVAL)
	_, err = set(bob, proto.SetattrReq{Valid: proto.SetSize, Size: 1, Handle: 999})
	wantErrno(t, err, syscall.EBADF)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: pub.Ino, Valid: proto.SetSize})
	wantErrno(t, err, syscall.EISDIR)
	_, err = set(root, proto.SetattrReq{Valid: proto.SetSize, Size: 1 << 63})
	wantErrno(t, err, syscall.EFBIG)
	// Ownership change of a directory keeps its mode.
	d := e.mkdir(root, RootIno, "d", 0o2755)
	r, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: d.Ino, Valid: proto.SetUid, Uid: 5})
	e.must(err)
	if r.Attr.Mode != d.Mode {
		t.Fatalf("chown of a directory changed mode %o -> %o", d.Mode, r.Attr.Mode)
	}
}
