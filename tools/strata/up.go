package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds"
)

// clientFile is DIR/client.yaml: everything a second client needs.
type clientFile struct {
	FSName     string   `yaml:"fsname"`
	MDS        []string `yaml:"mds"`
	SecretFile string   `yaml:"secret-file"`
}

func newUpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up [--dir DIR] [--oss N] [--mds N] [--mount MNT]",
		Short: "Run a complete local filesystem in the foreground",
		Long: `Up starts an all-in-one Strata on this machine: one MDS over an embedded
metadata store in DIR/kv, N OSS processes with one OST each (DIR/ostI), and a
FUSE mount at MNT (default DIR/mnt). It formats DIR on first use and brings
every file back when run again on the same DIR. When everything is up it
prints "ready: mounted FSNAME at MNT (N OSTs, M MDTs)" and writes
DIR/client.yaml, with which "strata mount --config DIR/client.yaml MNT2"
mounts a second client. Ctrl-C unmounts and stops every process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("up", "", err)
			}
			dir := v.GetString("dir")
			if dir == "" {
				home, _ := os.UserHomeDir()
				dir = filepath.Join(home, ".strata")
			}
			dir, err = filepath.Abs(dir)
			if err != nil {
				return fail("up", "", err)
			}
			u := &upCluster{
				dir:       dir,
				nOSS:      v.GetInt("oss"),
				nMDT:      v.GetInt("mds"),
				mnt:       v.GetString("mount"),
				fsname:    v.GetString("fsname"),
				lease:     v.GetDuration("lease"),
				mountOpts: v.GetStringSlice("options"),
			}
			if u.mnt == "" {
				u.mnt = filepath.Join(dir, "mnt")
			}
			if u.mnt, err = filepath.Abs(u.mnt); err != nil {
				return fail("up", "", err)
			}
			if u.nOSS < 1 || u.nMDT < 1 {
				return fail("up", "", errors.New("--oss and --mds must be at least 1"))
			}
			return fail("up", dir, u.run(v.GetString("stripe-count"), v.GetString("stripe-size")))
		},
	}
	f := cmd.Flags()
	f.String("dir", "", "state directory (default ~/.strata)")
	f.Int("oss", 4, "number of OSS processes (one OST each)")
	f.Int("mds", 1, "number of MDTs, each served by its own MDS server (all in one process: the embedded store belongs to it)")
	f.String("mount", "", "mount point (default DIR/mnt)")
	f.String("fsname", "strata", "filesystem name (used when formatting)")
	f.String("stripe-count", "1", "default stripe count when formatting")
	f.String("stripe-size", "1M", "default stripe size when formatting")
	f.Duration("lease", mds.DefaultLease, "client lease given to the MDS")
	f.StringArrayP("options", "o", nil, "mount options for the local mount (e.g. consistency=strict)")
	return cmd
}

// upCluster is the set of child processes of one "strata up".
type upCluster struct {
	dir, mnt, fsname string
	nOSS, nMDT       int
	lease            time.Duration
	mountOpts        []string

	mu       sync.Mutex
	children []*exec.Cmd
	args     map[string][]string // how each child was started, to restart it
	exited   chan string         // name of a child that exited
}

func (u *upCluster) run(stripeCount, stripeSize string) error {
	for _, d := range []string{u.dir, filepath.Join(u.dir, "logs"), u.mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	secretFile := filepath.Join(u.dir, "secret")
	if err := ensureSecretFile(secretFile); err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	kvURL := "embedded:" + filepath.Join(u.dir, "kv")
	ctx, stop := signalContext()
	defer stop()
	if err := u.formatOnce(ctx, kvURL, stripeCount, stripeSize); err != nil {
		return err
	}
	u.exited = make(chan string, u.nOSS+2)
	defer u.stopAll()

	// N MDTs are served by N MDS servers; they share the embedded store,
	// which belongs to one process, so one "strata mds" runs them all.
	mdts := make([]string, u.nMDT)
	mdsAddrs := make([]string, u.nMDT)
	mdsArgs := []string{"mds", "--kv", kvURL, "--secret-file", secretFile, "--lease", u.lease.String()}
	for i := range mdts {
		mdts[i] = strconv.Itoa(i)
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		mdsAddrs[i] = addr
		mdsArgs = append(mdsArgs, "--listen", addr)
	}
	mdsArgs = append(mdsArgs, "--mdt", strings.Join(mdts, ","))
	if err := u.start("mds", mdsArgs...); err != nil {
		return err
	}
	for _, a := range mdsAddrs {
		if err := waitListening(ctx, a, 30*time.Second); err != nil {
			return fmt.Errorf("mds did not start (see %s): %w", u.logPath("mds"), err)
		}
	}
	mdsAddr := strings.Join(mdsAddrs, ",")
	for i := 0; i < u.nOSS; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("oss%d", i)
		if err := u.start(name, "oss", "--mds", mdsAddr, "--ost", filepath.Join(u.dir, fmt.Sprintf("ost%d", i)),
			"--listen", addr, "--secret-file", secretFile); err != nil {
			return err
		}
	}
	cf := clientFile{FSName: u.fsname, MDS: mdsAddrs, SecretFile: secretFile}
	if err := u.waitOSTs(ctx, cf); err != nil {
		return err
	}
	if err := writeClientFile(filepath.Join(u.dir, "client.yaml"), cf); err != nil {
		return err
	}
	mountArgs := []string{"mount", "--foreground", "--config", filepath.Join(u.dir, "client.yaml")}
	for _, o := range u.mountOpts {
		mountArgs = append(mountArgs, "-o", o)
	}
	if err := u.start("mount", append(mountArgs, u.mnt)...); err != nil {
		return err
	}
	if err := waitMounted(ctx, u.mnt, u.exited, 60*time.Second); err != nil {
		return fmt.Errorf("mount failed (see %s): %w", u.logPath("mount"), err)
	}
	fmt.Printf("ready: mounted %s at %s (%d OSTs, %d MDTs)\n", u.fsname, u.mnt, u.nOSS, u.nMDT)
	if !u.allowOther() {
		fmt.Fprintln(os.Stderr, allowOtherWarning(u.mnt))
	}
	fmt.Printf("client config: %s; logs: %s; Ctrl-C stops\n", filepath.Join(u.dir, "client.yaml"), filepath.Join(u.dir, "logs"))
	return u.supervise(ctx)
}

// supervise restarts, with the arguments it was started with, every child
// that exits until ctx ends: a crashed MDS or OSS comes back on its
// address and clients ride out the outage (the mount is never torn down
// because a server died); a crashed mount is detached and mounted again.
// A child that keeps crashing is restarted at most every restartBackoff.
func (u *upCluster) supervise(ctx context.Context) error {
	const restartBackoff = 5 * time.Second
	lastStart := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping: unmounting and shutting down")
			return nil
		case name := <-u.exited:
			if ctx.Err() != nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "strata: up: %s exited unexpectedly (see %s); restarting it\n", name, u.logPath(name))
			if wait := restartBackoff - time.Since(lastStart[name]); wait > 0 && !lastStart[name].IsZero() {
				select {
				case <-ctx.Done():
					continue
				case <-time.After(wait):
				}
			}
			if name == "mount" && isMounted(u.mnt) {
				_ = unmount(u.mnt, true)
			}
			lastStart[name] = time.Now()
			u.mu.Lock()
			args := u.args[name]
			u.mu.Unlock()
			if err := u.start(name, args...); err != nil {
				return fmt.Errorf("restart %s: %w", name, err)
			}
		}
	}
}

// allowOther reports whether the local mount lets every user in: by
// default when root mounts, unless its options say otherwise.
func (u *upCluster) allowOther() bool {
	allow := os.Geteuid() == 0
	for _, o := range splitList(u.mountOpts) {
		switch o {
		case "allow_other":
			allow = true
		case "noallow_other":
			allow = false
		}
	}
	return allow
}

// formatOnce formats the store unless it already holds this filesystem.
func (u *upCluster) formatOnce(ctx context.Context, kvURL, stripeCount, stripeSize string) error {
	count, err := strconv.ParseInt(stripeCount, 10, 32)
	if err != nil {
		return fmt.Errorf("--stripe-count: %w", err)
	}
	size, err := layout.ParseSize(stripeSize)
	if err != nil {
		return fmt.Errorf("--stripe-size: %w", err)
	}
	err = mds.Format(ctx, kvURL, mds.FormatOptions{FSName: u.fsname, StripeCount: int32(count), StripeSize: size})
	if errors.Is(err, mds.ErrFormatted) {
		if cf, rerr := readClientFile(filepath.Join(u.dir, "client.yaml")); rerr == nil && cf.FSName != "" {
			u.fsname = cf.FSName
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("format: %w", err)
	}
	fmt.Printf("formatted %s in %s\n", u.fsname, kvURL)
	return nil
}

func (u *upCluster) logPath(name string) string {
	return filepath.Join(u.dir, "logs", name+".log")
}

// start runs "strata ARGS..." as a child with its output in DIR/logs/NAME.log.
func (u *upCluster) start(name string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(u.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Children get their own process group: a terminal's Ctrl-C reaches only
	// up, which stops them in order (unmount first).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	u.mu.Lock()
	u.children = append(u.children, cmd)
	if u.args == nil {
		u.args = map[string][]string{}
	}
	u.args[name] = args
	u.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		u.exited <- name
	}()
	return nil
}

// stopAll unmounts, then stops children in reverse start order.
func (u *upCluster) stopAll() {
	if isMounted(u.mnt) {
		// The mount process may be unmounting on its own (it got the same
		// signal); only a mount that is still there needs forcing.
		if err := unmount(u.mnt, false); err != nil && isMounted(u.mnt) {
			fmt.Fprintf(os.Stderr, "strata: up: %s: unmount: %v; detaching lazily\n", u.mnt, err)
			_ = unmount(u.mnt, true)
		}
	}
	u.mu.Lock()
	children := u.children
	u.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		if c.ProcessState != nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for c.ProcessState == nil && time.Now().Before(deadline) {
			if err := c.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := c.Process.Signal(syscall.Signal(0)); err == nil && time.Now().After(deadline) {
			_ = c.Process.Kill()
		}
	}
}

// waitOSTs waits until every OSS has registered and heartbeats.
func (u *upCluster) waitOSTs(ctx context.Context, cf clientFile) error {
	secret, err := os.ReadFile(cf.SecretFile)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case name := <-u.exited:
			return fmt.Errorf("%s exited during startup (see %s)", name, u.logPath(name))
		default:
		}
		active, err := countActiveOSTs(ctx, cf, secret)
		if err == nil && active >= u.nOSS {
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("OSTs did not register within 60s (last error: %v; see %s)", last, filepath.Join(u.dir, "logs"))
}

func countActiveOSTs(ctx context.Context, cf clientFile, secret []byte) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.New(cctx, client.Config{MDS: cf.MDS, FSName: cf.FSName, Secret: trimSecret(secret),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	t, err := c.Targets(cctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range t.OSTs {
		if o.Active {
			n++
		}
	}
	return n, nil
}

func trimSecret(b []byte) []byte { return []byte(strings.TrimSpace(string(b))) }

func writeClientFile(path string, cf clientFile) error {
	b, err := yaml.Marshal(cf)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readClientFile(path string) (clientFile, error) {
	var cf clientFile
	b, err := os.ReadFile(path)
	if err != nil {
		return cf, err
	}
	return cf, yaml.Unmarshal(b, &cf)
}

// freeAddr picks a free loopback TCP port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// isMounted reports whether mnt is a FUSE mount point of Strata.
func isMounted(mnt string) bool {
	mounts, _ := strataMounts()
	for _, m := range mounts {
		if m.point == mnt {
			return true
		}
	}
	return false
}

func waitMounted(ctx context.Context, mnt string, exited <-chan string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !isMounted(mnt) {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case name := <-exited:
			return fmt.Errorf("%s exited", name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// mountEntry is one Strata mount from /proc/self/mountinfo.
type mountEntry struct {
	point  string
	source string
}

// strataMounts lists mounted Strata filesystems.
func strataMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f), nil
}

func parseMountinfo(r io.Reader) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+2 >= len(fields) {
			continue
		}
		if fields[sep+1] != "fuse.strata" {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(fields[4]), source: unescapeMount(fields[sep+2])})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
