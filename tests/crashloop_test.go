package tests

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashLoop kills the daemons of a filesystem with SIGKILL, one at a
// time and in turn (the MDS, an OSS, the FUSE client), while a workload of
// fsync'd writes, creates, renames and unlinks runs on the mount; it starts
// the killed daemon again on the same address and directories (remounting
// a killed client) and then checks, through a freshly mounted client, that
// every acknowledged entry and byte is there and nothing acknowledged as
// removed came back. With strata fsck available it must find the
// filesystem clean after every cycle.
//
// Operations that fail while a daemon is down are not acknowledged; the
// workload repeats them (idempotently) until they succeed, and an
// operation that cannot succeed two minutes on fails the test. kill -9
// leaves the page cache intact, so this finds lost acknowledgements and
// inconsistent recovery, not missing syncs (the power-loss tests do).
//
// The default suite runs $STRATA_CRASH_CYCLES (2, or 1 with -short) cycles
// per daemon; make soak runs 100. $STRATA_CRASH_SEED replays a workload's
// sequence of operations (the timing of the kills differs from run to run).
func TestCrashLoop(t *testing.T) {
	requireFUSE(t)
	def := 2
	if testing.Short() {
		def = 1
	}
	cycles := envInt(t, "STRATA_CRASH_CYCLES", def)
	if soak() && os.Getenv("STRATA_CRASH_CYCLES") == "" {
		cycles = 100
	}
	seed := time.Now().UnixNano() % 1000000
	if s := os.Getenv("STRATA_CRASH_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_CRASH_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (STRATA_CRASH_SEED=%d replays the operations), %d kill cycles per daemon", seed, seed, cycles)

	dir := tempDir755(t)
	c := startCrashCluster(t, dir, 3)
	mnt := c.client.mnt
	for i, d := range crashDirs {
		p := filepath.Join(mnt, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		// Striped 1, 2 and 3 wide, so that most records span OSTs.
		mustStrata(t, "setstripe", "-c", strconv.Itoa(1+i), "-S", "64K", p)
		if err := fsyncPath(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsyncPath(mnt); err != nil {
		t.Fatal(err)
	}
	fsck := fsckAvailable(t)

	gate := &sync.RWMutex{}
	w := newCrashWorkload(seed, mnt, gate)
	t.Cleanup(w.abort) // before the cluster's cleanup, which runs later
	rng := rand.New(rand.NewPCG(uint64(seed), 0x4b111))
	killed := map[string]int{}
	var verified int64
	start := time.Now()
	for k := 0; k < 3*cycles; k++ {
		victim := c.mds
		switch k % 3 {
		case 1:
			victim = c.oss[(k/3)%len(c.oss)]
		case 2:
			victim = c.client
		}
		killed[victim.name]++
		verified += crashCycle(t, c, w, gate, rng, fmt.Sprintf("cycle %d (kill -9 %s)", k+1, victim.name), victim, fsck)
	}
	acked, failed := w.counts()
	w.mu.Lock()
	ackBytes := w.ackBytes
	w.mu.Unlock()
	t.Logf("%d kill cycles in %v (%v); %d operations acknowledged (%d MiB of records), %d failed attempts retried, %d MiB verified, nothing lost",
		3*cycles, time.Since(start).Round(time.Second), killed, acked, ackBytes>>20, failed, verified>>20)
}

// crashCycle runs the workload, kills victim in the middle of it, starts
// it again and verifies the acknowledged state; it returns the bytes read.
func crashCycle(t *testing.T, c *crashCluster, w *crashWorkload, gate *sync.RWMutex, rng *rand.Rand, cycle string, victim *daemon, fsck bool) int64 {
	t.Helper()
	w.start()
	acked, _ := w.counts()
	waitWorkload(t, w, cycle+": before the kill", acked+3+rng.IntN(20))
	ackedAtKill, failedAtKill := w.counts()
	killedAt := time.Now()
	c.kill9(victim)
	outage := "restarted at once"
	if rng.IntN(2) == 0 {
		outage = waitOutageFelt(w, failedAtKill)
	}
	err := func() error {
		if victim == c.client {
			// No attempt may run on the bare mount point.
			gate.Lock()
			defer gate.Unlock()
			c.detach(victim)
		}
		return c.start(victim)
	}()
	if err != nil {
		t.Fatalf("%s: restart: %v", cycle, err)
	}
	restarted := time.Since(killedAt)
	acked, _ = w.counts()
	waitWorkload(t, w, cycle+": after the restart", acked+1)
	recovered := time.Since(killedAt)
	waitWorkload(t, w, cycle+": after the restart", acked+3)
	if err := w.stop(); err != nil {
		t.Fatalf("%s: workload: %v", cycle, err)
	}
	n := verifyCrashCycle(t, c, w, cycle, fsck)
	a, f := w.counts()
	failures := fmt.Sprintf("%d failed attempts", f-failedAtKill)
	if f > failedAtKill {
		w.mu.Lock()
		failures += fmt.Sprintf(" (last: %v)", w.lastErr)
		w.mu.Unlock()
	}
	t.Logf("%s: killed after %d acknowledged operations, %s, restarted in %v, first acknowledgement %v after the kill; %s; %d operations and %d KiB verified",
		cycle, ackedAtKill, outage, restarted.Round(time.Millisecond), recovered.Round(time.Millisecond), failures, a, n>>10)
	return n
}

// waitOutageFelt prolongs an outage until the workload feels it: an
// attempt fails, or no operation is acknowledged for a second (the client
// blocks, waiting for the daemon), or five seconds pass (the operations
// did not need the daemon). It says which.
func waitOutageFelt(w *crashWorkload, failedAtKill int) string {
	start := time.Now()
	lastAcked, _ := w.counts()
	lastChange := start
	for time.Since(start) < 5*time.Second {
		a, f := w.counts()
		switch {
		case f > failedAtKill:
			return fmt.Sprintf("down until an attempt failed (%v)", time.Since(start).Round(time.Millisecond))
		case a != lastAcked:
			lastAcked, lastChange = a, time.Now()
		case time.Since(lastChange) > time.Second:
			return fmt.Sprintf("down until the workload blocked for a second (%v)", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "down for 5s, unnoticed by the workload"
}

// waitWorkload polls until the workload has acknowledged acked operations.
// It fails the test if the workload stops with an error or makes no such
// progress in three minutes.
func waitWorkload(t *testing.T, w *crashWorkload, what string, acked int) {
	t.Helper()
	timeout := 3 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		a, _ := w.counts()
		if a >= acked {
			return
		}
		select {
		case err := <-w.done:
			w.done <- err
			if err != nil {
				t.Fatalf("%s: workload: %v", what, err)
			}
			t.Fatalf("%s: workload stopped", what)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			last := w.lastErr
			w.mu.Unlock()
			t.Fatalf("%s: %d of %d operations acknowledged after %v (last failure: %v)", what, a, acked, timeout, last)
		}
	}
}

// verifyCrashCycle checks the model through a new client and runs fsck; it
// returns the bytes read.
func verifyCrashCycle(t *testing.T, c *crashCluster, w *crashWorkload, cycle string, fsck bool) int64 {
	t.Helper()
	mnt, unmount, err := c.mountVerifier("verify")
	if err != nil {
		t.Fatalf("%s: mount a verifying client: %v", cycle, err)
	}
	defer unmount()
	n, problems := w.verify(mnt)
	if len(problems) > 0 {
		acked, failed := w.counts()
		t.Fatalf("%s: acknowledged data or entries lost (%d operations acknowledged, %d failed attempts; logs in %s):\n  %s",
			cycle, acked, failed, filepath.Join(c.dir, "logs"), strings.Join(problems, "\n  "))
	}
	if fsck {
		runFsck(t, c, cycle)
	}
	return n
}

// fsckAvailable reports whether the binary has an fsck verb.
func fsckAvailable(t *testing.T) bool {
	t.Helper()
	if _, err := strata(t, "fsck", "--help"); err != nil {
		if strings.Contains(err.Error(), "unknown command") {
			t.Log("strata fsck does not exist yet: the crash loop skips the fsck check")
			return false
		}
		t.Fatalf("strata fsck --help: %v", err)
	}
	return true
}

// runFsck runs strata fsck --json against the cluster's MDS and requires
// a clean, complete check: exit status 0 and a summary with nothing found.
func runFsck(t *testing.T, c *crashCluster, cycle string) {
	t.Helper()
	out, err := strata(t, "fsck", "--json", "--mds", c.mds.addr, "--secret-file", c.secret)
	var doc struct {
		Findings []struct {
			Class   string `json:"class"`
			Ino     uint64 `json:"ino"`
			Problem string `json:"problem"`
		} `json:"findings"`
		Notes   []string `json:"notes"`
		Summary struct {
			Found    int  `json:"found"`
			Clean    bool `json:"clean"`
			Complete bool `json:"complete"`
		} `json:"summary"`
	}
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil {
		t.Fatalf("%s: fsck (%v) printed no JSON document: %v\n%s", cycle, err, jerr, out)
	}
	if err != nil || doc.Summary.Found != 0 || !doc.Summary.Clean || !doc.Summary.Complete {
		t.Fatalf("%s: fsck is not clean (%v): %+v, findings %+v, notes %q", cycle, err, doc.Summary, doc.Findings, doc.Notes)
	}
}
