package mds

import (
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

func testXattr(t *testing.T, open opener) {
	e := newEnv(t, open)
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	f := e.create(alice, pub.Ino, "f", 0o644)
	set := func(c proto.Cred, name, value string, flags uint32) error {
		return e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: c, Ino: f.Ino, Name: name, Value: []byte(value), Flags: flags})
	}
	get := func(c proto.Cred, name string) (string, error) {
		r, err := e.s.Getxattr(e.ctx, &proto.GetxattrReq{Cred: c, Ino: f.Ino, Name: name})
		if err != nil {
			return "", err
		}
		return string(r.Value), nil
	}
	list := func(c proto.Cred) []string {
		r, err := e.s.Listxattr(e.ctx, &proto.ListxattrReq{Cred: c, Ino: f.Ino})
		e.must(err)
		return r.Names
	}
	_, err := get(alice, "user.a")
	wantErrno(t, err, syscall.ENODATA)
	wantErrno(t, set(alice, "user.a", "1", proto.XattrReplace), syscall.ENODATA)
	e.must(set(alice, "user.a", "1", proto.XattrCreate))
	wantErrno(t, set(alice, "user.a", "2", proto.XattrCreate), syscall.EEXIST)
	e.must(set(alice, "user.a", "2", proto.XattrReplace))
	e.must(set(alice, "user.b", "", 0))
	if v, err := get(bob, "user.a"); err != nil || v != "2" {
		t.Fatalf("get: %q %v", v, err)
	}
	if v, err := get(alice, "user.b"); err != nil || v != "" {
		t.Fatalf("empty value: %q %v", v, err)
	}
	wantErrno(t, set(alice, "user.c", "x", proto.XattrCreate|proto.XattrReplace), syscall.EINVAL)
	// Others need write permission to set, read permission to get.
	wantErrno(t, set(bob, "user.c", "x", 0), syscall.EACCES)
	// trusted.* is root's; others neither see nor set it.
	wantErrno(t, set(alice, "trusted.t", "x", 0), syscall.EPERM)
	e.must(set(root, "trusted.t", "x", 0))
	_, err = get(alice, "trusted.t")
	wantErrno(t, err, syscall.ENODATA)
	if got := list(alice); !slices.Equal(got, []string{"user.a", "user.b"}) {
		t.Fatalf("list for alice: %v", got)
	}
	if got := list(root); !slices.Equal(got, []string{"trusted.t", "user.a", "user.b"}) {
		t.Fatalf("list for root: %v", got)
	}
	// security.* by the owner; virtual and unknown namespaces refused.
	wantErrno(t, set(bob, "security.s", "x", 0), syscall.EPERM)
	e.must(set(alice, "security.s", "x", 0))
	wantErrno(t, set(root, "user.strata.layout", "x", 0), syscall.EPERM)
	wantErrno(t, set(root, "system.posix_acl_access", "x", 0), syscall.EINVAL)
	wantErrno(t, set(root, "system.other", "x", 0), syscall.EOPNOTSUPP)
	wantErrno(t, set(root, "bogus.x", "x", 0), syscall.EOPNOTSUPP)
	wantErrno(t, set(root, "", "x", 0), syscall.ERANGE)
	wantErrno(t, set(root, "user.", "x", 0), syscall.EINVAL)
	wantErrno(t, set(root, "user."+string(make([]byte, 255)), "x", 0), syscall.ERANGE)
	wantErrno(t, set(root, "user.big", string(make([]byte, 64<<10+1)), 0), syscall.E2BIG)
	e.must(set(root, "user.max", string(make([]byte, 64<<10)), 0))
	// Remove.
	wantErrno(t, e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: bob, Ino: f.Ino, Name: "user.a"}), syscall.EACCES)
	e.must(e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: alice, Ino: f.Ino, Name: "user.a"}))
	wantErrno(t, e.s.Removexattr(e.ctx, &proto.RemovexattrReq{Cred: alice, Ino: f.Ino, Name: "user.a"}), syscall.ENODATA)
	// user.* only on files and directories.
	fifo, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: root, Parent: pub.Ino, Name: "fifo", Mode: proto.ModeFIFO | 0o666})
	e.must(err)
	wantErrno(t, e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: root, Ino: fifo.Attr.Ino, Name: "user.x"}), syscall.EPERM)
	// Xattrs go with their inode.
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: pub.Ino, Name: "f"}))
	n := 0
	e.must(e.s.view(e.ctx, func(t *mtx) error {
		start, end := t.k.xattrRange(f.Ino)
		return t.kv.Scan(e.ctx, start, end, 0, func(_, _ []byte) bool { n++; return true })
	}))
	if n != 0 {
		t.Fatalf("%d xattrs survive their inode", n)
	}
}

