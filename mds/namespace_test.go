package mds

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

func testFormat(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := e.getattr(RootIno)
	if a.Mode != proto.ModeDir|0o755 || a.Uid != 0 || a.Gid != 0 || a.Nlink != 2 {
		t.Fatalf("root attrs %+v", a)
	}
	err := FormatDB(e.ctx, e.db, FormatOptions{FSName: "other"})
	if !errors.Is(err, ErrFormatted) {
		t.Fatalf("second format: %v, want ErrFormatted", err)
	}
	empty := open(t, t.TempDir())
	defer empty.Close()
	if _, err := NewService(e.ctx, empty, ServiceOptions{Logger: quietLogger()}); !errors.Is(err, ErrNotFormatted) {
		t.Fatalf("service on empty store: %v, want ErrNotFormatted", err)
	}
	if err := FormatDB(e.ctx, empty, FormatOptions{FSName: "bad/name"}); err == nil {
		t.Fatal("format accepted a bad name")
	}
	err = FormatDB(e.ctx, empty, FormatOptions{FSName: "fs2", RootUid: 7, RootGid: 8, StripeCount: 2, StripeSize: 4 << 20, Logger: quietLogger()})
	e.must(err)
	s2, err := NewService(e.ctx, empty, ServiceOptions{Logger: quietLogger()})
	e.must(err)
	c, err := s2.Connect(e.ctx, &proto.ConnectReq{FSName: "fs2"})
	e.must(err)
	if d := c.Defaults.Components[0]; d.StripeCount != 2 || d.StripeSize != 4<<20 || c.Root != RootIno {
		t.Fatalf("connect %+v", c)
	}
	if _, err := s2.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"}); err == nil {
		t.Fatal("connect to the wrong filesystem succeeded")
	}
	r, err := s2.Getattr(e.ctx, &proto.GetattrReq{Ino: RootIno})
	e.must(err)
	if r.Attr.Uid != 7 || r.Attr.Gid != 8 {
		t.Fatalf("root owner %d:%d, want 7:8", r.Attr.Uid, r.Attr.Gid)
	}
}

func testCreateLookup(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	f := e.create(root, d.Ino, "f", 0o644)
	if f.Mode != proto.ModeRegular|0o644 || f.Nlink != 1 || f.Size != 0 {
		t.Fatalf("file attrs %+v", f)
	}
	if inoMDT(f.Ino) != 0 || f.Ino == d.Ino {
		t.Fatalf("inode numbers %#x %#x", d.Ino, f.Ino)
	}
	got, err := e.lookup(root, d.Ino, "f")
	e.must(err)
	if got.Ino != f.Ino {
		t.Fatalf("lookup gave %#x, want %#x", got.Ino, f.Ino)
	}
	_, err = e.lookup(root, d.Ino, "missing")
	wantErrno(t, err, syscall.ENOENT)
	_, err = e.lookup(root, f.Ino, "x")
	wantErrno(t, err, syscall.ENOTDIR)
	if a, err := e.lookup(root, d.Ino, ".."); err != nil || a.Ino != RootIno {
		t.Fatalf("lookup ..: %v %#x", err, a.Ino)
	}
	if a, err := e.lookup(root, d.Ino, "."); err != nil || a.Ino != d.Ino {
		t.Fatalf("lookup .: %v %#x", err, a.Ino)
	}
	_, err = e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d.Ino, Name: "f", Mode: 0o755, MDT: -1})
	wantErrno(t, err, syscall.EEXIST)
	_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: d.Ino, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL})
	wantErrno(t, err, syscall.EEXIST)
	// Without O_EXCL, create opens the existing file.
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: d.Ino, Name: "f",
		Flags: syscall.O_RDWR | syscall.O_CREAT})
	e.must(err)
	if r.Attr.Ino != f.Ino {
		t.Fatalf("create of existing opened %#x, want %#x", r.Attr.Ino, f.Ino)
	}
	_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: f.Ino, Name: "x", Flags: syscall.O_RDWR})
	wantErrno(t, err, syscall.ENOTDIR)
	_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: 12345, Parent: d.Ino, Name: "y", Flags: syscall.O_RDWR})
	wantErrno(t, err, syscall.ENOTCONN)
	_, err = e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: 0xdead, Name: "x", MDT: -1})
	wantErrno(t, err, syscall.ENOENT)
	wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: d.Ino, Name: "missing"}), syscall.ENOENT)
	wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "d"}), syscall.EISDIR)
	wantErrno(t, e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: d.Ino, Name: "f"}), syscall.ENOTDIR)
	wantErrno(t, e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: RootIno, Name: "d"}), syscall.ENOTEMPTY)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: d.Ino, Name: "f"}))
	e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: RootIno, Name: "d"}))
	_, err = e.lookup(root, RootIno, "d")
	wantErrno(t, err, syscall.ENOENT)
	_, err = e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: d.Ino})
	wantErrno(t, err, syscall.ENOENT)
}

