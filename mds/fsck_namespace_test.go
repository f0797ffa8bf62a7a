package mds

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stratafs/strata/proto"
)

// TestFsckClean checks that a filesystem used normally, including an open
// file unlinked while open, gives fsck nothing to report.
func TestFsckClean(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		r := e.createOpen(root, RootIno, "open-unlinked", 0o644)
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "open-unlinked"}))
		if !e.isOrphan(r.Attr.Ino) {
			t.Fatal("unlinked open file is not an orphan")
		}
		e.mustClean()
		res := e.fsck(true)
		if len(res.findings) != 0 || res.status() != 0 {
			t.Fatalf("repairing run found %+v", res.findings)
		}
	})
}

// TestFsckUnknownCheck checks that a run naming no known check is refused.
func TestFsckUnknownCheck(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		_, err := e.s.Fsck(e.ctx, &proto.FsckReq{Checkers: []string{"link-counts", "quotas"}})
		wantErrno(t, err, 22) // EINVAL
		res := e.fsck(false, fsckLinks)
		if len(res.checked) != 1 || res.checked[fsckLinks] == 0 {
			t.Fatalf("a run of link-counts checked %v", res.checked)
		}
	})
}

// TestFsckDanglingEntry seeds an entry pointing at an inode that does not
// exist.
func TestFsckDanglingEntry(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		a, _, _ := e.populate()
		e.corrupt(func(t *mtx) error {
			return t.link(a, "ghost", &inode{Ino: makeIno(0, 9999), Mode: proto.ModeRegular})
		})
		f := e.checkSeeded(fsckDangling)
		if f.Ino != makeIno(0, 9999) || !strings.Contains(f.Problem, "ghost") {
			t.Errorf("finding %+v", f)
		}
		if _, err := e.lookup(root, a, "ghost"); err == nil {
			t.Error("the dangling entry is still there")
		}
	})
}

// TestFsckDanglingDirEntry seeds an entry of a directory that does not
// exist, with the link its parent counted for it: the repair takes the
// link back too, or the link-count check would find it next.
func TestFsckDanglingDirEntry(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		a, _, _ := e.populate()
		e.corrupt(func(t *mtx) error {
			dir, err := t.dir(a)
			if err != nil {
				return err
			}
			dir.Nlink++
			t.put(dir)
			return t.link(a, "lost-dir", &inode{Ino: makeIno(0, 9998), Mode: proto.ModeDir})
		})
		e.checkSeeded(fsckDangling)
		if got := e.getattr(a).Nlink; got != 3 {
			t.Errorf("a has %d links after the repair, want 3", got)
		}
	})
}

// TestFsckEntryInMissingDir seeds an entry in a directory that does not
// exist, pointing at nothing.
func TestFsckEntryInMissingDir(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		e.corrupt(func(t *mtx) error {
			return t.link(makeIno(0, 7777), "stale", &inode{Ino: makeIno(0, 7778), Mode: proto.ModeRegular})
		})
		f := e.checkSeeded(fsckDangling)
		if !strings.Contains(f.Problem, "not a directory that exists") {
			t.Errorf("finding %+v", f)
		}
	})
}

// TestFsckLinkCounts seeds wrong link counts on a file and a directory.
func TestFsckLinkCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		ino  func(a, f1 uint64) uint64
		want uint32
	}{
		{"file", func(_, f1 uint64) uint64 { return f1 }, 2},
		{"directory", func(a, _ uint64) uint64 { return a }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onEngines(t, func(t *testing.T, e *fsckEnv) {
				a, _, f1 := e.populate()
				ino := tc.ino(a, f1)
				e.corrupt(func(t *mtx) error {
					in, err := t.inode(ino)
					if err != nil {
						return err
					}
					in.Nlink = 7
					t.put(in)
					return nil
				})
				f := e.checkSeeded(fsckLinks)
				if f.Ino != ino || !f.Repaired {
					t.Errorf("finding %+v", f)
				}
				if got := e.getattr(ino).Nlink; got != tc.want {
					t.Errorf("%d links after the repair, want %d", got, tc.want)
				}
			})
		})
	}
}

