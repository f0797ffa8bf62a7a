package tests

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/tests/fsx"
)

// Flags of the exerciser (go test ./tests/ -run TestExerciser -args ...).
var (
	fsxSeed = flag.Int64("fsx.seed", 0, "exerciser seed for every mode (0: each mode's default, or $STRATA_FSX_SEEDS)")
	fsxOps  = flag.Int("fsx.ops", 0, "exerciser steps per run (0: 2000, or $STRATA_FSX_OPS, or 1000000 with $STRATA_SOAK)")
	// Every feature is required by default; -fsx.allow-missing=fallocate
	// runs against a build (or a kernel) without it.
	fsxAllowMissing = flag.String("fsx.allow-missing", "", "comma-separated features whose EOPNOTSUPP is no failure (fallocate, copy_file_range)")
)

// exerciserMode is one way of running the exerciser: a cluster, the
// consistency the file gets, and when the second client checks it.
type exerciserMode struct {
	name      string
	strictMnt bool // both mounts -o consistency=strict
	strictDir bool // the test directory carries user.strata.consistency=strict
	seed      int64
}

var exerciserModes = []exerciserMode{
	{name: "close-to-open", seed: 1},
	{name: "strict-dir", strictDir: true, seed: 2},
	{name: "strict-mount", strictMnt: true, seed: 3},
}

// TestExerciser runs the fsx-style exerciser (package fsx) on a striped
// file of a real mount, in close-to-open mode (the second client checks the
// file after each close and fsync of the writer), in a strict directory and
// on strict mounts (it checks after every step). The default suite runs
// 2000 steps per mode (500 with -short); make soak runs three seeds of a
// million steps, dealt over the modes. A failure prints the command that
// replays it.
func TestExerciser(t *testing.T) {
	requireFUSE(t)
	def := 2000
	if testing.Short() {
		def = 500
	}
	ops := envInt(t, "STRATA_FSX_OPS", def)
	if soak() && os.Getenv("STRATA_FSX_OPS") == "" {
		ops = 1000000
	}
	if *fsxOps > 0 {
		ops = *fsxOps
	}
	runs := exerciserRuns(t)
	clusters := map[bool]*exerciserCluster{}
	for _, r := range runs {
		if clusters[r.strictMnt] == nil {
			clusters[r.strictMnt] = newExerciserCluster(t, r.strictMnt)
		}
	}
	for _, r := range runs {
		t.Run(fmt.Sprintf("%s/seed-%d", r.name, r.seed), func(t *testing.T) {
			runExerciser(t, clusters[r.strictMnt], r, ops)
		})
	}
}

// exerciserRuns lists the runs: each mode with its default seed, or with
// -fsx.seed, or the seeds of $STRATA_FSX_SEEDS (in soak: three seeds from
// the clock) dealt over the modes in turn.
func exerciserRuns(t *testing.T) []exerciserMode {
	var seeds []int64
	if s := os.Getenv("STRATA_FSX_SEEDS"); s != "" {
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("STRATA_FSX_SEEDS=%q: %v", s, err)
			}
			seeds = append(seeds, n)
		}
	} else if soak() {
		now := time.Now().UnixNano() % 1000000
		seeds = []int64{now + 1, now + 2, now + 3}
	}
	var runs []exerciserMode
	switch {
	case *fsxSeed != 0:
		for _, m := range exerciserModes {
			m.seed = *fsxSeed
			runs = append(runs, m)
		}
	case len(seeds) > 0:
		for i, s := range seeds {
			m := exerciserModes[i%len(exerciserModes)]
			m.seed = s
			runs = append(runs, m)
		}
	default:
		runs = exerciserModes
	}
	return runs
}

// exerciserCluster is a strata up with a second client, shared by the runs
// of one mount mode.
type exerciserCluster struct {
	c      *cluster
	second string
	mnts   []string // both mounts
}