func testOpen(t *testing.T, open opener) {
	e := newEnv(t, open)
	r := e.createOpen(root, RootIno, "f", 0o644)
	if r.Handle == 0 || len(r.Layout.Components) == 0 {
		t.Fatalf("create reply %+v", r)
	}
	if err := r.Cap.Verify(testSecret, r.Attr.Ino, proto.RightRead|proto.RightWrite, e.clock.Now()); err != nil {
		t.Fatalf("capability: %v", err)
	}
	ro, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	if err := ro.Cap.Verify(testSecret, r.Attr.Ino, proto.RightWrite, e.clock.Now()); !errors.Is(err, proto.ErrCapRights) {
		t.Fatalf("read-only capability grants write: %v", err)
	}
	if !slices.Equal(layoutObjects(&ro.Layout), layoutObjects(&r.Layout)) {
		t.Fatal("open returned another layout")
	}
	c, err := e.s.GetCap(e.ctx, &proto.GetCapReq{Session: e.session, Ino: r.Attr.Ino, Handle: ro.Handle})
	e.must(err)
	if err := c.Cap.Verify(testSecret, r.Attr.Ino, proto.RightRead, e.clock.Now().Add(50*time.Minute)); err != nil {
		t.Fatalf("refreshed capability: %v", err)
	}
	_, err = e.s.GetCap(e.ctx, &proto.GetCapReq{Session: e.session, Ino: r.Attr.Ino + 1, Handle: ro.Handle})
	wantErrno(t, err, syscall.EBADF)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: ro.Handle})
	e.must(err)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: ro.Handle})
	wantErrno(t, err, syscall.EBADF)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: 0xbad, Flags: syscall.O_RDONLY})
	wantErrno(t, err, syscall.ENOENT)
	if n := e.s.open.count(0xbad); n != 0 {
		t.Fatalf("failed open left %d handles", n)
	}
	// O_TRUNC truncates, punching the objects.
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: 5000})
	e.must(err)
	e.io.takePunches()
	tr, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_WRONLY | syscall.O_TRUNC})
	e.must(err)
	if tr.Attr.Size != 0 {
		t.Fatalf("O_TRUNC left size %d", tr.Attr.Size)
	}
	if p := e.io.takePunches(); len(p) != 1 || p[0].Size != 0 {
		t.Fatalf("O_TRUNC punches %+v", p)
	}
}

func testTruncate(t *testing.T, open opener) {
	e := newEnv(t, open)
	spec := layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 4, StripeSize: 64 << 10, StripeOffset: -1}}}
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT, Mode: 0o644, Layout: spec})
	e.must(err)
	if c := r.Layout.Components[0]; c.StripeCount != 4 || len(c.Objects) != 4 {
		t.Fatalf("layout %+v", r.Layout)
	}
	osts := map[uint32]bool{}
	for _, o := range r.Layout.Components[0].Objects {
		osts[o.OST] = true
	}
	if len(osts) != 4 {
		t.Fatalf("4 stripes on %d OSTs", len(osts))
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: 1 << 20})
	e.must(err)
	const size = 100 << 10 // one full stripe on object 0, 36 KiB on object 1
	dv := e.getattr(r.Attr.Ino).DataVersion
	a, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: r.Attr.Ino, Valid: proto.SetSize, Size: size})
	e.must(err)
	if a.Attr.Size != size || a.Attr.DataVersion <= dv {
		t.Fatalf("after truncate %+v", a.Attr)
	}
	want := map[uint32]int64{}
	for _, p := range r.Layout.TruncatePoints(size, nil) {
		want[p.Object.ID.Seq] = p.Size
	}
	got := map[uint32]int64{}
	for _, p := range e.io.takePunches() {
		got[p.Obj.ID.Seq] = p.Size
		wantAddr := "oss0:1"
		if p.Obj.OST >= 2 {
			wantAddr = "oss1:1"
		}
		if p.Addr != wantAddr {
			t.Fatalf("punch of OST %d sent to %s", p.Obj.OST, p.Addr)
		}
	}
	if len(got) != 4 || got[r.Layout.Components[0].Objects[0].ID.Seq] != 64<<10 {
		t.Fatalf("punches %v", got)
	}
	for seq, sz := range want {
		if got[seq] != sz {
			t.Fatalf("object %d punched to %d, want %d", seq, got[seq], sz)
		}
	}
	// A failed punch leaves the size alone.
	e.io.setFail(syscall.EIO)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: r.Attr.Ino, Valid: proto.SetSize, Size: 10})
	wantErrno(t, err, syscall.EIO)
	if s := e.getattr(r.Attr.Ino).Size; s != size {
		t.Fatalf("size %d after failed truncate", s)
	}
	e.io.setFail(nil)
	// Extending truncate.
	a, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: r.Attr.Ino, Valid: proto.SetSize, Size: 10 << 20})
	e.must(err)
	if a.Attr.Size != 10<<20 {
		t.Fatalf("size %d", a.Attr.Size)
	}
	// A never-written empty file needs no punches.
	e.create(root, RootIno, "empty", 0o644)
	em, _ := e.lookup(root, RootIno, "empty")
	e.io.takePunches()
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: em.Ino, Valid: proto.SetSize, Size: 4096})
	e.must(err)
	if p := e.io.takePunches(); len(p) != 0 {
		t.Fatalf("punched an empty file: %v", p)
	}
}

