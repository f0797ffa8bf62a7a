package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lockLease is the client lease of the lock cluster: short, so a dead
// client's locks go within a test's patience.
const lockLease = 4 * time.Second

// TestLocks checks fcntl and flock locks between processes on two mounts
// of one filesystem, which act as two client nodes: each process is a
// locker helper (locker_test.go) the test drives command by command.
func TestLocks(t *testing.T) {
	c := startCluster(t, t.TempDir(), 2, "--lease", lockLease.String())
	mounts := [2]string{c.mnt, c.mountSecond(t)}
	n := 0
	// pair creates a file and opens it as fd 0 in two new processes, A
	// through the first mount and B through the second.
	pair := func(t *testing.T) (a, b *locker, name string) {
		n++
		name = fmt.Sprintf("lockfile%d", n)
		if err := os.WriteFile(filepath.Join(mounts[0], name), make([]byte, 4096), 0o666); err != nil {
			t.Fatal(err)
		}
		a = startLocker(t, "A")
		b = startLocker(t, "B")
		a.want("open 0 "+filepath.Join(mounts[0], name), "ok")
		b.want("open 0 "+filepath.Join(mounts[1], name), "ok")
		return a, b, name
	}
	// conflict accepts the two answers POSIX allows a refused F_SETLK.
	conflict := func(t *testing.T, l *locker, command string) {
		t.Helper()
		if got := l.do(command); got != "EAGAIN" && got != "EACCES" {
			t.Fatalf("locker %s: %q = %q, want EAGAIN (or EACCES)", l.name, command, got)
		}
	}

	t.Run("F_SETLK write lock conflicts across mounts", func(t *testing.T) {
		a, b, name := pair(t)
		a.want("setlk 0 w 0 100", "ok")
		conflict(t, b, "setlk 0 w 50 10")
		conflict(t, b, "setlk 0 r 99 1")
		b.want("setlk 0 w 100 10", "ok")
		conflict(t, a, "setlk 0 w 105 1")
		// Another process on A's own mount conflicts as well.
		neighbour := startLocker(t, "C")
		neighbour.want("open 0 "+filepath.Join(mounts[0], name), "ok")
		conflict(t, neighbour, "setlk 0 w 0 1")
		a.want("setlk 0 u 0 100", "ok")
		b.want("setlk 0 w 0 10", "ok")
	})

	t.Run("F_SETLK read locks share, write conflicts", func(t *testing.T) {
		a, b, _ := pair(t)
		a.want("setlk 0 r 0 0", "ok") // length 0: to end of file and beyond
		b.want("setlk 0 r 1000 10", "ok")
		conflict(t, b, "setlk 0 w 5000 10")
		// A cannot upgrade while B reads.
		conflict(t, a, "setlk 0 w 1000 1")
		a.want("setlk 0 w 0 100", "ok")
		b.want("setlk 0 u 0 0", "ok")
		a.want("setlk 0 w 1000 1", "ok")
	})

	t.Run("F_GETLK reports the holder from the other mount", func(t *testing.T) {
		a, b, _ := pair(t)
		b.want("getlk 0 w 0 10", "unlck")
		a.want("setlk 0 w 0 100", "ok")
		b.want("getlk 0 w 10 5", fmt.Sprintf("lock w 0 100 %d", a.pid))
		b.want("getlk 0 r 99 1", fmt.Sprintf("lock w 0 100 %d", a.pid))
		b.want("getlk 0 w 200 1", "unlck")
		a.want("setlk 0 r 300 50", "ok")
		b.want("getlk 0 r 300 1", "unlck") // read locks do not conflict
		b.want("getlk 0 w 320 1", fmt.Sprintf("lock r 300 50 %d", a.pid))
	})

	t.Run("partial unlock splits a lock", func(t *testing.T) {
		a, b, _ := pair(t)
		a.want("setlk 0 w 0 100", "ok")
		a.want("setlk 0 u 40 20", "ok")
		b.want("setlk 0 w 45 5", "ok")
		conflict(t, b, "setlk 0 w 30 5")
		conflict(t, b, "setlk 0 w 60 1")
		b.want("getlk 0 w 0 40", fmt.Sprintf("lock w 0 40 %d", a.pid))
	})

	t.Run("F_SETLKW waits for the holder on the other mount", func(t *testing.T) {
		a, b, _ := pair(t)
		a.want("setlk 0 w 0 10", "ok")
		b.send("setlkw 0 w 5 10")
		b.wantBlocked("setlkw", time.Second)
		a.want("setlk 0 u 0 10", "ok")
		start := time.Now()
		if r, ok := b.reply(5 * time.Second); r != "ok" {
			t.Fatalf("blocked F_SETLKW after the unlock: %q (answered %v), want ok within 5s", r, ok)
		}
		t.Logf("granted %v after the unlock", time.Since(start).Round(time.Millisecond))
		conflict(t, a, "setlk 0 r 7 1")
	})

	t.Run("F_SETLKW interrupted by a signal is EINTR", func(t *testing.T) {
		a, b, name := pair(t)
		a.want("setlk 0 w 0 10", "ok")
		start := time.Now()
		b.send("setlkw-intr 0 w 0 10")
		r, ok := b.reply(15 * time.Second)
		if r != "EINTR" {
			t.Fatalf("interrupted F_SETLKW: %q (answered %v), want EINTR", r, ok)
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("F_SETLKW returned after %v, before any signal was sent", d)
		}
		// The abandoned request must not be granted later.
		a.want("setlk 0 u 0 10", "ok")
		time.Sleep(500 * time.Millisecond)
		later := startLocker(t, "C")
		later.want("open 0 "+filepath.Join(mounts[0], name), "ok")
		later.want("getlk 0 w 0 10", "unlck")
		later.want("setlk 0 w 0 10", "ok")
	})

	t.Run("deadlock across mounts is EDEADLK", func(t *testing.T) {
		a, b, _ := pair(t)
		a.want("setlk 0 w 0 10", "ok")
		b.want("setlk 0 w 20 10", "ok")
		a.send("setlkw 0 w 20 10")
		a.wantBlocked("setlkw", 500*time.Millisecond)
		b.send("setlkw 0 w 0 10")
		// Linux fails the request that would close the cycle; either
		// side giving up breaks the deadlock, so either passes.
		var victim, survivor *locker
		select {
		case r := <-b.replies:
			if r != "EDEADLK" {
				t.Fatalf("B's F_SETLKW closing the cycle: %q, want EDEADLK", r)
			}
			victim, survivor = b, a
		case r := <-a.replies:
			if r != "EDEADLK" {
				t.Fatalf("A's F_SETLKW in the cycle: %q, want EDEADLK", r)
			}
			victim, survivor = a, b
		case <-time.After(15 * time.Second):
			t.Fatalf("no EDEADLK within 15s: A and B wait for each other")
		}
		// The victim gives up its lock; the survivor gets it.
		start := map[*locker]string{a: "0", b: "20"}[victim]
		victim.want("setlk 0 u "+start+" 10", "ok")
		if r, ok := survivor.reply(5 * time.Second); r != "ok" {
			t.Fatalf("locker %s after the victim's unlock: %q (answered %v), want ok", survivor.name, r, ok)
		}
	})

	t.Run("lock released when the holder is killed", func(t *testing.T) {
		a, b, _ := pair(t)
		a.want("setlk 0 w 0 0", "ok")
		b.send("setlkw 0 w 0 1")
		b.wantBlocked("setlkw", 500*time.Millisecond)
		a.kill()
		if r, ok := b.reply(5 * time.Second); r != "ok" {
			t.Fatalf("F_SETLKW after the holder was killed: %q (answered %v), want ok within 5s", r, ok)
		}
	})

	t.Run("close of any fd releases the process's locks", func(t *testing.T) {
		a, b, name := pair(t)
		a.want("open 1 "+filepath.Join(mounts[0], name), "ok")
		a.want("setlk 0 w 0 10", "ok")
		conflict(t, b, "setlk 0 w 0 10")
		a.want("close 1", "ok")
		b.want("setlk 0 w 0 10", "ok")
	})

	t.Run("flock across mounts", func(t *testing.T) {
		a, b, name := pair(t)
		a.want("flock 0 ex", "ok")
		b.want("flock 0 ex nb", "EAGAIN")
		b.want("flock 0 sh nb", "EAGAIN")
		// flock and fcntl locks are independent.
		b.want("setlk 0 w 0 10", "ok")
		b.want("setlk 0 u 0 10", "ok")
		b.send("flock 0 ex")
		b.wantBlocked("flock", time.Second)
		a.want("flock 0 un", "ok")
		if r, ok := b.reply(5 * time.Second); r != "ok" {
			t.Fatalf("blocked flock after the unlock: %q (answered %v), want ok", r, ok)
		}
		a.want("flock 0 sh nb", "EAGAIN")
		// Downgrade to shared: readers on both mounts share.
		b.want("flock 0 sh", "ok")
		a.want("flock 0 sh nb", "ok")
		reader := startLocker(t, "C")
		reader.want("open 0 "+filepath.Join(mounts[0], name), "ok")
		reader.want("flock 0 ex nb", "EAGAIN")
		reader.want("flock 0 sh nb", "ok")
		a.want("flock 0 un", "ok")
		b.want("flock 0 un", "ok")
		reader.want("flock 0 un", "ok")
		reader.want("flock 0 ex nb", "ok")
		// Exit releases a flock too; the kernel sends that release
		// after the process is gone, so A waits for it.
		reader.kill()
		a.send("flock 0 ex")
		if r, ok := a.reply(5 * time.Second); r != "ok" {
			t.Fatalf("flock after the holder was killed: %q (answered %v), want ok within 5s", r, ok)
		}
	})

	t.Run("locks of a dead client are released after its lease", func(t *testing.T) {
		third := c.mountSecond(t)
		pid := mountPID(t, third)
		name := "deadclient"
		if err := os.WriteFile(filepath.Join(mounts[0], name), []byte("x"), 0o666); err != nil {
			t.Fatal(err)
		}
		holder := startLocker(t, "holder")
		holder.want("open 0 "+filepath.Join(third, name), "ok")
		holder.want("setlk 0 w 0 0", "ok")
		holder.want("flock 0 ex", "ok")
		b := startLocker(t, "B")
		b.want("open 0 "+filepath.Join(mounts[1], name), "ok")
		conflict(t, b, "setlk 0 w 0 1")
		t.Cleanup(holder.kill)
		// The client dies with its process still holding the file open.
		// Its mount is detached at once: a dead mount fails every tool
		// that lists mounts, strata df included.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill mount process %d: %v", pid, err)
		}
		killed := time.Now()
		if out, err := exec.Command("fusermount3", "-uz", third).CombinedOutput(); err != nil {
			t.Errorf("fusermount3 -uz %s: %v: %s", third, err, out)
		}
		deadline := killed.Add(lockLease + 11*time.Second)
		for {
			r := b.do("setlk 0 w 0 1")
			if r == "ok" {
				break
			}
			if r != "EAGAIN" && r != "EACCES" {
				t.Fatalf("F_SETLK while the holder's client is dead: %q", r)
			}
			if time.Now().After(deadline) {
				t.Fatalf("lock of a client killed %v ago (lease %v) still held", time.Since(killed).Round(time.Second), lockLease)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("fcntl lock released %v after the client died", time.Since(killed).Round(100*time.Millisecond))
		b.send("flock 0 ex")
		if r, ok := b.reply(5 * time.Second); r != "ok" {
			t.Fatalf("flock held by the dead client: %q (answered %v), want ok within 5s of its fcntl lock", r, ok)
		}
	})
}

// mountPID finds the process serving the background mount at mnt: the
// "strata mount ... --foreground" child that strata mount left running.
func mountPID(t *testing.T, mnt string) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != filepath.Base(strataBin) || args[1] != "mount" {
			continue
		}
		hasMnt, fg := false, false
		for _, a := range args[2:] {
			hasMnt = hasMnt || a == mnt
			fg = fg || a == "--foreground"
		}
		if hasMnt && fg {
			pid, err := strconv.Atoi(strings.Split(p, "/")[2])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	out, _ := exec.Command("ps", "-eo", "pid,args").Output()
	t.Fatalf("no strata mount process for %s among:\n%s", mnt, bytes.TrimSpace(out))
	return 0
}
