package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPOSIX is the POSIX conformance suite over a real mount of strata up:
// the test process acts as root, helper processes (helper_test.go) as the
// unprivileged users nobody (65534, also in group staff) and other (2002).
// One cluster serves every case; each case works in a directory of its own.
// The first mount is strata up's default (allow_other, as root) so the helpers may use it; the second is
// another client of the same filesystem, for what one client must see of
// another's work.
//
// Relaxed on purpose: atime. The suite does not require a read to update
// atime (mounts with relatime or noatime do not either); it checks that
// atime is stored as utimensat sets it and that reads change neither mtime
// nor ctime.
func TestPOSIX(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the POSIX suite runs as root: it acts as other users, chowns and makes device nodes")
	}
	e := newPosixEnv(t)
	groups := []struct {
		name  string
		cases []posixCase
	}{
		{"perm", permCases},
		{"acl", aclCases},
		{"namespace", namespaceCases},
		{"rename", renameCases},
		{"time", timeCases},
		{"io", ioCases},
		{"signals", signalCases},
		{"users", usersCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, e) })
			}
		})
	}
}

// posixCase is one scenario of the suite.
type posixCase struct {
	name string
	run  func(t *testing.T, e *posixEnv)
}

// posixEnv is the cluster the suite runs on.
type posixEnv struct {
	dir    string // strata up's state directory (OSTs in ostI)
	mnt    string // first client, allow_other
	second string // second client
}

func newPosixEnv(t *testing.T) *posixEnv {
	t.Helper()
	// Everyone must reach the mount point: t.TempDir's parent is private.
	base, err := os.MkdirTemp("", "strata-posix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	// No mount options: root's default mount must serve other users.
	c := startCluster(t, base, 2)
	return &posixEnv{dir: base, mnt: c.mnt, second: c.mountSecond(t)}
}

// workDir makes a fresh world-writable directory for the running case and
// returns its path on the first and on the second mount.
func (e *posixEnv) workDir(t *testing.T) (first, second string) {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(strings.TrimPrefix(t.Name(), "TestPOSIX/"))
	first = filepath.Join(e.mnt, name)
	if err := os.Mkdir(first, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(first, 0o777); err != nil {
		t.Fatal(err)
	}
	return first, filepath.Join(e.second, name)
}

// mkfile creates path as root with content, then sets its mode and owner.
func mkfile(t *testing.T, path string, content string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := retryEINTR(func() error { return unix.Chmod(path, uint32(mode)) }); err != nil {
		t.Fatal(err)
	}
}

// mkdirAs creates a directory as root and sets its mode and owner.
func mkdirAs(t *testing.T, path string, mode uint32, uid, gid int) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := retryEINTR(func() error { return unix.Chmod(path, mode) }); err != nil {
		t.Fatal(err)
	}
}

// retryEINTR repeats an idempotent call that failed with EINTR, as the os
// package does. The Go runtime signals its threads to preempt goroutines,
// and a FUSE daemon that honours the kernel's interrupt for a quick request
// fails it with EINTR; the "signals" case checks for that on its own, so
// the other cases are not disturbed by it.
func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

func lstat(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Lstat(path, &st) }); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return &st
}

// wantMode fails unless path's permission bits (with suid, sgid, sticky)
// are mode.
func wantMode(t *testing.T, path string, mode uint32) {
	t.Helper()
	if got := lstat(t, path).Mode & 0o7777; got != mode {
		t.Errorf("mode of %s = %#o, want %#o", filepath.Base(path), got, mode)
	}
}

// wantOwner fails unless path is owned by uid:gid.
func wantOwner(t *testing.T, path string, uid, gid uint32) {
	t.Helper()
	if st := lstat(t, path); st.Uid != uid || st.Gid != gid {
		t.Errorf("owner of %s = %d:%d, want %d:%d", filepath.Base(path), st.Uid, st.Gid, uid, gid)
	}
}

// wantErrno fails unless err is one of want, or nil when want is empty.
func wantErrno(t *testing.T, what string, err error, want ...syscall.Errno) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && slices.Contains(want, errno) {
		return
	}
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = unix.ErrnoName(w)
	}
	t.Errorf("%s: got %s, want %s", what, errName(unwrapErrno(err)), strings.Join(names, " or "))
}

// unwrapErrno digs the errno out of an *os.PathError and the like.
func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// readFile reads path and fails the test on error.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantContent fails unless path holds want, naming the first difference.
func wantContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if off, same := firstDiff(got, want); !same {
		t.Errorf("%s: %d bytes, want %d; first difference at offset %d", path, len(got), len(want), off)
	}
}

// firstDiff returns the first offset where a and b differ.
func firstDiff(a, b []byte) (int, bool) {
	if bytes.Equal(a, b) {
		return 0, true
	}
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i, false
		}
	}
	return n, false
}

// pattern is size deterministic bytes that differ with seed.
func pattern(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7+i>>9) ^ seed
	}
	return b
}

// past is a time well before the test: set with utimensat, it makes any
// update of a timestamp visible without sleeping.
var past = time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)

// setPast sets path's atime and mtime to past.
func setPast(t *testing.T, path string) {
	t.Helper()
	ts := unix.NsecToTimespec(past.UnixNano())
	err := retryEINTR(func() error {
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatalf("utimensat %s: %v", path, err)
	}
}

func mtimeOf(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Unix()) }
func ctimeOf(st *unix.Stat_t) time.Time { return time.Unix(st.Ctim.Unix()) }
func atimeOf(st *unix.Stat_t) time.Time { return time.Unix(st.Atim.Unix()) }

// wantRecent fails unless ts lies within a few seconds around now.
func wantRecent(t *testing.T, what string, ts time.Time) {
	t.Helper()
	if d := time.Since(ts); d < -2*time.Second || d > 10*time.Second {
		t.Errorf("%s = %v, want about now (%v)", what, ts, time.Now())
	}
}

// tick makes sure the clock moves on between two timestamps.
func tick() { time.Sleep(20 * time.Millisecond) }

// shellScript is an executable that prints what the "exec" helper prints on
// success.
const shellScript = "#!/bin/sh\necho ok\n"

// String names an identity in messages.
func (u cred) String() string {
	switch u.uid {
	case 0:
		return "root"
	case nobody.uid:
		return "nobody"
	case other.uid:
		return "other"
	}
	return fmt.Sprintf("uid %d", u.uid)
}
