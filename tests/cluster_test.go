// Package tests holds Strata's end-to-end tests: they run the real strata
// binary (strata up, mount, setstripe, ...) as child processes on loopback
// and exercise the filesystem through real FUSE mounts, as a user would.
package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// strataBin is the binary under test: $STRATA_BIN, or one built for the run.
var strataBin string

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	defer removeHelperBin()
	strataBin = os.Getenv("STRATA_BIN")
	if strataBin == "" {
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		strataBin = filepath.Join(dir, "strata")
		build := exec.Command("go", "build", "-o", strataBin, "../tools/strata")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build strata:", err)
			return 1
		}
	}
	return m.Run()
}

// requireFUSE skips tests that need a kernel FUSE mount where none is possible.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: FUSE mounts are impossible here")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed (apt-get install fuse3)")
	}
}

// cluster is one "strata up" child process.
type cluster struct {
	t    *testing.T
	dir  string
	mnt  string
	cmd  *exec.Cmd
	done chan error
}

// startCluster runs strata up on dir and waits for its ready line.
func startCluster(t *testing.T, dir string, nOSS int, extra ...string) *cluster {
	t.Helper()
	requireFUSE(t)
	c := &cluster{t: t, dir: dir, mnt: filepath.Join(dir, "mnt"), done: make(chan error, 1)}
	args := append([]string{"up", "--dir", dir, "--oss", fmt.Sprint(nOSS), "--mount", c.mnt}, extra...)
	c.cmd = exec.Command(strataBin, args...)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("up: %s", line)
			if strings.HasPrefix(line, "ready:") {
				ready <- line
			}
		}
	}()
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(c.stop)
	select {
	case line := <-ready:
		mdts := "1"
		for i, a := range extra {
			if a == "--mds" && i+1 < len(extra) {
				mdts = extra[i+1]
			}
		}
		want := fmt.Sprintf("ready: mounted strata at %s (%d OSTs, %s MDTs)", c.mnt, nOSS, mdts)
		if line != want {
			t.Fatalf("ready line = %q, want %q", line, want)
		}
	case err := <-c.done:
		c.done <- err
		t.Fatalf("strata up exited before ready: %v (logs in %s/logs)", err, dir)
	case <-time.After(120 * time.Second):
		t.Fatalf("strata up not ready after 120s (logs in %s/logs)", dir)
	}
	return c
}

// stop sends Ctrl-C and waits for a clean exit with the mount gone.
func (c *cluster) stop() {
	if c.cmd.ProcessState != nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			c.t.Errorf("strata up exited with %v after Ctrl-C", err)
		}
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		c.t.Errorf("strata up did not stop within 60s of Ctrl-C")
	}
	if isMountPoint(c.mnt) {
		c.t.Errorf("%s still mounted after strata up stopped", c.mnt)
		_ = exec.Command("fusermount3", "-uz", c.mnt).Run()
	}
}

// isMountPoint reports whether a FUSE filesystem is mounted at path.
func isMountPoint(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// strata runs the binary and returns stdout; stderr goes into the error.
func strata(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("strata %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// mustStrata is strata that fails the test on error.
func mustStrata(t *testing.T, args ...string) string {
	t.Helper()
	out, err := strata(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mountSecond mounts another client of the cluster (with extra mount
// arguments such as "-o", "consistency=strict") and unmounts it at cleanup.
func (c *cluster) mountSecond(t *testing.T, extra ...string) string {
	t.Helper()
	mnt := t.TempDir()
	mustStrata(t, append(append([]string{"mount", "--config", filepath.Join(c.dir, "client.yaml")}, extra...), mnt)...)
	t.Cleanup(func() {
		if isMountPoint(mnt) {
			if _, err := strata(t, "umount", mnt); err != nil {
				t.Errorf("umount second client: %v", err)
				_ = exec.Command("fusermount3", "-uz", mnt).Run()
			}
		}
	})
	return mnt
}
