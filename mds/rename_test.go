package mds

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

func (e *env) rename(c proto.Cred, p uint64, name string, np uint64, newName string, flags uint32) error {
	return e.s.Rename(e.ctx, &proto.RenameReq{Cred: c, Parent: p, Name: name, NewParent: np, NewName: newName, Flags: flags})
}

// wantEntry fails unless parent/name is ino.
func (e *env) wantEntry(parent uint64, name string, ino uint64) {
	e.t.Helper()
	a, err := e.lookup(root, parent, name)
	if err != nil || a.Ino != ino {
		e.t.Fatalf("%#x/%s: %v %#x, want %#x", parent, name, err, a.Ino, ino)
	}
}

// wantNoEntry fails if parent/name exists.
func (e *env) wantNoEntry(parent uint64, name string) {
	e.t.Helper()
	if _, err := e.lookup(root, parent, name); !errors.Is(err, syscall.ENOENT) {
		e.t.Fatalf("%#x/%s: %v, want ENOENT", parent, name, err)
	}
}

func testRename(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := e.mkdir(root, RootIno, "a", 0o755)
	b := e.mkdir(root, RootIno, "b", 0o755)
	f := e.create(root, a.Ino, "f", 0o644)
	g := e.create(root, a.Ino, "g", 0o644)

	// Plain renames within and across directories.
	e.must(e.rename(root, a.Ino, "f", a.Ino, "f2", 0))
	e.wantEntry(a.Ino, "f2", f.Ino)
	e.wantNoEntry(a.Ino, "f")
	e.must(e.rename(root, a.Ino, "f2", b.Ino, "f", 0))
	e.wantEntry(b.Ino, "f", f.Ino)

	// A file replaces a file; the victim's objects are queued.
	e.must(e.rename(root, b.Ino, "f", a.Ino, "g", 0))
	e.wantEntry(a.Ino, "g", f.Ino)
	if _, err := e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: g.Ino}); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("replaced file still exists: %v", err)
	}
	if e.queueLen() != 1 {
		t.Fatalf("queue %d, want 1", e.queueLen())
	}

	// Type mismatches and non-empty targets.
	d1 := e.mkdir(root, a.Ino, "d1", 0o755)
	d2 := e.mkdir(root, b.Ino, "d2", 0o755)
	e.mkdir(root, d2.Ino, "inside", 0o755)
	wantErrno(t, e.rename(root, a.Ino, "d1", a.Ino, "g", 0), syscall.ENOTDIR)
	wantErrno(t, e.rename(root, a.Ino, "g", a.Ino, "d1", 0), syscall.EISDIR)
	wantErrno(t, e.rename(root, a.Ino, "d1", b.Ino, "d2", 0), syscall.ENOTEMPTY)
	wantErrno(t, e.rename(root, a.Ino, "missing", b.Ino, "x", 0), syscall.ENOENT)
	wantErrno(t, e.rename(root, a.Ino, "g", g.Ino, "x", 0), syscall.ENOENT)
	wantErrno(t, e.rename(root, a.Ino, "g", f.Ino, "x", 0), syscall.ENOTDIR)

	// A directory replaces an empty directory across parents: link counts.
	e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: d2.Ino, Name: "inside"}))
	na, nb := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink
	e.must(e.rename(root, a.Ino, "d1", b.Ino, "d2", 0))
	e.wantEntry(b.Ino, "d2", d1.Ino)
	if _, err := e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: d2.Ino}); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("replaced directory still exists: %v", err)
	}
	if a2, b2 := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink; a2 != na-1 || b2 != nb {
		t.Fatalf("nlink a %d->%d b %d->%d", na, a2, nb, b2)
	}
	if dd, err := e.lookup(root, d1.Ino, ".."); err != nil || dd.Ino != b.Ino {
		t.Fatalf("moved directory's .. is %#x (%v), want %#x", dd.Ino, err, b.Ino)
	}
	// A directory moves to a new parent.
	na, nb = e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink
	e.must(e.rename(root, b.Ino, "d2", a.Ino, "d3", 0))
	if a2, b2 := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink; a2 != na+1 || b2 != nb-1 {
		t.Fatalf("move: nlink a %d->%d b %d->%d", na, a2, nb, b2)
	}

	// RENAME_NOREPLACE.
	e.create(root, a.Ino, "h", 0o644)
	wantErrno(t, e.rename(root, a.Ino, "g", a.Ino, "h", proto.RenameNoReplace), syscall.EEXIST)
	e.must(e.rename(root, a.Ino, "g", a.Ino, "g2", proto.RenameNoReplace))
	wantErrno(t, e.rename(root, a.Ino, "g2", a.Ino, "h", proto.RenameNoReplace|proto.RenameExchange), syscall.EINVAL)
	wantErrno(t, e.rename(root, a.Ino, "g2", a.Ino, "h", 1<<7), syscall.EINVAL)

	// Two names of one file: rename does nothing and succeeds.
	_, err := e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f.Ino, NewParent: b.Ino, Name: "same"})
	e.must(err)
	e.must(e.rename(root, a.Ino, "g2", b.Ino, "same", 0))
	e.wantEntry(a.Ino, "g2", f.Ino)
	e.wantEntry(b.Ino, "same", f.Ino)
	if n := e.getattr(f.Ino).Nlink; n != 2 {
		t.Fatalf("nlink %d after no-op rename", n)
	}
	e.must(e.rename(root, a.Ino, "g2", a.Ino, "g2", 0))
	e.wantEntry(a.Ino, "g2", f.Ino)
}

