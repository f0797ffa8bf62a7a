package tests

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wantTouched fails unless path's mtime moved from past to about now and
// its ctime moved past ctime0.
func wantTouched(t *testing.T, what, path string, ctime0 time.Time) {
	t.Helper()
	st := lstat(t, path)
	if m := mtimeOf(st); m.Equal(past) {
		t.Errorf("%s: mtime of %s unchanged", what, filepath.Base(path))
	} else {
		wantRecent(t, what+": mtime", m)
	}
	if c := ctimeOf(st); !c.After(ctime0) {
		t.Errorf("%s: ctime of %s = %v, want after %v", what, filepath.Base(path), c, ctime0)
	}
}

// aged sets path's times to past and returns its ctime after that.
func aged(t *testing.T, path string) time.Time {
	t.Helper()
	setPast(t, path)
	c := ctimeOf(lstat(t, path))
	tick()
	return c
}

var timeCases = []posixCase{
	{"directory mtime and ctime on create, unlink and rename", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		dir := filepath.Join(d, "dir")
		mkdir(t, dir)
		c0 := aged(t, dir)
		write(t, filepath.Join(dir, "f"), "x")
		wantTouched(t, "create", dir, c0)
		c0 = aged(t, dir)
		mkdir(t, filepath.Join(dir, "sub"))
		wantTouched(t, "mkdir", dir, c0)
		c0 = aged(t, dir)
		if err := os.Remove(filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		}
		wantTouched(t, "unlink", dir, c0)
		other := filepath.Join(d, "other")
		mkdir(t, other)
		c0 = aged(t, dir)
		c1 := aged(t, other)
		if err := os.Rename(filepath.Join(dir, "sub"), filepath.Join(other, "sub")); err != nil {
			t.Fatal(err)
		}
		wantTouched(t, "rename out of", dir, c0)
		wantTouched(t, "rename into", other, c1)
		c0 = aged(t, dir)
		if err := os.Symlink("t", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		wantTouched(t, "symlink", dir, c0)
	}},
	{"chmod, chown and link change ctime, not mtime", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		write(t, f, "x")
		steps := []struct {
			what string
			do   func() error
		}{
			{"chmod", func() error { return os.Chmod(f, 0o600) }},
			{"chown", func() error { return os.Lchown(f, uidNobody, uidNobody) }},
			{"link", func() error { return os.Link(f, filepath.Join(d, "g")) }},
			{"xattr", func() error { return unix.Setxattr(f, "user.test", []byte("v"), 0) }},
		}
		for _, s := range steps {
			c0 := aged(t, f)
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.what, err)
			}
			st := lstat(t, f)
			if !mtimeOf(st).Equal(past) {
				t.Errorf("%s changed mtime to %v", s.what, mtimeOf(st))
			}
			if !ctimeOf(st).After(c0) {
				t.Errorf("%s left ctime at %v", s.what, ctimeOf(st))
			}
		}
	}},
	{"write changes mtime and ctime", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		write(t, f, "x")
		c0 := aged(t, f)
		fh, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte("written"), 100); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		wantTouched(t, "write", f, c0)
		wantTouched(t, "write, seen by the second client", filepath.Join(d2, "f"), c0)
		// Reading changes neither.
		st0 := lstat(t, f)
		tick()
		readFile(t, f)
		readFile(t, filepath.Join(d2, "f"))
		if st := lstat(t, f); st.Mtim != st0.Mtim || st.Ctim != st0.Ctim {
			t.Errorf("read changed mtime or ctime")
		}
	}},
	{"truncate changes mtime and ctime", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		write(t, f, "some data")
		c0 := aged(t, f)
		if err := os.Truncate(f, 3); err != nil {
			t.Fatal(err)
		}
		wantTouched(t, "truncate", f, c0)
		c0 = aged(t, f)
		fh, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(5000); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		wantTouched(t, "ftruncate", f, c0)
	}},
	{"utimensat with UTIME_NOW and UTIME_OMIT", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		write(t, f, "x")
		at := time.Date(2010, 1, 2, 3, 4, 5, 123456789, time.UTC)
		mt := time.Date(2011, 6, 7, 8, 9, 10, 987654321, time.UTC)
		set := func(a, m unix.Timespec) {
			t.Helper()
			if err := retryEINTR(func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, f, []unix.Timespec{a, m}, 0) }); err != nil {
				t.Fatalf("utimensat: %v", err)
			}
		}
		// POSIX lets a filesystem round down to its resolution; Strata
		// keeps at least microseconds.
		near := func(what string, got, want time.Time) {
			t.Helper()
			if d := want.Sub(got); d < 0 || d >= time.Microsecond {
				t.Errorf("%s = %v, want %v", what, got, want)
			}
		}
		c0 := ctimeOf(lstat(t, f))
		tick()
		set(unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano()))
		st := lstat(t, f)
		near("atime", atimeOf(st), at)
		near("mtime", mtimeOf(st), mt)
		if !ctimeOf(st).After(c0) {
			t.Errorf("utimensat did not change ctime")
		}
		st2 := lstat(t, filepath.Join(d2, "f"))
		near("atime on the second client", atimeOf(st2), at)
		near("mtime on the second client", mtimeOf(st2), mt)

		set(unix.Timespec{Nsec: unix.UTIME_OMIT}, unix.Timespec{Nsec: unix.UTIME_NOW})
		st = lstat(t, f)
		near("atime after UTIME_OMIT", atimeOf(st), at)
		wantRecent(t, "mtime after UTIME_NOW", mtimeOf(st))

		set(unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano()))
		set(unix.Timespec{Nsec: unix.UTIME_NOW}, unix.Timespec{Nsec: unix.UTIME_OMIT})
		st = lstat(t, f)
		wantRecent(t, "atime after UTIME_NOW", atimeOf(st))
		near("mtime after UTIME_OMIT", mtimeOf(st), mt)

		// On a symlink itself, leaving its target alone.
		link := filepath.Join(d, "link")
		if err := os.Symlink("f", link); err != nil {
			t.Fatal(err)
		}
		before := lstat(t, f)
		ts := unix.NsecToTimespec(mt.UnixNano())
		if err := retryEINTR(func() error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, link, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			t.Fatalf("utimensat AT_SYMLINK_NOFOLLOW: %v", err)
		}
		near("symlink mtime", mtimeOf(lstat(t, link)), mt)
		if st := lstat(t, f); st.Mtim != before.Mtim {
			t.Errorf("utimensat on the symlink changed its target")
		}
	}},
}
