package mds

import (
	"bytes"
	"encoding/binary"
	"slices"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// ACL entry constructors for tests.
func aUserObj(p uint16) aclEntry         { return aclEntry{Tag: aclUserObj, Perm: p, ID: aclUndefinedID} }
func aUser(id uint32, p uint16) aclEntry { return aclEntry{Tag: aclUser, Perm: p, ID: id} }
func aGroupObj(p uint16) aclEntry        { return aclEntry{Tag: aclGroupObj, Perm: p, ID: aclUndefinedID} }
func aGroup(id uint32, p uint16) aclEntry {
	return aclEntry{Tag: aclGroup, Perm: p, ID: id}
}
func aMask(p uint16) aclEntry  { return aclEntry{Tag: aclMask, Perm: p, ID: aclUndefinedID} }
func aOther(p uint16) aclEntry { return aclEntry{Tag: aclOther, Perm: p, ID: aclUndefinedID} }

// aclValue encodes entries as an ACL xattr value, valid or not.
func aclValue(entries ...aclEntry) []byte { return acl(entries).encode() }

func TestParseACL(t *testing.T) {
	header := binary.LittleEndian.AppendUint32(nil, aclVersion)
	v1 := binary.LittleEndian.AppendUint32(nil, 1)
	v1 = append(v1, aclValue(aUserObj(6), aGroupObj(4), aOther(4))[4:]...)
	// Linux ignores the id of unnamed entries; it reads back undefined.
	sloppy := aclValue(aUserObj(6), aGroupObj(4), aOther(4))
	binary.LittleEndian.PutUint32(sloppy[4+4:], 0)
	for _, c := range []struct {
		name  string
		value []byte
		want  acl // nil with ok: no ACL
		ok    bool
	}{
		{"empty", nil, nil, true},
		{"header only", header, nil, true},
		{"truncated", header[:3], nil, false},
		{"partial entry", append(slices.Clone(header), 1, 0, 6, 0), nil, false},
		{"version 1", v1, nil, false},
		{"minimal", aclValue(aUserObj(6), aGroupObj(4), aOther(4)),
			acl{aUserObj(6), aGroupObj(4), aOther(4)}, true},
		{"unnamed id ignored", sloppy, acl{aUserObj(6), aGroupObj(4), aOther(4)}, true},
		{"mask alone", aclValue(aUserObj(7), aGroupObj(5), aMask(5), aOther(0)),
			acl{aUserObj(7), aGroupObj(5), aMask(5), aOther(0)}, true},
		{"named", aclValue(aUserObj(7), aUser(0, 4), aUser(1001, 6), aGroupObj(5), aGroup(500, 7), aMask(6), aOther(0)),
			acl{aUserObj(7), aUser(0, 4), aUser(1001, 6), aGroupObj(5), aGroup(500, 7), aMask(6), aOther(0)}, true},
		{"named without mask", aclValue(aUserObj(7), aUser(1001, 6), aGroupObj(5), aOther(0)), nil, false},
		{"two owners", aclValue(aUserObj(7), aUserObj(7), aGroupObj(5), aOther(0)), nil, false},
		{"no other", aclValue(aUserObj(7), aGroupObj(5)), nil, false},
		{"no owning group", aclValue(aUserObj(7), aOther(5)), nil, false},
		{"out of order", aclValue(aGroupObj(5), aUserObj(7), aOther(0)), nil, false},
		{"other before mask", aclValue(aUserObj(7), aUser(3, 6), aGroupObj(5), aOther(0), aMask(6)), nil, false},
		{"users unsorted", aclValue(aUserObj(7), aUser(20, 6), aUser(10, 6), aGroupObj(5), aMask(7), aOther(0)), nil, false},
		{"user repeated", aclValue(aUserObj(7), aUser(10, 6), aUser(10, 4), aGroupObj(5), aMask(7), aOther(0)), nil, false},
		{"groups unsorted", aclValue(aUserObj(7), aGroupObj(5), aGroup(9, 1), aGroup(8, 1), aMask(7), aOther(0)), nil, false},
		{"two masks", aclValue(aUserObj(7), aGroupObj(5), aMask(7), aMask(7), aOther(0)), nil, false},
		{"perm beyond rwx", aclValue(aUserObj(8), aGroupObj(5), aOther(0)), nil, false},
		{"unknown tag", aclValue(aUserObj(7), aGroupObj(5), aclEntry{Tag: 0x40, Perm: 1}, aOther(0)), nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseACL(c.value)
			if !c.ok {
				wantErrno(t, err, syscall.EINVAL)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("parsed %v, want %v", got, c.want)
			}
			if got != nil && !bytes.Equal(got.encode(), aclValue(c.want...)) {
				t.Fatalf("round trip gave %x", got.encode())
			}
		})
	}
}