func testRenameSubtree(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := e.mkdir(root, RootIno, "a", 0o755)
	b := e.mkdir(root, a.Ino, "b", 0o755)
	c := e.mkdir(root, b.Ino, "c", 0o755)
	wantErrno(t, e.rename(root, RootIno, "a", c.Ino, "a", 0), syscall.EINVAL)
	wantErrno(t, e.rename(root, RootIno, "a", a.Ino, "x", 0), syscall.EINVAL)
	wantErrno(t, e.rename(root, a.Ino, "b", c.Ino, "b", 0), syscall.EINVAL)
	wantErrno(t, e.rename(root, RootIno, "a", c.Ino, "x", proto.RenameNoReplace), syscall.EINVAL)
	// Moving a directory up or sideways is fine.
	e.must(e.rename(root, b.Ino, "c", RootIno, "c", 0))
	e.must(e.rename(root, RootIno, "c", a.Ino, "c", 0))
	// After the move, c is no longer under b: b may go under c.
	e.must(e.rename(root, a.Ino, "b", c.Ino, "b", 0))
	if p, _ := e.lookup(root, b.Ino, ".."); p.Ino != c.Ino {
		t.Fatalf("b's parent %#x, want %#x", p.Ino, c.Ino)
	}
	wantErrno(t, e.rename(root, a.Ino, "c", b.Ino, "c", 0), syscall.EINVAL)
	// Exchange that would put a directory under itself.
	wantErrno(t, e.rename(root, RootIno, "a", b.Ino, "x", proto.RenameExchange), syscall.ENOENT)
	e.mkdir(root, b.Ino, "x", 0o755)
	wantErrno(t, e.rename(root, RootIno, "a", b.Ino, "x", proto.RenameExchange), syscall.EINVAL)
}

func testRenameExchange(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := e.mkdir(root, RootIno, "a", 0o755)
	b := e.mkdir(root, RootIno, "b", 0o755)
	f := e.create(root, a.Ino, "f", 0o644)
	d := e.mkdir(root, b.Ino, "d", 0o755)
	wantErrno(t, e.rename(root, a.Ino, "f", b.Ino, "missing", proto.RenameExchange), syscall.ENOENT)
	na, nb := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink
	e.must(e.rename(root, a.Ino, "f", b.Ino, "d", proto.RenameExchange))
	e.wantEntry(a.Ino, "f", d.Ino)
	e.wantEntry(b.Ino, "d", f.Ino)
	if a2, b2 := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink; a2 != na+1 || b2 != nb-1 {
		t.Fatalf("exchange: nlink a %d->%d b %d->%d", na, a2, nb, b2)
	}
	if p, _ := e.lookup(root, d.Ino, ".."); p.Ino != a.Ino {
		t.Fatalf("exchanged dir's parent %#x, want %#x", p.Ino, a.Ino)
	}
	// Two directories swap parents; link counts stay.
	x := e.mkdir(root, b.Ino, "x", 0o755)
	na, nb = e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink
	e.must(e.rename(root, a.Ino, "f", b.Ino, "x", proto.RenameExchange))
	if a2, b2 := e.getattr(a.Ino).Nlink, e.getattr(b.Ino).Nlink; a2 != na || b2 != nb {
		t.Fatalf("dir exchange changed nlink: a %d->%d b %d->%d", na, a2, nb, b2)
	}
	if p, _ := e.lookup(root, x.Ino, ".."); p.Ino != a.Ino {
		t.Fatalf("x's parent %#x", p.Ino)
	}
	if p, _ := e.lookup(root, d.Ino, ".."); p.Ino != b.Ino {
		t.Fatalf("d's parent %#x", p.Ino)
	}
	// Within one directory.
	g := e.create(root, a.Ino, "g", 0o644)
	e.must(e.rename(root, a.Ino, "g", a.Ino, "f", proto.RenameExchange))
	e.wantEntry(a.Ino, "f", g.Ino)
	e.wantEntry(a.Ino, "g", x.Ino)
	if e.queueLen() != 0 {
		t.Fatal("exchange destroyed something")
	}
}

