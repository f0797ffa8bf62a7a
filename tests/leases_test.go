package tests

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKilledClientDoesNotStallChanges: a second mount caching the root
// and a file under leases is killed (kill -9). A change the dead mount
// would have been called back for goes ahead within the MDS's grace for a
// closed connection, not the whole lease term (10 s), and nobody is told
// anything stale.
func TestKilledClientDoesNotStallChanges(t *testing.T) {
	c := startCluster(t, t.TempDir(), 2)
	f := filepath.Join(c.mnt, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt, cmd, done := secondMount(t, c, nil)
	for range 3 {
		if _, err := os.Stat(filepath.Join(mnt, "f")); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	done <- nil
	start := time.Now()
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.mnt, "g"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("changes the killed mount held leases on took %v (the lease term is 10s)", took)
	}
	fi, err := os.Stat(f)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat after chmod: %v, %v", fi, err)
	}
}

// secondMount mounts c's filesystem again, as another client, and returns
// the mount point, the mount process and where its exit arrives.
func secondMount(t *testing.T, c *cluster, env []string) (string, *exec.Cmd, chan error) {
	t.Helper()
	mnt := t.TempDir()
	cmd := exec.Command(strataBin, "mount", "--foreground", "--config", filepath.Join(c.dir, "client.yaml"), mnt)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = exec.Command("fusermount3", "-uz", mnt).Run()
	})
	deadline := time.Now().Add(60 * time.Second)
	for !isMountPoint(mnt) {
		if time.Now().After(deadline) {
			t.Fatal("the second mount did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return mnt, cmd, done
}

// TestLeasesAcrossMDSRestart: a second mount caches a file's attributes
// under a lease (its kernel too, for what the lease has left) and then
// hangs (SIGSTOP), so it cannot notice anything; the MDS is killed
// (kill -9) and restarted by up. A chmod through the first mount must not
// commit while the hung mount's kernel may still show the old mode: the
// restarted MDS, which lost the lease table with its memory, waits out the
// term of every session that held leases before. Once the chmod returns,
// the second mount (resumed) shows the new mode. The term is 2 s here.
func TestLeasesAcrossMDSRestart(t *testing.T) {
	t.Setenv("STRATA_MD_LEASE", "2s")
	c := startCluster(t, t.TempDir(), 2)
	f := filepath.Join(c.mnt, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := ln.Addr().String()
	ln.Close()
	mnt, cmd, _ := secondMount(t, c, []string{"STRATA_PPROF=" + metrics})
	// Stat until the second mount holds a lease on the file (its first
	// lookups may come before its first poll registered it as leasing),
	// then once more, so that its kernel caches the attributes too.
	deadline := time.Now().Add(30 * time.Second)
	for leased := 0; leased < 2; {
		if fi, err := os.Stat(filepath.Join(mnt, "f")); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("stat on the second mount: %v, %v", fi, err)
		}
		leased = metricOf(t, metrics, "strata_client_leased_inodes")
		if time.Now().After(deadline) {
			t.Fatal("the second mount never held a lease on the file")
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "f")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	old := childPID(t, c, " mds ")
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewChild(t, c, " mds ", old)
	start := time.Now()
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("chmod after the restart took %v", time.Since(start))
	got := make(chan os.FileInfo, 1)
	go func() {
		fi, err := os.Stat(filepath.Join(mnt, "f"))
		if err != nil {
			t.Errorf("stat on the second mount: %v", err)
		}
		got <- fi
	}()
	resume()
	if fi := <-got; fi != nil && fi.Mode().Perm() != 0o600 {
		t.Fatalf("the second mount shows mode %v after a chmod through the restarted MDS returned", fi.Mode().Perm())
	}
}

// metricOf reads one unlabelled metric from a mount's /metrics at addr (0
// while the endpoint is not up yet).
func metricOf(t *testing.T, addr, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return n
		}
	}
	return 0
}