func testSizeMerge(t *testing.T, open opener) {
	e := newEnv(t, open)
	w1 := e.createOpen(alice, e.mkdir(root, RootIno, "pub", 0o777).Ino, "f", 0o6755)
	ino := w1.Attr.Ino
	w2, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: ino, Flags: syscall.O_WRONLY})
	e.must(err)
	a, err := e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: w2.Handle, Size: 300, Mtime: 777, Sync: true})
	e.must(err)
	if a.Attr.Size != 300 || a.Attr.Mtime != 777 || a.Attr.DataVersion != 1 {
		t.Fatalf("after size report %+v", a.Attr)
	}
	if a.Attr.Mode&(modeSuid|modeSgid) != 0 {
		t.Fatalf("write by non-root kept set-id bits: %o", a.Attr.Mode)
	}
	c, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: w1.Handle, Wrote: true, Size: 100})
	e.must(err)
	if c.Attr.Size != 300 || c.Attr.DataVersion != 2 {
		t.Fatalf("smaller report shrank the file: %+v", c.Attr)
	}
	c, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: w2.Handle, Wrote: true, Size: 4000})
	e.must(err)
	if c.Attr.Size != 4000 || c.Attr.DataVersion != 3 {
		t.Fatalf("close merge: %+v", c.Attr)
	}
	ro, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: ino, Flags: syscall.O_RDONLY})
	e.must(err)
	_, err = e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: ro.Handle, Size: 1})
	wantErrno(t, err, syscall.EBADF)
	// A read-only close does not touch the data version.
	c, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: ro.Handle, Wrote: true, Size: 9999})
	e.must(err)
	if c.Attr.Size != 4000 || c.Attr.DataVersion != 3 {
		t.Fatalf("read-only close changed the file: %+v", c.Attr)
	}
}

func testLayouts(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "wide", 0o777)
	gl, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: d.Ino})
	e.must(err)
	if !gl.IsDir || !gl.Spec.IsZero() {
		t.Fatalf("new dir has default %+v", gl)
	}
	spec := layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 3, StripeOffset: -1}}}
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: bob, Ino: d.Ino, Spec: spec})
	e.must(err) // write permission on the directory suffices
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: d.Ino,
		Spec: layout.Spec{Components: []layout.ComponentSpec{{StripeSize: 1000}}}})
	wantErrno(t, err, syscall.EINVAL)
	f := e.createOpen(alice, d.Ino, "f", 0o644)
	if c := f.Layout.Components[0]; c.StripeCount != 3 || c.StripeSize != layout.DefaultStripeSize || f.Layout.Gen != 1 {
		t.Fatalf("inherited layout %+v", f.Layout)
	}
	// Subdirectories do not inherit a default; their files fall back to
	// the root's and then the filesystem's.
	sub := e.mkdir(root, d.Ino, "sub", 0o777)
	g := e.create(root, sub.Ino, "g", 0o644)
	if gl, _ := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: g.Ino}); gl.Layout.Components[0].StripeCount != 1 {
		t.Fatalf("file in subdir got %+v", gl.Layout)
	}
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: RootIno,
		Spec: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 2, StripeSize: 128 << 10, StripeOffset: -1}}}})
	e.must(err)
	h := e.create(root, sub.Ino, "h", 0o644)
	if gl, _ := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: h.Ino}); gl.Layout.Components[0].StripeCount != 2 ||
		gl.Layout.Components[0].StripeSize != 128<<10 {
		t.Fatalf("file under root default got %+v", gl.Layout)
	}
	// setstripe on an empty, never-written file replaces its objects.
	old := layoutObjects(&f.Layout)
	nl, err := e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: alice, Ino: f.Attr.Ino,
		Spec: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 4, StripeOffset: -1}}}})
	e.must(err)
	if nl.Layout.Gen != 2 || nl.Layout.Components[0].StripeCount != 4 {
		t.Fatalf("new layout %+v", nl.Layout)
	}
	for _, o := range layoutObjects(&nl.Layout) {
		for _, p := range old {
			if o.ID == p.ID {
				t.Fatalf("object %v reused", o.ID)
			}
		}
	}
	if e.queueLen() != 1 {
		t.Fatalf("old objects not queued: %d", e.queueLen())
	}
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: bob, Ino: f.Attr.Ino, Spec: spec})
	wantErrno(t, err, syscall.EACCES)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, Wrote: true, Size: 1})
	e.must(err)
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: alice, Ino: f.Attr.Ino, Spec: spec})
	wantErrno(t, err, syscall.EEXIST)
	// Removing a directory default.
	_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: d.Ino})
	e.must(err)
	if gl, _ := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: d.Ino}); !gl.Spec.IsZero() {
		t.Fatalf("default not removed: %+v", gl.Spec)
	}
	// More stripes than OSTs: ENOSPC.
	_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "huge",
		Flags: syscall.O_RDWR, Layout: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 9, StripeOffset: -1}}}})
	wantErrno(t, err, syscall.ENOSPC)
	// All OSTs silent: no room either.
	e.clock.Advance(time.Minute)
	_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "nowhere", Flags: syscall.O_RDWR})
	wantErrno(t, err, syscall.ENOSPC)
	e.heartbeat()
	e.create(root, RootIno, "somewhere", 0o644)
}