// newExerciserCluster starts strata up with four OSTs and mounts a second
// client, both strict or both close-to-open.
func newExerciserCluster(t *testing.T, strict bool) *exerciserCluster {
	var extra []string
	if strict {
		extra = []string{"-o", "consistency=strict"}
	}
	c := startCluster(t, tempDir755(t), 4, extra...)
	ec := &exerciserCluster{c: c, second: c.mountSecond(t, extra...)}
	ec.mnts = []string{c.mnt, ec.second}
	return ec
}

// runExerciser runs one seed in a fresh striped directory of c.
func runExerciser(t *testing.T, c *exerciserCluster, r exerciserMode, ops int) {
	name := fmt.Sprintf("fsx-%s-%d", r.name, r.seed)
	dir := filepath.Join(c.c.mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	count := 2 + int(uint64(r.seed)%3)
	mustStrata(t, "setstripe", "-c", strconv.Itoa(count), "-S", "64K", dir)
	if r.strictDir {
		if err := unix.Setxattr(dir, "user.strata.consistency", []byte("strict"), 0); err != nil {
			t.Fatalf("setfattr user.strata.consistency=strict: %v", err)
		}
	}
	var allow []string
	if *fsxAllowMissing != "" {
		allow = strings.Split(*fsxAllowMissing, ",")
	}
	cfg := fsx.Config{
		Seed:          r.seed,
		Ops:           ops,
		Path:          filepath.Join(dir, "file"),
		SourcePath:    filepath.Join(dir, "source"),
		StripeSize:    64 << 10,
		Peer:          filepath.Join(c.second, name, "file"),
		PeerEveryStep: r.strictMnt || r.strictDir,
		AllowMissing:  allow,
		Replay: func(step int) string {
			return fmt.Sprintf("make build && STRATA_BIN=$PWD/bin/strata go test ./tests/ -count=1 -run 'TestExerciser/%s/' -args -fsx.seed=%d -fsx.ops=%d -fsx.allow-missing=%s",
				r.name, r.seed, step, *fsxAllowMissing)
		},
		OnStall: func(msg string) {
			t.Errorf("%s; aborting the mounts", msg)
			for _, mnt := range c.mnts {
				abortMount(t, mnt)
			}
		},
		ProgressEvery: 50000,
		Progress:      func(s fsx.Stats) { t.Logf("progress: %v", s) },
	}
	t.Logf("seed %d, %d steps, %d stripes of 64K, peer checks %s", r.seed, ops, count, map[bool]string{true: "after every step", false: "after close and fsync"}[cfg.PeerEveryStep])
	st, err := fsx.Run(cfg)
	t.Logf("%v", st)
	if err != nil {
		t.Fatal(err)
	}
}

// abortMount makes every pending request of the FUSE mount at mnt fail, so
// that a call blocked on it returns: through the FUSE control filesystem
// where it is mounted, otherwise by killing the mount's serving process.
// The mount is left for its owner's cleanup to detach.
func abortMount(t *testing.T, mnt string) {
	// A stat of the hung mount would hang too: mountinfo names its device.
	if dev, ok := mountDevice(mnt); ok {
		abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", unix.Minor(dev))
		if os.WriteFile(abort, []byte("1"), 0o200) == nil {
			t.Logf("aborted %s through %s", mnt, abort)
			return
		}
	}
	for _, pid := range mountPIDs(mnt) {
		t.Logf("killing pid %d, the client serving %s", pid, mnt)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// mountDevice is the device number /proc/self/mountinfo gives the mount at
// mnt.
func mountDevice(mnt string) (uint64, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == mnt {
			var major, minor uint32
			if _, err := fmt.Sscanf(f[2], "%d:%d", &major, &minor); err == nil {
				return unix.Mkdev(major, minor), true
			}
		}
	}
	return 0, false
}

// mountPIDs lists the processes running "strata mount ... MNT": the
// client serving the mount at mnt.
func mountPIDs(mnt string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != filepath.Base(strataBin) || args[1] != "mount" {
			continue
		}
		for _, a := range args[2:] {
			if a == mnt {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}
