package mds

import (
	"cmp"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// testAppend appends to one file from many goroutines through two services
// over one store (as clients of two MDSes): every append gets its own
// range, the ranges tile the file and the size is their sum.
func testAppend(t *testing.T, open opener) {
	e := newEnv(t, open)
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	f := e.createOpen(alice, pub.Ino, "log", 0o644)
	ino := f.Attr.Ino
	other, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(), Now: e.clock.Now})
	e.must(err)
	oc, err := other.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	of, err := other.Open(e.ctx, &proto.OpenReq{Cred: bob, Session: oc.Session, Ino: ino, Flags: syscall.O_WRONLY | syscall.O_APPEND})
	wantErrno(t, err, syscall.EACCES)
	of, err = other.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: oc.Session, Ino: ino, Flags: syscall.O_WRONLY | syscall.O_APPEND})
	e.must(err)

	type span struct{ off, len uint64 }
	const workers, each = 8, 25
	spans := make([][]span, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, req := e.s, proto.AppendReq{Session: e.session, Ino: ino, Handle: f.Handle}
			if w%2 == 1 {
				s, req = other, proto.AppendReq{Session: oc.Session, Ino: ino, Handle: of.Handle}
			}
			for i := range each {
				req.Len = uint64(1 + (w*31+i*7)%97)
				r, err := s.Append(e.ctx, &req)
				if err != nil {
					t.Error(err)
					return
				}
				spans[w] = append(spans[w], span{r.Offset, req.Len})
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := slices.Concat(spans...)
	slices.SortFunc(all, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	var end uint64
	for _, s := range all {
		if s.off != end {
			t.Fatalf("append at %d, want %d: ranges overlap or leave a gap", s.off, end)
		}
		end += s.len
	}
	a := e.getattr(ino)
	if a.Size != end || a.DataVersion != workers*each || a.Mtime != e.clock.Now().UnixNano() {
		t.Fatalf("after %d appends of %d bytes: size %d data version %d", workers*each, end, a.Size, a.DataVersion)
	}
	// A zero-length append reports the end and changes nothing.
	r, err := e.s.Append(e.ctx, &proto.AppendReq{Session: e.session, Ino: ino, Handle: f.Handle})
	e.must(err)
	if r.Offset != end || e.getattr(ino).DataVersion != a.DataVersion {
		t.Fatalf("empty append: offset %d", r.Offset)
	}
	// Only a writer's handle of the caller's session.
	ro, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: ino, Flags: syscall.O_RDONLY})
	e.must(err)
	for _, req := range []proto.AppendReq{
		{Session: e.session, Ino: ino, Handle: ro.Handle, Len: 1},
		{Session: oc.Session, Ino: ino, Handle: f.Handle, Len: 1},
		{Session: e.session, Ino: ino, Handle: 12345, Len: 1},
		{Session: e.session, Ino: ino + 1, Handle: f.Handle, Len: 1},
	} {
		_, err := e.s.Append(e.ctx, &req)
		wantErrno(t, err, syscall.EBADF)
	}
	_, err = e.s.Append(e.ctx, &proto.AppendReq{Session: e.session, Ino: ino, Handle: f.Handle, Len: 1 << 63})
	wantErrno(t, err, syscall.EFBIG)
	// An append is a write: an unprivileged writer clears set-id bits.
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: ino, Valid: proto.SetMode, Mode: 0o6755})
	e.must(err)
	_, err = e.s.Append(e.ctx, &proto.AppendReq{Session: e.session, Ino: ino, Handle: f.Handle, Len: 1})
	e.must(err)
	if m := e.getattr(ino).Mode; m != proto.ModeRegular|0o755 {
		t.Fatalf("mode %o after an append by the owner", m)
	}
	// A close that reports less than the appends keeps the appended size.
	c, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: f.Handle, Wrote: true, Size: 10})
	e.must(err)
	if c.Attr.Size != end+1 {
		t.Fatalf("size %d after close, want %d", c.Attr.Size, end+1)
	}
}