func TestACLModeBits(t *testing.T) {
	full := acl{aUserObj(6), aUser(1001, 7), aGroupObj(4), aMask(5), aOther(1)}
	if m := full.modeBits(); m != 0o651 {
		t.Fatalf("mode bits %o, want 651 (group from the mask)", m)
	}
	full.chmod(0o4710)
	want := acl{aUserObj(7), aUser(1001, 7), aGroupObj(4), aMask(1), aOther(0)}
	if !slices.Equal(full, want) {
		t.Fatalf("after chmod 710: %v, want %v", full, want)
	}
	base := acl{aUserObj(6), aGroupObj(4), aOther(4)}
	base.chmod(0o751)
	if !slices.Equal(base, acl{aUserObj(7), aGroupObj(5), aOther(1)}) {
		t.Fatalf("after chmod of a maskless ACL: %v", base)
	}
	// Inheritance limits owner, group class and other by the mode and
	// keeps named entries.
	def := acl{aUserObj(7), aUser(1001, 7), aGroupObj(5), aMask(7), aOther(5)}
	got, mode := def.inherit(proto.ModeRegular | 0o640)
	if mode != proto.ModeRegular|0o640 || !slices.Equal(got, acl{aUserObj(6), aUser(1001, 7), aGroupObj(5), aMask(4), aOther(0)}) {
		t.Fatalf("inherit 640: %v mode %o", got, mode)
	}
	if def[3].Perm != 7 {
		t.Fatal("inherit changed the default ACL")
	}
	got, mode = acl{aUserObj(7), aGroupObj(5), aOther(0)}.inherit(proto.ModeDir | 0o2777)
	if got != nil || mode != proto.ModeDir|0o2750 {
		t.Fatalf("minimal inherit: %v mode %o", got, mode)
	}
}

// TestACLPermits is the POSIX.1e access check decision table.
func TestACLPermits(t *testing.T) {
	in := &inode{Ino: 9, Mode: proto.ModeRegular | 0o664, Uid: 1000, Gid: 1000}
	in.ACL = acl{aUserObj(6), aUser(1001, 7), aUser(1002, 4), aGroupObj(4), aGroup(500, 6), aGroup(600, 0), aMask(6), aOther(4)}
	masked := &inode{Ino: 10, Mode: proto.ModeRegular | 0o644, Uid: 1000, Gid: 1000}
	masked.ACL = acl{aUserObj(6), aUser(1001, 7), aGroupObj(6), aGroup(500, 6), aMask(4), aOther(4)}
	cred := func(uid, gid uint32, groups ...uint32) proto.Cred {
		return proto.Cred{Uid: uid, Gid: gid, Groups: groups}
	}
	for _, c := range []struct {
		what string
		in   *inode
		cred proto.Cred
		mask uint32
		ok   bool
	}{
		{"owner reads", in, cred(1000, 1), mayRead, true},
		{"owner writes", in, cred(1000, 1), mayRead | mayWrite, true},
		{"owner may not execute", in, cred(1000, 1), mayExec, false},
		{"named user within mask", in, cred(1001, 1), mayRead | mayWrite, true},
		{"named user beyond mask", in, cred(1001, 1), mayExec, false},
		{"named user with read only", in, cred(1002, 1), mayRead, true},
		{"named user with read only writes", in, cred(1002, 1), mayWrite, false},
		{"named user entry wins over groups", in, cred(1002, 500), mayWrite, false},
		{"owning group reads", in, cred(1003, 1000), mayRead, true},
		{"owning group writes", in, cred(1003, 1000), mayWrite, false},
		{"named group writes", in, cred(1004, 1, 500), mayRead | mayWrite, true},
		{"named group with nothing denies", in, cred(1005, 1, 600), mayRead, false},
		{"any matching group suffices", in, cred(1006, 600, 500), mayWrite, true},
		{"owning group entry among supplementary", in, cred(1007, 1, 600, 1000), mayRead, true},
		{"other reads", in, cred(1008, 1), mayRead, true},
		{"other writes", in, cred(1008, 1), mayWrite, false},
		{"root reads and writes", in, cred(0, 0), mayRead | mayWrite, true},
		{"root may not execute without x bits", in, cred(0, 0), mayExec, false},
		{"mask limits the owning group", masked, cred(1003, 1000), mayWrite, false},
		{"mask limits named groups", masked, cred(1004, 1, 500), mayWrite, false},
		{"mask limits named users", masked, cred(1001, 1), mayWrite, false},
		{"mask does not limit the owner", masked, cred(1000, 1), mayWrite, true},
		{"masked group still reads", masked, cred(1004, 1, 500), mayRead, true},
	} {
		if got := permits(&c.cred, c.in, c.mask); got != c.ok {
			t.Errorf("%s: uid %d gid %d groups %v mask %o: permitted %v, want %v",
				c.what, c.cred.Uid, c.cred.Gid, c.cred.Groups, c.mask, got, c.ok)
		}
	}
}

