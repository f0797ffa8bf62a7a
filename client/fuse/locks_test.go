package fuse

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
)

// twoMounts starts a cluster and mounts it twice, through two clients, as
// two client nodes would. Each mount has its own lock owners: the kernel
// derives them per connection, so one test process locking through both
// mounts is two owners.
func twoMounts(t *testing.T, cfg client.Config, opts Options) (m1, m2 string) {
	t.Helper()
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2})
	return mount(t, cl.Client(t, cfg), opts), mount(t, cl.Client(t, cfg), opts)
}

// openRW opens name for reading and writing and closes it when the test
// ends.
func openRW(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fcntlLock(f *os.File, cmd int, typ int16, start, length int64) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: length}
	return unix.FcntlFlock(f.Fd(), cmd, &lk)
}

// wantConflict accepts the two errors POSIX allows a refused F_SETLK.
func wantConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("%s: %v, want EAGAIN", what, err)
	}
}

// waitResult waits for a blocked call's result.
func waitResult(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still blocked 5s after the release", what)
	}
}

// wantBlocked checks that a call has not returned after a while.
func wantBlocked(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned %v while the lock was held", what, err)
	case <-time.After(1500 * time.Millisecond): // past one MDS wait slice
	}
}

func TestLocksAcrossMounts(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	if err := os.WriteFile(filepath.Join(m1, "f"), make([]byte, 4096), 0o666); err != nil {
		t.Fatal(err)
	}
	fa, fb := openRW(t, filepath.Join(m1, "f")), openRW(t, filepath.Join(m2, "f"))

	if err := fcntlLock(fa, unix.F_SETLK, unix.F_WRLCK, 0, 100); err != nil {
		t.Fatalf("F_SETLK: %v", err)
	}
	wantConflict(t, fcntlLock(fb, unix.F_SETLK, unix.F_WRLCK, 50, 10), "F_SETLK over the other mount's write lock")
	wantConflict(t, fcntlLock(fb, unix.F_SETLK, unix.F_RDLCK, 99, 1), "read lock over the other mount's write lock")
	if err := fcntlLock(fb, unix.F_SETLK, unix.F_WRLCK, 100, 10); err != nil {
		t.Errorf("F_SETLK beside the other mount's lock: %v", err)
	}

	// F_GETLK names the holder on the other mount, with its pid.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 10, Len: 5}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Type != unix.F_WRLCK || lk.Start != 0 || lk.Len != 100 || lk.Pid != int32(os.Getpid()) {
		t.Errorf("F_GETLK = type %d [%d, +%d) pid %d, want the write lock [0, +100) of pid %d",
			lk.Type, lk.Start, lk.Len, lk.Pid, os.Getpid())
	}
	lk = unix.Flock_t{Type: unix.F_WRLCK, Start: 200, Len: 0}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type != unix.F_UNLCK {
		t.Errorf("F_GETLK of a free range: type %d, %v, want F_UNLCK", lk.Type, err)
	}

	// F_SETLKW blocks until the other mount unlocks.
	done := make(chan error, 1)
	go func() { done <- fcntlLock(fb, unix.F_SETLKW, unix.F_WRLCK, 5, 10) }()
	wantBlocked(t, done, "F_SETLKW")
	if err := fcntlLock(fa, unix.F_SETLK, unix.F_UNLCK, 0, 100); err != nil {
		t.Fatal(err)
	}
	waitResult(t, done, "F_SETLKW after the unlock")
	wantConflict(t, fcntlLock(fa, unix.F_SETLK, unix.F_RDLCK, 7, 1), "read lock over the granted waiter's lock")

	// Closing any descriptor of the file releases the process's locks.
	other, err := os.Open(filepath.Join(m2, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fcntlLock(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Errorf("F_SETLK after the holder closed another descriptor of the file: %v", err)
	}
}

func TestFlockAcrossMounts(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	name := "g"
	if err := os.WriteFile(filepath.Join(m1, name), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	ga, gb := openRW(t, filepath.Join(m1, name)), openRW(t, filepath.Join(m2, name))
	if err := unix.Flock(int(ga.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(gb.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("exclusive flock on the other mount: %v, want EWOULDBLOCK", err)
	}
	if err := unix.Flock(int(gb.Fd()), unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("shared flock on the other mount: %v, want EWOULDBLOCK", err)
	}
	// Another open file on the same mount is another owner.
	ga2 := openRW(t, filepath.Join(m1, name))
	if err := unix.Flock(int(ga2.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("flock through a second open file: %v, want EWOULDBLOCK", err)
	}
	// flock and fcntl locks do not meet.
	if err := fcntlLock(gb, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Errorf("fcntl lock beside a flock lock: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(gb.Fd()), unix.LOCK_EX) }()
	wantBlocked(t, done, "blocking flock")
	if err := unix.Flock(int(ga.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	waitResult(t, done, "blocking flock after the unlock")
	// The last close of the open file releases its flock lock; the
	// kernel sends that release in the background.
	if err := gb.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Flock(int(ga.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			t.Fatalf("flock after the holder closed its file: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLockedWritesVisibleAcrossMounts checks that a lock orders data between
// mounts: what one mount wrote before it unlocked, the other reads once it
// has the lock, through a descriptor it opened before the write.
func TestLockedWritesVisibleAcrossMounts(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	w, r := openRW(t, filepath.Join(m1, "db")), openRW(t, filepath.Join(m2, "db"))
	if n, _ := r.ReadAt(make([]byte, 10), 0); n != 0 {
		t.Fatalf("read %d bytes of an empty file", n)
	}
	if err := fcntlLock(w, unix.F_SETLKW, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	data := random(30, 200<<10)
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := fcntlLock(w, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := fcntlLock(r, unix.F_SETLKW, unix.F_RDLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data)+1)
	if n, _ := r.ReadAt(got, 0); n != len(data) || !bytes.Equal(got[:n], data) {
		t.Errorf("reader under the lock got %d bytes, want the %d the writer wrote before unlocking", n, len(data))
	}
}