func testConsistency(t *testing.T, open opener) {
	e := newEnv(t, open)
	set := func(c proto.Cred, ino uint64, mode string) error {
		return e.s.SetConsistency(e.ctx, &proto.SetConsistencyReq{Cred: c, Ino: ino, Mode: mode})
	}
	flags := func(ino uint64) uint32 { return e.getattr(ino).Flags }
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	d := e.mkdir(alice, pub.Ino, "d", 0o755)
	before := e.create(alice, d.Ino, "before", 0o644)
	wantErrno(t, set(bob, d.Ino, "strict"), syscall.EPERM)
	wantErrno(t, set(alice, before.Ino, "strict"), syscall.ENOTDIR)
	wantErrno(t, set(alice, d.Ino, "eventual"), syscall.EINVAL)
	e.clock.Advance(1e9)
	e.must(set(alice, d.Ino, "strict"))
	if a := e.getattr(d.Ino); a.Flags != proto.AttrFlagStrict || a.Ctime != e.clock.Now().UnixNano() {
		t.Fatalf("directory after strict: flags %#x ctime %d", a.Flags, a.Ctime)
	}
	if a, err := e.lookup(alice, pub.Ino, "d"); err != nil || a.Flags != proto.AttrFlagStrict {
		t.Fatalf("lookup: %+v %v", a, err)
	}
	if flags(before.Ino) != 0 {
		t.Fatal("an existing file changed mode")
	}

	// New regular files are strict; other types are not.
	r := e.createOpen(alice, d.Ino, "f", 0o644)
	if r.Attr.Flags != proto.AttrFlagStrict {
		t.Fatalf("create: flags %#x", r.Attr.Flags)
	}
	o, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	if o.Attr.Flags != proto.AttrFlagStrict {
		t.Fatalf("open: flags %#x", o.Attr.Flags)
	}
	n, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: d.Ino, Name: "reg", Mode: 0o644})
	e.must(err)
	fifo, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: d.Ino, Name: "fifo", Mode: proto.ModeFIFO | 0o644})
	e.must(err)
	l, err := e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: d.Ino, Name: "l", Target: "f"})
	e.must(err)
	if n.Attr.Flags != proto.AttrFlagStrict || fifo.Attr.Flags != 0 || l.Attr.Flags != 0 {
		t.Fatalf("mknod regular %#x, fifo %#x, symlink %#x", n.Attr.Flags, fifo.Attr.Flags, l.Attr.Flags)
	}

	// Subdirectories inherit, down the tree.
	sub := e.mkdir(alice, d.Ino, "sub", 0o755)
	subsub := e.mkdir(alice, sub.Ino, "subsub", 0o755)
	if sub.Flags != proto.AttrFlagStrict || subsub.Flags != proto.AttrFlagStrict {
		t.Fatalf("subdirectories: %#x %#x", sub.Flags, subsub.Flags)
	}
	if f := e.create(alice, subsub.Ino, "f", 0o644); f.Flags != proto.AttrFlagStrict {
		t.Fatalf("file two levels down: %#x", f.Flags)
	}

	// close-to-open below a strict directory.
	e.must(set(alice, sub.Ino, "close-to-open"))
	if flags(sub.Ino) != proto.AttrFlagCloseToOpen {
		t.Fatalf("close-to-open: %#x", flags(sub.Ino))
	}
	if f := e.create(alice, sub.Ino, "g", 0o644); f.Flags != 0 {
		t.Fatalf("file under close-to-open: %#x", f.Flags)
	}
	if dd := e.mkdir(alice, sub.Ino, "dd", 0o755); dd.Flags != proto.AttrFlagCloseToOpen {
		t.Fatalf("directory under close-to-open: %#x", dd.Flags)
	}

	// "" takes the parent's mode again; the root has none to take.
	e.must(set(alice, sub.Ino, ""))
	if flags(sub.Ino) != proto.AttrFlagStrict {
		t.Fatalf("inherit: %#x", flags(sub.Ino))
	}
	e.must(set(root, d.Ino, "close-to-open"))
	e.must(set(root, RootIno, "strict"))
	if flags(RootIno) != proto.AttrFlagStrict {
		t.Fatalf("root: %#x", flags(RootIno))
	}
	e.must(set(root, RootIno, ""))
	if flags(RootIno) != 0 || flags(d.Ino) != proto.AttrFlagCloseToOpen {
		t.Fatalf("root %#x, d %#x", flags(RootIno), flags(d.Ino))
	}
	e.restart()
	if flags(d.Ino) != proto.AttrFlagCloseToOpen || flags(r.Attr.Ino) != proto.AttrFlagStrict {
		t.Fatal("flags lost over a restart")
	}
}