// aclOps wraps the ACL xattrs of one service for the suite.
type aclOps struct{ e *env }

func (a aclOps) set(c proto.Cred, ino uint64, name string, value []byte) error {
	return a.e.s.Setxattr(a.e.ctx, &proto.SetxattrReq{Cred: c, Ino: ino, Name: name, Value: value})
}

func (a aclOps) get(ino uint64, name string) (acl, error) {
	r, err := a.e.s.Getxattr(a.e.ctx, &proto.GetxattrReq{Cred: bob, Ino: ino, Name: name})
	if err != nil {
		return nil, err
	}
	return parseACL(r.Value)
}

func (a aclOps) want(ino uint64, name string, want ...aclEntry) {
	a.e.t.Helper()
	got, err := a.get(ino, name)
	if len(want) == 0 {
		wantErrno(a.e.t, err, syscall.ENODATA)
		return
	}
	a.e.must(err)
	if !slices.Equal(got, acl(want)) {
		a.e.t.Fatalf("%s of %#x: %v, want %v", name, ino, got, want)
	}
}

func (a aclOps) names(ino uint64) []string {
	a.e.t.Helper()
	r, err := a.e.s.Listxattr(a.e.ctx, &proto.ListxattrReq{Cred: bob, Ino: ino})
	a.e.must(err)
	return r.Names
}

