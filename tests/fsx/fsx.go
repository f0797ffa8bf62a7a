// Package fsx is a seeded random-operation exerciser of one file, in the
// manner of fsx from the Linux Test Project: it performs reads, writes,
// mapped reads and writes, truncates, fallocate, copy_file_range,
// close/reopen and fsync on a real file (on a Strata mount, in the
// end-to-end tests), keeps a model of what the file must hold, and checks
// the file's size and contents against the model after every step,
// optionally also through a second client of the same filesystem. A
// mismatch is reported with the seed, the step and the steps before it, so
// that the same seed replays it.
//
// It is test infrastructure: it knows nothing of Strata and runs on any
// POSIX filesystem (its own tests run it on the local disk). It is not a
// benchmark, and it does not run operations concurrently.
package fsx

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Features that Config.AllowMissing may name.
const (
	// FeatureFallocate covers every fallocate(2) mode, each found absent
	// on its own.
	FeatureFallocate = "fallocate"
	// FeatureCopyFileRange lets copy_file_range fail with EOPNOTSUPP,
	// EXDEV or ENOSYS; the engine then copies with pread and pwrite, as
	// cp(1) does.
	FeatureCopyFileRange = "copy_file_range"
)

// Config says what to exercise and how.
type Config struct {
	// Seed selects the sequence of operations.
	Seed int64
	// Ops is the number of steps.
	Ops int
	// Path is the file under test; it is created or truncated. Each
	// Recreate unlinks the current file and creates the next, Path.1,
	// Path.2 and so on.
	Path string
	// SourcePath is the file copy_file_range copies from; it is created
	// with SourceSize seeded random bytes and never changed.
	SourcePath string
	// SourceSize is the source file's size; 0 means 256 KiB.
	SourceSize int64
	// MaxSize bounds the offsets of writes and the sizes of truncates;
	// 0 means 1 MiB.
	MaxSize int64
	// MaxIO bounds the length of one operation; 0 means 128 KiB.
	MaxIO int64
	// StripeSize, when set, makes a third of the offsets fall near a
	// multiple of it, so that operations cross stripe boundaries.
	StripeSize int64
	// Peer, when set, is Path seen through another client (the engine
	// follows it to Peer.1 and so on as it does Path).
	Peer string
	// PeerEveryStep makes the peer check the file after every step (what
	// strict consistency promises); otherwise it checks after each close
	// and fsync of the writer (close-to-open).
	PeerEveryStep bool
	// AllowMissing names features (FeatureFallocate,
	// FeatureCopyFileRange) whose EOPNOTSUPP is taken as "not
	// implemented" rather than as a failure.
	AllowMissing []string
	// FullCheckEvery is how often (in steps) the whole file is compared;
	// other steps compare the range they touched, the end of the file and
	// a random window. 0 means 32.
	FullCheckEvery int
	// History is how many steps a failure report lists; 0 means 32.
	History int
	// StepTimeout is how long one step may take before OnStall is told;
	// 0 means two minutes.
	StepTimeout time.Duration
	// OnStall, when set, is called (on another goroutine) with a message
	// when a step exceeds StepTimeout. It should make the blocked system
	// call return, e.g. by aborting the FUSE connection; the step then
	// fails and Run returns its report.
	OnStall func(msg string)
	// Replay, when set, says in a failure report how to run this seed
	// again up to the failing step.
	Replay func(step int) string
	// Progress, when set, is called every ProgressEvery steps.
	Progress func(Stats)
	// ProgressEvery defaults to 100000 steps.
	ProgressEvery int
}

// Stats counts what a run did.
type Stats struct {
	Steps        int
	PerKind      [numKinds]int
	Absent       []string // features found missing (allowed)
	BytesChecked int64    // bytes compared against the model, by all clients
	PeerChecks   int
	Elapsed      time.Duration
}

// String summarizes the run in one line.
func (s Stats) String() string {
	out := fmt.Sprintf("%d steps in %v (", s.Steps, s.Elapsed.Round(time.Millisecond))
	for k := Kind(0); k < numKinds; k++ {
		if k > 0 {
			out += " "
		}
		out += fmt.Sprintf("%s %d", k, s.PerKind[k])
	}
	out += fmt.Sprintf("), %d MiB checked, %d peer checks", s.BytesChecked>>20, s.PeerChecks)
	if len(s.Absent) > 0 {
		out += fmt.Sprintf(", absent: %v", s.Absent)
	}
	return out
}

// engine is one run.
type engine struct {
	cfg     Config
	gen     *generator
	checks  *rand.Rand // draws check windows; separate so checks never change the steps
	m       model
	src     []byte
	fd      int
	srcFd   int
	peerFd  int // strict peer's descriptor, or -1
	fileNo  int // how many times the file was recreated
	hist    []Op
	stats   Stats
	allowed map[string]bool
	absent  map[string]bool
	stalled atomic.Bool
}