// testRenameReplaceOpen replaces an open file by rename: it survives as an
// orphan until closed.
func testRenameReplaceOpen(t *testing.T, open opener) {
	e := newEnv(t, open)
	victim := e.createOpen(root, RootIno, "victim", 0o644)
	e.create(root, RootIno, "new", 0o644)
	e.must(e.rename(root, RootIno, "new", RootIno, "victim", 0))
	if a := e.getattr(victim.Attr.Ino); a.Nlink != 0 {
		t.Fatalf("open victim nlink %d", a.Nlink)
	}
	if !e.isOrphan(victim.Attr.Ino) || e.queueLen() != 0 {
		t.Fatal("open victim not kept as an orphan")
	}
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: victim.Attr.Ino, Handle: victim.Handle})
	e.must(err)
	if e.isOrphan(victim.Attr.Ino) || e.queueLen() != 1 {
		t.Fatal("last close did not destroy the orphan")
	}
}

// testConcurrentRenames moves directories around concurrently: no rename
// may create a cycle or lose a directory, and link counts stay right.
func testConcurrentRenames(t *testing.T, open opener) {
	e := newEnv(t, open)
	const n = 6
	dirs := make([]uint64, n)
	for i := range dirs {
		dirs[i] = e.mkdir(root, RootIno, fmt.Sprintf("d%d", i), 0o755).Ino
	}
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				// Move dir w under dir (w+i+1)%n, wherever both are.
				target := dirs[(w+i+1)%n]
				if target == dirs[w] {
					continue
				}
				var parent uint64
				var name string
				if err := e.s.view(e.ctx, func(t *mtx) error {
					in, err := t.inode(dirs[w])
					if err != nil {
						return err
					}
					parent, name = in.Parent, fmt.Sprintf("d%d", w)
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
				err := e.rename(root, parent, name, target, name, 0)
				if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every directory still reaches the root, and every directory's nlink
	// is 2 plus its subdirectories.
	for w, ino := range dirs {
		cur, steps := ino, 0
		for cur != RootIno {
			p, err := e.lookup(root, cur, "..")
			e.must(err)
			e.wantEntry(p.Ino, fmt.Sprintf("d%d", indexOf(dirs, cur)), cur)
			cur = p.Ino
			if steps++; steps > n+1 {
				t.Fatalf("d%d: cycle", w)
			}
		}
	}
	for _, ino := range append([]uint64{RootIno}, dirs...) {
		subdirs := 0
		r, err := e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: ino, Plus: true})
		e.must(err)
		for _, d := range r.Entries {
			if d.Attr.IsDir() {
				subdirs++
			}
		}
		if got := e.getattr(ino).Nlink; got != uint32(2+subdirs) {
			t.Fatalf("%#x: nlink %d with %d subdirectories", ino, got, subdirs)
		}
	}
}

func indexOf(s []uint64, v uint64) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// testCrossingRenames is the snapshot-isolation probe for directory moves:
// a/x moves into b/y/z while b/y moves into a/x/w. Each check of the
// ancestor chain only reads the other's directories, and the two write
// sets are disjoint, so without a key both moves write, both commit on
// TiKV and leave x and y in a cycle cut off from the root. At most one may
// succeed; the tree stays connected.
func testCrossingRenames(t *testing.T, open opener) {
	e := newEnv(t, open)
	for round := range 60 {
		a := e.mkdir(root, RootIno, fmt.Sprintf("a%d", round), 0o755).Ino
		b := e.mkdir(root, RootIno, fmt.Sprintf("b%d", round), 0o755).Ino
		x := e.mkdir(root, a, "x", 0o755).Ino
		y := e.mkdir(root, b, "y", 0o755).Ino
		w := e.mkdir(root, x, "w", 0o755).Ino
		z := e.mkdir(root, y, "z", 0o755).Ino
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, mv := range [][4]any{{a, "x", z, "x"}, {b, "y", w, "y"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = e.rename(root, mv[0].(uint64), mv[1].(string), mv[2].(uint64), mv[3].(string), 0)
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("round %d: both crossing moves succeeded", round)
		}
		for i, err := range errs {
			if err != nil && !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("round %d: move %d: %v", round, i, err)
			}
		}
		for _, d := range []uint64{x, y} {
			cur := d
			for steps := 0; cur != RootIno; steps++ {
				p, err := e.lookup(root, cur, "..")
				e.must(err)
				cur = p.Ino
				if steps > 6 {
					t.Fatalf("round %d: %#x is in a cycle cut off from the root", round, d)
				}
			}
		}
	}
}