func testACLXattr(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := aclOps{e}
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	f := e.create(alice, pub.Ino, "f", 0o640)
	a.want(f.Ino, xattrACLAccess)
	a.want(f.Ino, xattrACLDefault)
	if n := a.names(f.Ino); len(n) != 0 {
		t.Fatalf("names %v", n)
	}
	full := aclValue(aUserObj(6), aUser(bob.Uid, 6), aGroupObj(4), aMask(6), aOther(0))
	wantErrno(t, a.set(bob, f.Ino, xattrACLAccess, full), syscall.EPERM)
	wantErrno(t, a.set(alice, f.Ino, xattrACLAccess, full[:9]), syscall.EINVAL)
	wantErrno(t, a.set(alice, f.Ino, xattrACLAccess, aclValue(aUserObj(6), aUser(bob.Uid, 6), aGroupObj(4), aOther(0))), syscall.EINVAL)
	e.clock.Advance(1e9)
	e.must(a.set(alice, f.Ino, xattrACLAccess, full))
	got := e.getattr(f.Ino)
	if got.Mode != proto.ModeRegular|0o660 || got.Ctime != e.clock.Now().UnixNano() {
		t.Fatalf("after setting the ACL: mode %o ctime %d", got.Mode, got.Ctime)
	}
	a.want(f.Ino, xattrACLAccess, aUserObj(6), aUser(bob.Uid, 6), aGroupObj(4), aMask(6), aOther(0))
	if n := a.names(f.Ino); !slices.Equal(n, []string{xattrACLAccess}) {
		t.Fatalf("names %v", n)
	}
	// The named user may now write; others may not read.
	_, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDWR})
	e.must(err)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: proto.Cred{Uid: 4000, Gid: 4000}, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
	wantErrno(t, err, syscall.EACCES)
	// An ACL the mode can express is not stored: it only sets the mode.
	e.must(a.set(alice, f.Ino, xattrACLAccess, aclValue(aUserObj(7), aGroupObj(5), aOther(4))))
	if m := e.getattr(f.Ino).Mode; m != proto.ModeRegular|0o754 {
		t.Fatalf("mode %o after a minimal ACL", m)
	}
	a.want(f.Ino, xattrACLAccess)
	// Removal keeps the mode.
	e.must(a.set(alice, f.Ino, xattrACLAccess, full))
	e.must(e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: alice, Ino: f.Ino, Name: xattrACLAccess}))
	a.want(f.Ino, xattrACLAccess)
	if m := e.getattr(f.Ino).Mode; m != proto.ModeRegular|0o660 {
		t.Fatalf("mode %o after removing the ACL", m)
	}
	wantErrno(t, e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: alice, Ino: f.Ino, Name: xattrACLAccess}), syscall.ENODATA)
	// An empty value removes too.
	e.must(a.set(alice, f.Ino, xattrACLAccess, full))
	e.must(a.set(alice, f.Ino, xattrACLAccess, nil))
	a.want(f.Ino, xattrACLAccess)
	// A default ACL only on directories; an empty one is no ACL anywhere.
	def := aclValue(aUserObj(7), aGroupObj(5), aOther(5))
	wantErrno(t, a.set(alice, f.Ino, xattrACLDefault, def), syscall.EACCES)
	e.must(a.set(alice, f.Ino, xattrACLDefault, nil))
	e.must(a.set(root, pub.Ino, xattrACLDefault, def))
	a.want(pub.Ino, xattrACLDefault, aUserObj(7), aGroupObj(5), aOther(5))
	a.want(pub.Ino, xattrACLAccess)
	if n := a.names(pub.Ino); !slices.Equal(n, []string{xattrACLDefault}) {
		t.Fatalf("names %v", n)
	}
	e.must(e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: root, Ino: pub.Ino, Name: xattrACLDefault}))
	a.want(pub.Ino, xattrACLDefault)
	// Setting the ACL drops setgid for an owner outside the group, as chmod.
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f.Ino, Valid: proto.SetGid | proto.SetMode, Gid: 500, Mode: 0o2770})
	e.must(err)
	e.must(a.set(alice, f.Ino, xattrACLAccess, full))
	if m := e.getattr(f.Ino).Mode; m != proto.ModeRegular|0o660 {
		t.Fatalf("mode %o: setgid kept for a non-member", m)
	}
	// Symbolic links have no ACLs.
	l, err := e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: pub.Ino, Name: "l", Target: "f"})
	e.must(err)
	wantErrno(t, a.set(alice, l.Attr.Ino, xattrACLAccess, full), syscall.EOPNOTSUPP)
	// ACLs are still xattrs: the flags apply.
	err = e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: alice, Ino: f.Ino, Name: xattrACLAccess, Value: full, Flags: proto.XattrCreate})
	wantErrno(t, err, syscall.EEXIST)
	err = e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: root, Ino: pub.Ino, Name: xattrACLDefault, Value: def, Flags: proto.XattrReplace})
	wantErrno(t, err, syscall.ENODATA)
}