// TestFsckLinkedInodeWithoutEntry seeds a file with a link but no entry:
// the repair gives it one in /lost+found.
func TestFsckLinkedInodeWithoutEntry(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		ino, _ := e.writeFile(RootIno, "stray", 1, 0)
		e.corrupt(func(t *mtx) error { return t.unlinkEntry(RootIno, "stray") })
		f := e.checkSeeded(fsckLinks)
		if f.Ino != ino || !strings.Contains(f.Action, lostFoundName) {
			t.Errorf("finding %+v", f)
		}
		lf, err := e.lookup(root, RootIno, lostFoundName)
		e.must(err)
		got, err := e.lookup(root, lf.Ino, fmt.Sprintf("#%x", ino))
		e.must(err)
		if got.Ino != ino || got.Nlink != 1 {
			t.Errorf("lost+found holds %+v, want inode %#x with one link", got, ino)
		}
	})
}

// TestFsckDirectoryCycle seeds what two crossing renames on an engine
// without the rename lock left: x inside y and y inside x, cut off from
// the root. The repair breaks the cycle at its smallest directory, which
// goes to /lost+found with the other below it.
func TestFsckDirectoryCycle(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		x := e.mkdir(root, RootIno, "x", 0o755).Ino
		y := e.mkdir(root, RootIno, "y", 0o755).Ino
		e.writeFile(y, "inside", 1, 0)
		e.corrupt(func(t *mtx) error {
			rootDir, err := t.dir(RootIno)
			if err != nil {
				return err
			}
			xd, err := t.dir(x)
			if err != nil {
				return err
			}
			yd, err := t.dir(y)
			if err != nil {
				return err
			}
			for _, err := range []error{t.unlinkEntry(RootIno, "x"), t.unlinkEntry(RootIno, "y"),
				t.link(y, "x", xd), t.link(x, "y", yd)} {
				if err != nil {
					return err
				}
			}
			rootDir.Nlink -= 2
			xd.Nlink++
			yd.Nlink++
			xd.Parent, yd.Parent = y, x
			t.put(rootDir)
			t.put(xd)
			t.put(yd)
			return nil
		})
		f := e.checkSeeded(fsckDirs)
		if f.Ino != min(x, y) || !strings.Contains(f.Problem, "cycle") {
			t.Errorf("finding %+v", f)
		}
		lf, err := e.lookup(root, RootIno, lostFoundName)
		e.must(err)
		if names := e.names(lf.Ino, 10); len(names) != 1 {
			t.Fatalf("lost+found holds %v", names)
		}
		if got := e.inode(y).Parent; got != x {
			t.Errorf("y's parent is %#x, want x %#x", got, x)
		}
		if got := e.inode(x).Parent; got != lf.Ino {
			t.Errorf("x's parent is %#x, want lost+found %#x", got, lf.Ino)
		}
	})
}

// TestFsckUnreachableDirectory seeds a directory whose entry is gone (with
// the link its parent had for it): it goes to /lost+found, contents and
// all.
func TestFsckUnreachableDirectory(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		a, b, _ := e.populate()
		e.corrupt(func(t *mtx) error {
			dir, err := t.dir(a)
			if err != nil {
				return err
			}
			dir.Nlink--
			t.put(dir)
			return t.unlinkEntry(a, "b")
		})
		f := e.checkSeeded(fsckDirs)
		if f.Ino != b || !strings.Contains(f.Problem, "no entry") {
			t.Errorf("finding %+v", f)
		}
		lf, err := e.lookup(root, RootIno, lostFoundName)
		e.must(err)
		if got := e.inode(b).Parent; got != lf.Ino {
			t.Errorf("b's parent is %#x, want lost+found %#x", got, lf.Ino)
		}
		if names := e.names(b, 10); len(names) != 2 {
			t.Errorf("b holds %v after the move, want its two entries", names)
		}
	})
}

// TestFsckWrongParent seeds a directory whose parent pointer names another
// directory than the one holding its entry.
func TestFsckWrongParent(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		a, b, _ := e.populate()
		e.corrupt(func(t *mtx) error {
			in, err := t.dir(b)
			if err != nil {
				return err
			}
			in.Parent = RootIno
			t.put(in)
			return nil
		})
		f := e.checkSeeded(fsckDirs)
		if f.Ino != b || !f.Repaired {
			t.Errorf("finding %+v", f)
		}
		if got := e.inode(b).Parent; got != a {
			t.Errorf("b's parent is %#x, want a %#x", got, a)
		}
	})
}
