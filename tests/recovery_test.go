package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestServersRestartUnderLoad kills -9 the MDS and then an OSS of a running
// "strata up" while a loop writes and fsyncs files through the mount, as a
// site's crashed server would: up restarts them, and the applications see
// nothing but a pause. Every fsync'd byte reads back, a file unlinked while
// open keeps its data, a size written before a restart is the size after
// it, and an fcntl lock held across the restarts is still held.
func TestServersRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts servers")
	}
	base, err := os.MkdirTemp("", "strata-recovery-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	c := startCluster(t, base, 2)
	dir := filepath.Join(c.mnt, "work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// State that must survive: an open-unlinked file, a sized file, a lock.
	unlinked := filepath.Join(dir, "unlinked")
	uf, err := os.OpenFile(unlinked, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer uf.Close()
	payload := bytes.Repeat([]byte("keep me "), 5000)
	if _, err := uf.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := uf.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(unlinked); err != nil {
		t.Fatal(err)
	}
	sized := filepath.Join(dir, "sized")
	if err := os.WriteFile(sized, make([]byte, 123457), 0o644); err != nil {
		t.Fatal(err)
	}
	holder := startLocker(t, "holder")
	lockFile := filepath.Join(dir, "locked")
	holder.want("open a "+lockFile, "ok")
	holder.want("setlk a w 0 100", "ok")

	// The workload: create, write, fsync; only what fsync acknowledged
	// counts.
	var mu sync.Mutex
	acked := map[string][]byte{}
	var loopErr error
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(dir, fmt.Sprintf("f%05d", i))
			data := bytes.Repeat([]byte(fmt.Sprintf("%d,", i)), 300)
			if err := writeSynced(p, data); err != nil {
				mu.Lock()
				loopErr = fmt.Errorf("%s: %w", p, err)
				mu.Unlock()
				return
			}
			mu.Lock()
			acked[p] = data
			mu.Unlock()
		}
	}()
	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitProgress := func(n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for progress() < n {
			mu.Lock()
			err := loopErr
			mu.Unlock()
			if err != nil {
				t.Fatalf("the write loop failed: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the write loop is stuck at %d files", progress())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitProgress(20)
	for _, victim := range []string{"mds --kv", "oss --mds"} {
		pid := childPID(t, c, victim)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed, at := time.Now(), progress()
		t.Logf("killed %s (pid %d) at %d files", victim, pid, at)
		waitNewChild(t, c, victim, pid)
		waitProgress(at + 5)
		t.Logf("the write loop had 5 more files fsync'd %v after the kill", time.Since(killed).Round(time.Millisecond))
		waitProgress(progress() + 30)
	}
	close(stop)
	<-done
	if loopErr != nil {
		t.Fatalf("the write loop saw an error: %v", loopErr)
	}

	mu.Lock()
	defer mu.Unlock()
	for p, want := range acked {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after the restarts: %d bytes, %v", p, len(got), err)
		}
	}
	got := make([]byte, len(payload))
	if n, err := uf.ReadAt(got, 0); err != nil || n != len(payload) || !bytes.Equal(got, payload) {
		t.Fatalf("open-unlinked file after the restarts: %d bytes, %v", n, err)
	}
	if fi, err := os.Stat(sized); err != nil || fi.Size() != 123457 {
		t.Fatalf("sized file after the restarts: %v %v", fi, err)
	}
	other := startLocker(t, "other")
	other.want("open b "+lockFile, "ok")
	other.want("setlk b w 50 10", "EAGAIN")
	t.Logf("%d files written and verified across an MDS and an OSS restart", len(acked))
}

// writeSynced creates path with data and fsyncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// upChildren lists the pids of the children of strata up's process.
func upChildren(c *cluster) []int {
	pid := c.cmd.Process.Pid
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// childPID finds the child of strata up whose command line holds what.
// It looks only at up's own children: reading the command line of an
// unrelated process can block behind a dead mount.
func childPID(t *testing.T, c *cluster, what string) int {
	t.Helper()
	for _, pid := range upChildren(c) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}), []byte(what)) {
			return pid
		}
	}
	t.Fatalf("strata up has no %q child", what)
	return 0
}

// waitNewChild waits until up has restarted the child it lost (pid old).
func waitNewChild(t *testing.T, c *cluster, what string, old int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range upChildren(c) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if pid != old && bytes.Contains(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}), []byte(what)) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("up did not restart %s", what)
}