func testACLPermissions(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := aclOps{e}
	d := e.mkdir(root, RootIno, "d", 0o755)
	f := e.create(root, d.Ino, "f", 0o600)
	_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f.Ino, Valid: proto.SetUid | proto.SetGid, Uid: alice.Uid, Gid: 700})
	e.must(err)
	e.must(a.set(alice, f.Ino, xattrACLAccess, aclValue(aUserObj(6), aUser(bob.Uid, 7), aUser(3000, 4),
		aGroupObj(4), aGroup(500, 6), aGroup(600, 0), aMask(6), aOther(4))))
	cred := func(uid, gid uint32, groups ...uint32) proto.Cred {
		return proto.Cred{Uid: uid, Gid: gid, Groups: groups}
	}
	for _, c := range []struct {
		cred proto.Cred
		mask uint32
		ok   bool
	}{
		{alice, 6, true}, {alice, 1, false},
		{cred(bob.Uid, 1), 6, true}, {cred(bob.Uid, 1), 1, false}, // named user, masked
		{cred(3000, 1, 500), 2, false},                          // the named user entry decides
		{cred(3001, 700), 4, true}, {cred(3001, 700), 2, false}, // owning group
		{cred(3002, 1, 500), 6, true},      // named group through a supplementary group
		{cred(3003, 600), 4, false},        // a matching group without r: denied, not other
		{cred(3004, 600, 9, 500), 2, true}, // one matching group grants
		{cred(3005, 1, 2, 3), 4, true},     // other
		{cred(3005, 1, 2, 3), 2, false},    // other
		{root, 6, true}, {root, 1, false},  // root, no x bit anywhere in the mode
	} {
		err := e.s.Access(e.ctx, &proto.AccessReq{Cred: c.cred, Ino: f.Ino, Mask: c.mask})
		if (err == nil) != c.ok {
			t.Errorf("access uid %d gid %d groups %v mask %o: %v, want ok %v", c.cred.Uid, c.cred.Gid, c.cred.Groups, c.mask, err, c.ok)
		} else if err != nil {
			wantErrno(t, err, syscall.EACCES)
		}
	}
	// Truncate and utimensat(UTIME_NOW) follow the ACL's write permission.
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: cred(3002, 1, 500), Ino: f.Ino, Valid: proto.SetSize, Size: 0})
	e.must(err)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: cred(3002, 1, 500), Ino: f.Ino, Valid: proto.SetMtimeNow | proto.SetAtimeNow})
	e.must(err)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: cred(3001, 700), Ino: f.Ino, Valid: proto.SetMtimeNow})
	wantErrno(t, err, syscall.EACCES)
	// Search permission on a directory through a named entry.
	priv := e.mkdir(root, RootIno, "priv", 0o700)
	e.create(root, priv.Ino, "x", 0o644)
	_, err = e.lookup(bob, priv.Ino, "x")
	wantErrno(t, err, syscall.EACCES)
	e.must(a.set(root, priv.Ino, xattrACLAccess, aclValue(aUserObj(7), aUser(bob.Uid, 1), aGroupObj(0), aMask(1), aOther(0))))
	if _, err := e.lookup(bob, priv.Ino, "x"); err != nil {
		t.Fatalf("lookup through a named user's search permission: %v", err)
	}
	_, err = e.lookup(alice, priv.Ino, "x")
	wantErrno(t, err, syscall.EACCES)
}

func testACLChmod(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := aclOps{e}
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	f := e.create(alice, pub.Ino, "f", 0o644)
	e.must(a.set(alice, f.Ino, xattrACLAccess, aclValue(aUserObj(6), aUser(bob.Uid, 7), aGroupObj(5), aMask(7), aOther(4))))
	if m := e.getattr(f.Ino).Mode; m != proto.ModeRegular|0o674 {
		t.Fatalf("mode %o", m)
	}
	e.clock.Advance(1e9)
	r, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o741})
	e.must(err)
	if r.Attr.Mode != proto.ModeRegular|0o741 || r.Attr.Ctime != e.clock.Now().UnixNano() {
		t.Fatalf("chmod: %+v", r.Attr)
	}
	// Owner, mask and other follow; the owning group and named entries stay.
	a.want(f.Ino, xattrACLAccess, aUserObj(7), aUser(bob.Uid, 7), aGroupObj(5), aMask(4), aOther(1))
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDWR})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	// A mask without named entries is kept, and follows chmod.
	g := e.create(alice, pub.Ino, "g", 0o644)
	e.must(a.set(alice, g.Ino, xattrACLAccess, aclValue(aUserObj(6), aGroupObj(5), aMask(5), aOther(4))))
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: g.Ino, Valid: proto.SetMode, Mode: 0o600})
	e.must(err)
	a.want(g.Ino, xattrACLAccess, aUserObj(6), aGroupObj(5), aMask(0), aOther(0))
	// A directory's default ACL is not touched by chmod.
	d := e.mkdir(alice, pub.Ino, "d", 0o755)
	e.must(a.set(alice, d.Ino, xattrACLDefault, aclValue(aUserObj(7), aGroupObj(5), aOther(5))))
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: d.Ino, Valid: proto.SetMode, Mode: 0o700})
	e.must(err)
	a.want(d.Ino, xattrACLDefault, aUserObj(7), aGroupObj(5), aOther(5))
	// ACLs survive a restart and go with their inode.
	e.restart()
	a.want(f.Ino, xattrACLAccess, aUserObj(7), aUser(bob.Uid, 7), aGroupObj(5), aMask(4), aOther(1))
}

