package tests

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is one strata process of a crashCluster, restartable with the
// same arguments (same address, same directories).
type daemon struct {
	name string
	args []string
	log  string
	addr string       // the address it listens on; "" for the mount client
	mnt  string       // the mount point, for the mount client
	proc *spawnedProc // the running (or last) process
}

// pid is the process's id, or 0 before the first start.
func (d *daemon) pid() int {
	if d.proc == nil {
		return 0
	}
	return d.proc.pid
}

// done is closed once the process has been reaped.
func (d *daemon) done() <-chan struct{} { return d.proc.done }

// crashCluster runs a filesystem's daemons as separate processes (not
// strata up) so that a test can kill -9 any one of them and start it again
// on the same address and directories: an MDS over an embedded store, OSSes
// with one OST each, and a FUSE client. They are children of a spawner
// (crashspawn_test.go), not of the test process.
type crashCluster struct {
	t      *testing.T
	dir    string
	secret string
	spawn  *spawner
	mds    *daemon
	oss    []*daemon
	client *daemon
}

// startCrashCluster formats a filesystem in dir, starts the MDS and nOSS
// OSSes, and mounts it at dir/mnt once every OST is active.
func startCrashCluster(t *testing.T, dir string, nOSS int) *crashCluster {
	t.Helper()
	requireFUSE(t)
	c := &crashCluster{t: t, dir: dir, secret: filepath.Join(dir, "secret")}
	var err error
	if c.spawn, err = startSpawner(); err != nil {
		t.Fatalf("start the spawner: %v", err)
	}
	t.Cleanup(c.stopAll)
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.secret, []byte(hex.EncodeToString(raw[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	kv := "embedded:" + filepath.Join(dir, "kv")
	mustStrata(t, "format", "--kv", kv, "--fsname", "strata")
	c.mds = c.newDaemon("mds", freeLoopbackAddr(t), "", "mds", "--kv", kv, "--mdt", "0")
	c.mustStart(c.mds)
	for i := 0; i < nOSS; i++ {
		d := c.newDaemon(fmt.Sprintf("oss%d", i), freeLoopbackAddr(t), "", "oss", "--mds", c.mds.addr,
			"--ost", filepath.Join(dir, fmt.Sprintf("ost%d", i)))
		c.oss = append(c.oss, d)
		c.mustStart(d)
	}
	mnt := filepath.Join(dir, "mnt")
	c.client = c.newDaemon("mount", "", mnt, "mount", "--foreground", "--secret-file", c.secret, c.mds.addr+":/strata", mnt)
	c.mustStart(c.client)
	c.waitOSTsActive(nOSS, time.Minute)
	return c
}

// newDaemon describes a daemon; servers get --listen addr and the secret.
func (c *crashCluster) newDaemon(name, addr, mnt string, args ...string) *daemon {
	if addr != "" {
		args = append(args, "--listen", addr, "--secret-file", c.secret)
	}
	return &daemon{name: name, args: args, addr: addr, mnt: mnt, log: filepath.Join(c.dir, "logs", name+".log")}
}

// freeLoopbackAddr picks a free loopback port. The daemon keeps it across
// restarts.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mustStart starts d and waits until it serves.
func (c *crashCluster) mustStart(d *daemon) {
	c.t.Helper()
	if err := c.start(d); err != nil {
		c.t.Fatal(err)
	}
}

// start runs d through the spawner, its output appended to its log, and
// waits until it listens (a server) or is mounted (the client).
func (c *crashCluster) start(d *daemon) error {
	if err := appendLine(d.log, fmt.Sprintf("=== %s start: %s", time.Now().Format(time.RFC3339Nano), strings.Join(d.args, " "))); err != nil {
		return err
	}
	p, err := c.spawn.start(append([]string{strataBin}, d.args...), d.log)
	if err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	d.proc = p
	ready := func() bool {
		if d.mnt != "" {
			return isMountPoint(d.mnt)
		}
		conn, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during startup (%s); log %s:\n%s", d.name, p.status, d.log, tail(d.log, 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.done
			return fmt.Errorf("%s not serving a minute after start (killed); log %s", d.name, d.log)
		}
	}
	return nil
}

// appendLine appends a line to a log file.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// kill9 sends SIGKILL to d and waits until it is reaped. A killed client
// leaves its mount dead (ENOTCONN) until detach.
func (c *crashCluster) kill9(d *daemon) {
	c.t.Helper()
	if pid := d.pid(); pid != 0 {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			c.t.Fatalf("kill -9 %s (pid %d): %v", d.name, pid, err)
		}
	}
	select {
	case <-d.done():
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s (pid %d) not reaped 30s after SIGKILL", d.name, d.pid())
	}
}

// detach lazily unmounts the dead mount of a killed client, so that it can
// be mounted again.
func (c *crashCluster) detach(d *daemon) {
	c.t.Helper()
	if d.mnt != "" && isMountPoint(d.mnt) {
		if out, err := exec.Command("fusermount3", "-uz", d.mnt).CombinedOutput(); err != nil {
			c.t.Fatalf("fusermount3 -uz %s: %v: %s", d.mnt, err, out)
		}
	}
}

// alive reports whether d is running.
func (d *daemon) alive() bool {
	if d.proc == nil {
		return false
	}
	select {
	case <-d.proc.done:
		return false
	default:
		return true
	}
}

// stopAll unmounts the client and stops every daemon by its pid: SIGTERM,
// then SIGKILL after ten seconds; then the spawner.
func (c *crashCluster) stopAll() {
	if c.client != nil && isMountPoint(c.client.mnt) {
		if err := exec.Command("fusermount3", "-u", c.client.mnt).Run(); err != nil {
			_ = exec.Command("fusermount3", "-uz", c.client.mnt).Run()
		}
	}
	all := append([]*daemon{c.client}, c.oss...)
	all = append(all, c.mds)
	for _, d := range all {
		if d == nil || !d.alive() {
			continue
		}
		_ = syscall.Kill(d.pid(), syscall.SIGTERM)
		select {
		case <-d.done():
		case <-time.After(10 * time.Second):
			c.t.Errorf("%s (pid %d) ignored SIGTERM for 10s; killing it", d.name, d.pid())
			_ = syscall.Kill(d.pid(), syscall.SIGKILL)
			<-d.done()
		}
	}
	c.spawn.close()
}

// waitOSTsActive polls strata osts until n OSTs are active.
func (c *crashCluster) waitOSTsActive(n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := strata(c.t, "osts", "--json", c.client.mnt)
		var doc struct {
			OSTs []struct {
				Active bool `json:"active"`
			} `json:"osts"`
		}
		active := 0
		if err == nil && json.Unmarshal([]byte(out), &doc) == nil {
			for _, o := range doc.OSTs {
				if o.Active {
					active++
				}
			}
		}
		if active >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d OSTs active after %v (last: %v %s)", active, n, timeout, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountVerifier mounts a fresh client at a new mount point, for a check
// that no cache of the workload's client may answer, and returns it with
// the function that unmounts it.
func (c *crashCluster) mountVerifier(name string) (string, func(), error) {
	mnt := filepath.Join(c.dir, name)
	d := c.newDaemon(name, "", mnt, "mount", "--foreground", "--secret-file", c.secret, c.mds.addr+":/strata", mnt)
	if err := c.start(d); err != nil {
		return "", nil, err
	}
	return mnt, func() {
		if err := exec.Command("fusermount3", "-u", mnt).Run(); err != nil {
			_ = exec.Command("fusermount3", "-uz", mnt).Run()
		}
		select {
		case <-d.done():
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(d.pid(), syscall.SIGKILL)
			<-d.done()
		}
	}, nil
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
