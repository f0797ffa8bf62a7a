package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/proto"
)

// The HSM tests' environment: a cluster from strata up, a copytool child
// process on a posix: or s3:// backend (a versitygw started on loopback).

// hsmEnv is one cluster with its copytool.
type hsmEnv struct {
	t       *testing.T
	c       *cluster
	backend string
	env     []string // the copytool's environment (S3 settings)
	ct      *exec.Cmd
	ctDone  chan error
	ctLog   string
	archive string // the posix archive directory, or versitygw's root
}

// newHSMEnv starts a cluster of nOSS OSTs and a copytool on kind ("posix"
// or "s3"; s3 skips the test when versitygw cannot be found).
func newHSMEnv(t *testing.T, kind string, nOSS int, ctArgs ...string) *hsmEnv {
	t.Helper()
	return newHSMEnvOn(t, kind, nOSS, false, ctArgs...)
}

// newHSMEnvOn is newHSMEnv with the cluster's directory (metadata store and
// OSTs) on a filesystem of its own when ownFS, a tmpfs, so that df shows
// this cluster's usage alone (the host's disk is shared with others).
func newHSMEnvOn(t *testing.T, kind string, nOSS int, ownFS bool, ctArgs ...string) *hsmEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-hsm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &hsmEnv{t: t, ctLog: filepath.Join(dir, "copytool.log")}
	clusterDir := dir
	if ownFS {
		clusterDir = filepath.Join(dir, "cluster")
		if err := os.Mkdir(clusterDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", clusterDir, "tmpfs", 0, "size=1g"); err != nil {
			t.Skipf("no tmpfs of its own for the cluster (needs root): %v", err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(clusterDir, 0); err != nil {
				t.Errorf("unmount the cluster's tmpfs: %v", err)
			}
		})
	}
	switch kind {
	case "posix":
		e.archive = filepath.Join(dir, "archive")
		e.backend = "posix:" + e.archive
	case "s3":
		endpoint, root := startVersity(t, filepath.Join(dir, "s3"))
		e.archive = root
		e.backend = "s3://" + hsmBucket + "/archive"
		e.env = []string{"STRATA_S3_ENDPOINT=" + endpoint, "AWS_ACCESS_KEY_ID=" + s3Access, "AWS_SECRET_ACCESS_KEY=" + s3Secret,
			"AWS_REGION=us-east-1"}
	}
	e.c = startCluster(t, clusterDir, nOSS)
	e.startCopytool(ctArgs...)
	return e
}

// startCopytool runs the copytool; it is killed at cleanup.
func (e *hsmEnv) startCopytool(extra ...string) {
	e.t.Helper()
	args := append([]string{"copytool", "--config", filepath.Join(e.c.dir, "client.yaml"), "--archive", "1",
		"--backend", e.backend, "--name", "test-copytool"}, extra...)
	cmd := exec.Command(strataBin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	logf, err := os.OpenFile(e.ctLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	e.ct, e.ctDone = cmd, done
	e.t.Cleanup(func() { e.killCopytool() })
}

// killCopytool kills the copytool (kill -9: it gets no chance to tidy up).
func (e *hsmEnv) killCopytool() {
	if e.ct == nil {
		return
	}
	_ = e.ct.Process.Kill()
	<-e.ctDone
	e.ct = nil
}

// logs returns the copytool's log, for failure messages.
func (e *hsmEnv) logs() string {
	b, _ := os.ReadFile(e.ctLog)
	return string(b)
}

// strata runs the binary with the copytool's environment.
func (e *hsmEnv) strata(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("strata %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (e *hsmEnv) must(args ...string) string {
	e.t.Helper()
	out, err := e.strata(args...)
	if err != nil {
		e.t.Fatalf("%v\ncopytool log:\n%s", err, e.logs())
	}
	return out
}

// state reads a file's HSM state through the mount.
func hsmState(t *testing.T, path string) proto.HsmState {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, "user.strata.hsm", buf)
	if err != nil {
		t.Fatalf("hsm state of %s: %v", path, err)
	}
	var st proto.HsmState
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// randomFile writes size random bytes at path and returns them.
func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// sameContent fails unless path holds want.
func sameContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes read differ from the %d written", path, len(got), len(want))
	}
}

// S3 settings of the tests' versitygw.
const (
	s3Access  = "strata-test"
	s3Secret  = "strata-test-secret"
	hsmBucket = "strata"
)

// versityBin finds the versitygw binary: $VERSITYGW, PATH, or where
// tools/install-deps.sh builds it.
func versityBin() string {
	cands := []string{os.Getenv("VERSITYGW")}
	if p, err := exec.LookPath("versitygw"); err == nil {
		cands = append(cands, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, ".cache", "strata", "bin", "versitygw"), filepath.Join(home, "go", "bin", "versitygw"))
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	return ""
}

// startVersity serves root as S3 on loopback, with the bucket the tests use,
// and returns its endpoint. Without versitygw the test is skipped.
func startVersity(t *testing.T, root string) (endpoint, dir string) {
	t.Helper()
	bin := versityBin()
	if bin == "" {
		t.Skip("versitygw not found ($VERSITYGW, PATH, ~/.cache/strata/bin): run tools/install-deps.sh " +
			"(go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	if err := os.MkdirAll(filepath.Join(root, hsmBucket), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "posix", root)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr, root
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw not listening on %s: %v\n%s", addr, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dfUsed returns the OST bytes used as strata df --json reports them.
func dfUsed(t *testing.T, mnt string) uint64 {
	t.Helper()
	out := mustStrata(t, "df", "--json", mnt)
	var doc struct {
		Targets []struct {
			Kind string `json:"kind"`
			Used uint64 `json:"used"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("df --json: %v: %s", err, out)
	}
	var used uint64
	for _, tg := range doc.Targets {
		if tg.Kind == "ost" {
			used += tg.Used
		}
	}
	return used
}

// ostObjects counts the object files of inode ino on the cluster's OSTs.
func ostObjects(t *testing.T, dir string, ino uint64) int {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "ost*", "O", fmt.Sprintf("%02x", ino&0xff), fmt.Sprintf("%016x.*", ino)))
	if err != nil {
		t.Fatal(err)
	}
	return len(matches)
}

// inoOf returns a path's inode number.
func inoOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