func testACLInherit(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := aclOps{e}
	d := e.mkdir(alice, e.mkdir(root, RootIno, "pub", 0o777).Ino, "d", 0o755)
	def := []aclEntry{aUserObj(7), aUser(bob.Uid, 7), aGroupObj(5), aMask(7), aOther(0)}
	e.must(a.set(alice, d.Ino, xattrACLDefault, aclValue(def...)))

	// A file: the default ACL limited by the requested mode; no umask.
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: d.Ino, Name: "f",
		Mode: 0o666, Umask: 0o077, Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL})
	e.must(err)
	if r.Attr.Mode != proto.ModeRegular|0o660 {
		t.Fatalf("inherited file mode %o, want 660", r.Attr.Mode)
	}
	a.want(r.Attr.Ino, xattrACLAccess, aUserObj(6), aUser(bob.Uid, 7), aGroupObj(5), aMask(6), aOther(0))
	a.want(r.Attr.Ino, xattrACLDefault)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_RDWR})
	e.must(err)

	// A directory: the same, and the default ACL itself.
	sub, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: alice, Parent: d.Ino, Name: "sub", Mode: 0o751, Umask: 0o077, MDT: -1})
	e.must(err)
	if sub.Attr.Mode != proto.ModeDir|0o751&0o770 {
		t.Fatalf("inherited dir mode %o", sub.Attr.Mode)
	}
	a.want(sub.Attr.Ino, xattrACLAccess, aUserObj(7), aUser(bob.Uid, 7), aGroupObj(5), aMask(5), aOther(0))
	a.want(sub.Attr.Ino, xattrACLDefault, def...)
	if n := a.names(sub.Attr.Ino); !slices.Equal(n, []string{xattrACLAccess, xattrACLDefault}) {
		t.Fatalf("names %v", n)
	}
	// Two levels down.
	ff := e.create(alice, sub.Attr.Ino, "ff", 0o640)
	a.want(ff.Ino, xattrACLAccess, aUserObj(6), aUser(bob.Uid, 7), aGroupObj(5), aMask(4), aOther(0))

	// mknod takes the default ACL too; symlinks do not.
	n, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: d.Ino, Name: "fifo", Mode: proto.ModeFIFO | 0o604, Umask: 0o777})
	e.must(err)
	if n.Attr.Mode != proto.ModeFIFO|0o600 {
		t.Fatalf("fifo mode %o", n.Attr.Mode)
	}
	a.want(n.Attr.Ino, xattrACLAccess, aUserObj(6), aUser(bob.Uid, 7), aGroupObj(5), aMask(0), aOther(0))
	l, err := e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: d.Ino, Name: "l", Target: "f"})
	e.must(err)
	if l.Attr.Mode != proto.ModeSymlink|0o777 {
		t.Fatalf("symlink mode %o", l.Attr.Mode)
	}
	a.want(l.Attr.Ino, xattrACLAccess)

	// A minimal default ACL gives a mode and no access ACL.
	m := e.mkdir(alice, d.Ino, "minimal", 0o755)
	e.must(a.set(alice, m.Ino, xattrACLDefault, aclValue(aUserObj(7), aGroupObj(5), aOther(5))))
	r, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: m.Ino, Name: "f",
		Mode: 0o666, Umask: 0o077, Flags: syscall.O_RDWR | syscall.O_CREAT})
	e.must(err)
	if r.Attr.Mode != proto.ModeRegular|0o644 {
		t.Fatalf("mode %o under a minimal default ACL, want 644", r.Attr.Mode)
	}
	a.want(r.Attr.Ino, xattrACLAccess)

	// Without a default ACL the umask applies, to every kind of creation.
	e.must(e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: alice, Ino: m.Ino, Name: xattrACLDefault}))
	r, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: m.Ino, Name: "g",
		Mode: 0o666, Umask: 0o022, Flags: syscall.O_RDWR | syscall.O_CREAT})
	e.must(err)
	md, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: alice, Parent: m.Ino, Name: "sd", Mode: 0o1777, Umask: 0o027, MDT: -1})
	e.must(err)
	mn, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: m.Ino, Name: "n", Mode: 0o4666, Umask: 0o002})
	e.must(err)
	if r.Attr.Mode != proto.ModeRegular|0o644 || md.Attr.Mode != proto.ModeDir|0o1750 || mn.Attr.Mode != proto.ModeRegular|0o4664 {
		t.Fatalf("umask: file %o dir %o node %o", r.Attr.Mode, md.Attr.Mode, mn.Attr.Mode)
	}
	a.want(md.Attr.Ino, xattrACLDefault)
}