func testNames(t *testing.T, open opener) {
	e := newEnv(t, open)
	for _, name := range []string{"", ".", "..", "a/b", "a\x00b"} {
		_, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: name, MDT: -1})
		wantErrno(t, err, syscall.EINVAL)
		_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: RootIno, Name: name})
		wantErrno(t, err, syscall.EINVAL)
		wantErrno(t, e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: name}), syscall.EINVAL)
		wantErrno(t, e.s.Rename(e.ctx, &proto.RenameReq{Cred: root, Parent: RootIno, Name: "x", NewParent: RootIno, NewName: name}), syscall.EINVAL)
	}
	long := strings.Repeat("n", 256)
	_, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: long, MDT: -1})
	wantErrno(t, err, syscall.ENAMETOOLONG)
	_, err = e.lookup(root, RootIno, long)
	wantErrno(t, err, syscall.ENAMETOOLONG)
	e.mkdir(root, RootIno, long[:255], 0o755)
	e.create(root, RootIno, "ünïcödé name with spaces", 0o644)
}

func testReaddir(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("e%03d", i)
		want = append(want, name)
		if i%5 == 0 {
			e.mkdir(root, d.Ino, name, 0o700)
		} else {
			e.create(root, d.Ino, name, 0o600)
		}
	}
	for _, page := range []int{1, 3, 7, 25, 100, 0} {
		if got := e.names(d.Ino, page); !slices.Equal(got, want) {
			t.Fatalf("page %d: got %v", page, got)
		}
	}
	r, err := e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: d.Ino, Max: 25, Plus: true})
	e.must(err)
	if r.More || len(r.Entries) != 25 {
		t.Fatalf("more %v, %d entries", r.More, len(r.Entries))
	}
	for i, ent := range r.Entries {
		if ent.Attr == nil || ent.Attr.Ino != ent.Ino || ent.Mode != ent.Attr.Mode {
			t.Fatalf("entry %+v lacks attributes", ent)
		}
		wantDir := i%5 == 0
		if ent.Attr.IsDir() != wantDir {
			t.Fatalf("entry %s: dir %v", ent.Name, ent.Attr.IsDir())
		}
	}
	r, err = e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: d.Ino, Max: 2})
	e.must(err)
	if !r.More || r.Entries[0].Attr != nil || r.Entries[0].Mode&proto.ModeType != proto.ModeDir {
		t.Fatalf("plain page %+v", r)
	}
	_, err = e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: e.create(root, RootIno, "f", 0o644).Ino})
	wantErrno(t, err, syscall.ENOTDIR)
	// Readdir needs read permission; attributes need search permission too.
	p := e.mkdir(root, RootIno, "noread", 0o311)
	e.create(root, p.Ino, "x", 0o644)
	_, err = e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: alice, Ino: p.Ino})
	wantErrno(t, err, syscall.EACCES)
	q := e.mkdir(root, RootIno, "nosearch", 0o744)
	e.create(root, q.Ino, "x", 0o644)
	r, err = e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: alice, Ino: q.Ino, Plus: true})
	e.must(err)
	if len(r.Entries) != 1 || r.Entries[0].Attr != nil {
		t.Fatalf("readdir without search permission gave %+v", r.Entries)
	}
}