// testTruncateCrash interrupts a truncate after it cut one object, as a
// crash between the punches and the commit would: the size must not stay
// at the old value over cut objects. A restarted MDS finishes the truncate,
// and a size report from before it (an older epoch) cannot undo it.
func testTruncateCrash(t *testing.T, open opener) {
	e := newEnv(t, open)
	spec := layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 4, StripeSize: 64 << 10, StripeOffset: -1}}}
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT, Mode: 0o644, Layout: spec})
	e.must(err)
	ino := r.Attr.Ino
	_, err = e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: r.Handle, Size: 1 << 20})
	e.must(err)
	if r.Cap.Epoch != 0 {
		t.Fatalf("a new file's capability has epoch %d", r.Cap.Epoch)
	}

	const size = 100 << 10
	e.io.mu.Lock()
	e.io.punchesLeft = 1
	e.io.mu.Unlock()
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: ino, Valid: proto.SetSize, Size: size})
	wantErrno(t, err, syscall.EIO)
	if p := e.io.takePunches(); len(p) != 1 || p[0].Epoch != 1 {
		t.Fatalf("punches before the crash: %+v, want one at epoch 1", p)
	}

	e.io.setFail(nil)
	e.restart()
	n, err := e.s.recoverTruncates(e.ctx)
	e.must(err)
	if n != 1 {
		t.Fatalf("recovered %d truncates, want 1", n)
	}
	got := map[uint32]int64{}
	for _, p := range e.io.takePunches() {
		if p.Epoch != 1 {
			t.Fatalf("recovery punched at epoch %d, want 1", p.Epoch)
		}
		got[p.Obj.ID.Seq] = p.Size
	}
	for _, p := range r.Layout.TruncatePoints(size, nil) {
		if got[p.Object.ID.Seq] != p.Size {
			t.Fatalf("object %d punched to %d after recovery, want %d", p.Object.ID.Seq, got[p.Object.ID.Seq], p.Size)
		}
	}
	if a := e.getattr(ino); a.Size != size {
		t.Fatalf("size %d after the interrupted truncate finished, want %d", a.Size, size)
	}
	if n, err := e.s.recoverTruncates(e.ctx); err != nil || n != 0 {
		t.Fatalf("second recovery pass: %d %v", n, err)
	}

	// A writer that learnt of the truncate reports at the new epoch; one
	// that did not cannot bring the old size back.
	w, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: ino, Flags: syscall.O_WRONLY})
	e.must(err)
	if w.Cap.Epoch != 1 {
		t.Fatalf("capability after the truncate has epoch %d, want 1", w.Cap.Epoch)
	}
	a, err := e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: w.Handle, Size: 1 << 20, Epoch: 0})
	e.must(err)
	if a.Attr.Size != size {
		t.Fatalf("a size from before the truncate made the file %d bytes", a.Attr.Size)
	}
	a, err = e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: w.Handle, Size: 200 << 10, Epoch: 1})
	e.must(err)
	if a.Attr.Size != 200<<10 {
		t.Fatalf("a size at the current epoch was not merged: %d", a.Attr.Size)
	}
	// The capability an ESTALE sends a client for names the epoch.
	gc, err := e.s.GetCap(e.ctx, &proto.GetCapReq{Session: e.session, Ino: ino, Handle: w.Handle})
	e.must(err)
	if gc.Cap.Epoch != 1 || gc.Attr.Size != 200<<10 || len(gc.Layout.Components) != 1 {
		t.Fatalf("GetCap after truncate: epoch %d size %d layout %+v", gc.Cap.Epoch, gc.Attr.Size, gc.Layout)
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: w.Handle})
	e.must(err)
}