// Run exercises cfg.Path (and its successors) for cfg.Ops steps. It returns the run's counts
// and, on the first disagreement with the model, a *Failure.
func Run(cfg Config) (Stats, error) {
	cfg.defaults()
	e := &engine{cfg: cfg, fd: -1, srcFd: -1, peerFd: -1, allowed: map[string]bool{}, absent: map[string]bool{}}
	for _, f := range cfg.AllowMissing {
		e.allowed[f] = true
	}
	e.gen = newGenerator(&e.cfg, e.isAbsent)
	e.checks = rand.New(rand.NewPCG(uint64(cfg.Seed), 0xc4ec4))
	start := time.Now()
	defer e.closeAll()
	err := e.run(start)
	e.stats.Elapsed = time.Since(start)
	for f := range e.absent {
		e.stats.Absent = append(e.stats.Absent, f)
	}
	slices.Sort(e.stats.Absent)
	return e.stats, err
}

// path is the current file under test; peerPath the same on the peer.
func (e *engine) path() string     { return numbered(e.cfg.Path, e.fileNo) }
func (e *engine) peerPath() string { return numbered(e.cfg.Peer, e.fileNo) }

// numbered is path for file 0 and path.N for file N.
func numbered(path string, n int) string {
	if n == 0 {
		return path
	}
	return fmt.Sprintf("%s.%d", path, n)
}

func (c *Config) defaults() {
	if c.SourceSize == 0 {
		c.SourceSize = 256 << 10
	}
	if c.MaxSize == 0 {
		c.MaxSize = 1 << 20
	}
	if c.MaxIO == 0 {
		c.MaxIO = 128 << 10
	}
	if c.FullCheckEvery == 0 {
		c.FullCheckEvery = 32
	}
	if c.History == 0 {
		c.History = 32
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = 2 * time.Minute
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 100000
	}
}

func (e *engine) run(start time.Time) error {
	if err := e.setup(); err != nil {
		return e.failure(&Op{Kind: Reopen, Result: "setup"}, err)
	}
	for step := 1; step <= e.cfg.Ops; step++ {
		op := e.gen.next(step, e.m.size())
		if err := e.step(&op); err != nil {
			return err
		}
		e.stats.Steps++
		e.stats.PerKind[op.Kind]++
		if e.cfg.Progress != nil && step%e.cfg.ProgressEvery == 0 {
			e.stats.Elapsed = time.Since(start)
			e.cfg.Progress(e.stats)
		}
	}
	end := Op{Step: e.cfg.Ops + 1, Kind: Reopen, Size: e.m.size(), Result: "final close"}
	err := e.check(&end, true)
	if err == nil {
		if err = closeFd(&e.fd); err != nil {
			err = fmt.Errorf("close: %w", err)
		}
	}
	if err == nil && e.cfg.Peer != "" {
		err = e.peerCheck(&end, true)
	}
	if err != nil {
		return e.failure(&end, err)
	}
	return nil
}

// step performs one operation and checks the file afterwards, both under
// the stall timer.
func (e *engine) step(op *Op) error {
	stall := time.AfterFunc(e.cfg.StepTimeout, func() {
		e.stalled.Store(true)
		if e.cfg.OnStall != nil {
			e.cfg.OnStall(fmt.Sprintf("fsx: seed %d step %d (%s) has not returned after %v", e.cfg.Seed, op.Step, op.Kind, e.cfg.StepTimeout))
		}
	})
	err := e.do(op)
	full := op.Step%e.cfg.FullCheckEvery == 0 || op.Kind == Reopen || op.Kind == Recreate
	if err == nil {
		err = e.check(op, full)
	}
	if err == nil && e.cfg.Peer != "" && (e.cfg.PeerEveryStep || op.Kind == Fsync) {
		err = e.peerCheck(op, full || !e.cfg.PeerEveryStep)
	}
	stall.Stop()
	e.record(*op)
	if err != nil {
		return e.failure(op, err)
	}
	return nil
}

// record appends op to the bounded history.
func (e *engine) record(op Op) {
	if len(e.hist) == e.cfg.History {
		copy(e.hist, e.hist[1:])
		e.hist = e.hist[:len(e.hist)-1]
	}
	e.hist = append(e.hist, op)
}

// isAbsent reports whether the generator should skip an operation because
// its feature was found missing.
func (e *engine) isAbsent(k Kind, mode uint32) bool {
	return e.absent[featureOf(k, mode)]
}

// featureOf names the feature an operation depends on, as Stats.Absent
// lists it.
func featureOf(k Kind, mode uint32) string {
	switch k {
	case Fallocate:
		return FeatureFallocate + "(" + fallocName(mode) + ")"
	case CopyFrom, CopyWithin:
		return FeatureCopyFileRange
	}
	return k.String()
}

// missing decides what an error of a feature's system call means: with the
// feature allowed to be missing, "not supported" marks it absent (the
// generator stops drawing it) and is no failure.
func (e *engine) missing(op *Op, allowName string, err error) bool {
	if !e.allowed[allowName] {
		return false
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) && !(op.Kind != Fallocate && errors.Is(err, unix.EXDEV)) {
		return false
	}
	f := featureOf(op.Kind, op.Mode)
	e.absent[f] = true
	op.Result = fmt.Sprintf("%v: %s absent (allowed)", err, f)
	return true
}

func (e *engine) closeAll() {
	for _, fd := range []*int{&e.fd, &e.srcFd, &e.peerFd} {
		_ = closeFd(fd)
	}
}

// closeFd closes *fd unless it is -1 and marks it closed.
func closeFd(fd *int) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	return err
}