// testReaddirUnderChurn pages through a directory while other goroutines
// add and remove entries: every entry present throughout appears exactly
// once, in order.
func testReaddirUnderChurn(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	var stable []string
	for i := range 120 {
		name := fmt.Sprintf("s%04d", i*2)
		stable = append(stable, name)
		e.create(root, d.Ino, name, 0o644)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("s%04d.%d", (i*7+w)%240, w)
				_, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: root, Parent: d.Ino, Name: name, Mode: proto.ModeFIFO | 0o644})
				if err != nil && !errors.Is(err, syscall.EEXIST) {
					t.Error(err)
					return
				}
				if i%2 == 1 {
					err := e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: d.Ino, Name: name})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for round := 0; round < 5; round++ {
		got := e.names(d.Ino, 7)
		if !slices.IsSorted(got) {
			t.Fatalf("round %d: names out of order", round)
		}
		var seen []string
		for i, n := range got {
			if i > 0 && got[i-1] == n {
				t.Fatalf("round %d: %q twice", round, n)
			}
			if !strings.Contains(n, ".") {
				seen = append(seen, n)
			}
		}
		if !slices.Equal(seen, stable) {
			t.Fatalf("round %d: stable entries %d, want %d", round, len(seen), len(stable))
		}
	}
	close(stop)
	wg.Wait()
}

func testLinkCounts(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	if d.Nlink != 2 || e.getattr(RootIno).Nlink != 3 {
		t.Fatalf("nlink d %d root %d", d.Nlink, e.getattr(RootIno).Nlink)
	}
	e.mkdir(root, d.Ino, "s1", 0o755)
	e.mkdir(root, d.Ino, "s2", 0o755)
	f := e.create(root, d.Ino, "f", 0o644)
	if n := e.getattr(d.Ino).Nlink; n != 4 {
		t.Fatalf("d nlink %d, want 4 (files do not count)", n)
	}
	l, err := e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f.Ino, NewParent: RootIno, Name: "hard"})
	e.must(err)
	if l.Attr.Nlink != 2 || l.Attr.Ino != f.Ino {
		t.Fatalf("link attrs %+v", l.Attr)
	}
	_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: d.Ino, NewParent: RootIno, Name: "dirlink"})
	wantErrno(t, err, syscall.EPERM)
	_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f.Ino, NewParent: RootIno, Name: "hard"})
	wantErrno(t, err, syscall.EEXIST)
	_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f.Ino, NewParent: f.Ino, Name: "x"})
	wantErrno(t, err, syscall.ENOTDIR)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: d.Ino, Name: "f"}))
	if a := e.getattr(f.Ino); a.Nlink != 1 {
		t.Fatalf("nlink after unlink %d", a.Nlink)
	}
	if e.queueLen() != 0 {
		t.Fatal("objects queued while a link remains")
	}
	e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: d.Ino, Name: "s1"}))
	if n := e.getattr(d.Ino).Nlink; n != 3 {
		t.Fatalf("d nlink after rmdir %d, want 3", n)
	}
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "hard"}))
	_, err = e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: f.Ino})
	wantErrno(t, err, syscall.ENOENT)
	if e.queueLen() != 1 {
		t.Fatalf("queue has %d entries after the last unlink, want 1", e.queueLen())
	}
}

func testTimes(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755)
	t0 := e.clock.Now().UnixNano()
	if d.Mtime != t0 || d.Ctime != t0 || d.Atime != t0 {
		t.Fatalf("new dir times %+v, want %d", d, t0)
	}
	step := func() int64 {
		e.clock.Advance(time.Second)
		return e.clock.Now().UnixNano()
	}
	t1 := step()
	f := e.create(root, d.Ino, "f", 0o644)
	if a := e.getattr(d.Ino); a.Mtime != t1 || a.Ctime != t1 {
		t.Fatalf("create left parent times %d/%d, want %d", a.Mtime, a.Ctime, t1)
	}
	t2 := step()
	_, err := e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f.Ino, NewParent: d.Ino, Name: "g"})
	e.must(err)
	if a := e.getattr(f.Ino); a.Ctime != t2 || a.Mtime != t1 {
		t.Fatalf("link: file ctime %d mtime %d, want %d %d", a.Ctime, a.Mtime, t2, t1)
	}
	t3 := step()
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: d.Ino, Name: "g"}))
	if a := e.getattr(f.Ino); a.Ctime != t3 {
		t.Fatalf("unlink: file ctime %d, want %d", a.Ctime, t3)
	}
	if a := e.getattr(d.Ino); a.Mtime != t3 || a.Ctime != t3 {
		t.Fatalf("unlink: dir times %d/%d, want %d", a.Mtime, a.Ctime, t3)
	}
	t4 := step()
	e2 := e.mkdir(root, RootIno, "e", 0o755)
	e.must(e.s.Rename(e.ctx, &proto.RenameReq{Cred: root, Parent: d.Ino, Name: "f", NewParent: e2.Ino, NewName: "f"}))
	for _, ino := range []uint64{d.Ino, e2.Ino} {
		if a := e.getattr(ino); a.Mtime != t4 || a.Ctime != t4 {
			t.Fatalf("rename: dir %#x times %d/%d, want %d", ino, a.Mtime, a.Ctime, t4)
		}
	}
	if a := e.getattr(f.Ino); a.Ctime != t4 || a.Mtime != t1 {
		t.Fatalf("rename: file ctime %d mtime %d", a.Ctime, a.Mtime)
	}
	t5 := step()
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o600})
	e.must(err)
	if a := e.getattr(f.Ino); a.Ctime != t5 || a.Mtime != t1 {
		t.Fatalf("chmod: ctime %d mtime %d", a.Ctime, a.Mtime)
	}
}

