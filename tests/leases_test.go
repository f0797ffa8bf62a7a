package tests

import (
	"os"
	"os/exec"
	"path/filepath"
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
	mnt := t.TempDir()
	cmd := exec.Command(strataBin, "mount", "--foreground", "--config", filepath.Join(c.dir, "client.yaml"), mnt)
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