func testSymlink(t *testing.T, open opener) {
	e := newEnv(t, open)
	_, err := e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: RootIno, Name: "l", Target: "a/b/c"})
	wantErrno(t, err, syscall.EACCES)
	r, err := e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: RootIno, Name: "l", Target: "a/b/c"})
	e.must(err)
	if r.Attr.Mode != proto.ModeSymlink|0o777 || r.Attr.Size != 5 {
		t.Fatalf("symlink attrs %+v", r.Attr)
	}
	rl, err := e.s.Readlink(e.ctx, &proto.ReadlinkReq{Ino: r.Attr.Ino})
	e.must(err)
	if rl.Target != "a/b/c" {
		t.Fatalf("target %q", rl.Target)
	}
	_, err = e.s.Readlink(e.ctx, &proto.ReadlinkReq{Ino: RootIno})
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: RootIno, Name: "long", Target: strings.Repeat("x", 4096)})
	wantErrno(t, err, syscall.ENAMETOOLONG)
	_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: RootIno, Name: "ok", Target: strings.Repeat("x", 4095)})
	e.must(err)
	_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: RootIno, Name: "empty"})
	wantErrno(t, err, syscall.ENOENT)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: r.Attr.Ino})
	wantErrno(t, err, syscall.ELOOP)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "l"}))
	_, err = e.s.Readlink(e.ctx, &proto.ReadlinkReq{Ino: r.Attr.Ino})
	wantErrno(t, err, syscall.ENOENT)
}

func testMknod(t *testing.T, open opener) {
	e := newEnv(t, open)
	pub := e.mkdir(root, RootIno, "pub", 0o777)
	r, err := e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: pub.Ino, Name: "fifo", Mode: proto.ModeFIFO | 0o640})
	e.must(err)
	if r.Attr.Mode != proto.ModeFIFO|0o640 || r.Attr.Uid != alice.Uid {
		t.Fatalf("fifo attrs %+v", r.Attr)
	}
	_, err = e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: pub.Ino, Name: "dev", Mode: proto.ModeChar | 0o600, Rdev: 0x0103})
	wantErrno(t, err, syscall.EPERM)
	r, err = e.s.Mknod(e.ctx, &proto.MknodReq{Cred: root, Parent: pub.Ino, Name: "dev", Mode: proto.ModeChar | 0o600, Rdev: 0x0103})
	e.must(err)
	if r.Attr.Rdev != 0x0103 {
		t.Fatalf("rdev %#x", r.Attr.Rdev)
	}
	_, err = e.s.Mknod(e.ctx, &proto.MknodReq{Cred: root, Parent: pub.Ino, Name: "dir", Mode: proto.ModeDir | 0o755})
	wantErrno(t, err, syscall.EPERM)
	r, err = e.s.Mknod(e.ctx, &proto.MknodReq{Cred: alice, Parent: pub.Ino, Name: "reg", Mode: 0o644})
	e.must(err)
	if !r.Attr.IsRegular() {
		t.Fatalf("mknod with no type made %#o", r.Attr.Mode)
	}
	l, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: r.Attr.Ino})
	e.must(err)
	if len(l.Layout.Components) != 1 || len(l.Layout.Components[0].Objects) != 1 {
		t.Fatalf("mknod regular file layout %+v", l.Layout)
	}
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: r.Attr.Ino, Flags: syscall.O_RDONLY})
	e.must(err)
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: pub.Ino, Flags: syscall.O_RDONLY})
	wantErrno(t, err, syscall.EISDIR)
}
