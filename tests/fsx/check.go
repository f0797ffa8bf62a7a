package fsx

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// margin is how far around the touched range a sampled check reads.
const margin = 4096

// window is a byte range to compare.
type window struct{ off, n int64 }

// mismatch is the file disagreeing with the model (as opposed to a system
// call failing).
type mismatch struct {
	reason string
	detail string
}

func (m *mismatch) Error() string { return m.reason }

// Failure is a run's first disagreement with the model, or a system call
// that failed where it must not. Error() is the whole report.
type Failure struct {
	Seed    int64
	Step    int
	Op      Op
	Reason  string
	Detail  string
	History []Op
	Replay  string
}

// Error prints the report: what went wrong, the steps before it, and how to
// replay it.
func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fsx: seed %d step %d: %s\n  at: %s\n", f.Seed, f.Step, f.Reason, f.Op)
	if f.Detail != "" {
		b.WriteString(f.Detail)
	}
	fmt.Fprintf(&b, "last %d steps:\n", len(f.History))
	for _, op := range f.History {
		fmt.Fprintf(&b, "  %s\n", op)
	}
	if f.Replay != "" {
		fmt.Fprintf(&b, "replay: %s\n", f.Replay)
	}
	return b.String()
}

// failure turns an error of op into the run's *Failure.
func (e *engine) failure(op *Op, err error) error {
	f := &Failure{Seed: e.cfg.Seed, Step: op.Step, Op: *op, Reason: err.Error()}
	if e.cfg.Replay != nil {
		f.Replay = e.cfg.Replay(max(1, min(op.Step, e.cfg.Ops)))
	}
	var mm *mismatch
	if errors.As(err, &mm) {
		f.Reason, f.Detail = mm.reason, mm.detail
	}
	if e.stalled.Load() {
		f.Reason += " (a step stalled and was aborted)"
	}
	f.History = append(f.History, e.hist...)
	return f
}

// check compares the writer's view with the model: the size from fstat,
// and the whole file or the windows the step makes interesting.
func (e *engine) check(op *Op, full bool) error {
	return e.compareFd(e.fd, "writer", e.windows(op, full))
}

// peerCheck compares the second client's view. With PeerEveryStep it
// reads through the descriptor it keeps open; otherwise it opens the file
// afresh, as close-to-open consistency is about opens.
func (e *engine) peerCheck(op *Op, full bool) error {
	e.stats.PeerChecks++
	if e.peerFd >= 0 {
		return e.compareFd(e.peerFd, "peer", e.windows(op, full))
	}
	fd, err := openRetry(e.peerPath(), unix.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("peer open %s: %w", e.peerPath(), err)
	}
	defer unix.Close(fd)
	return e.compareFd(fd, "peer", []window{{0, e.m.size()}})
}

// windows lists what a sampled check reads after op: the range it touched
// with a margin, the last page of the file, and a random window.
func (e *engine) windows(op *Op, full bool) []window {
	size := e.m.size()
	if full || size <= 4*margin {
		return []window{{0, size}}
	}
	ws := []window{{size - margin, margin}}
	switch op.Kind {
	case Write, MapWrite, Fallocate, CopyFrom, CopyWithin:
		ws = append(ws, window{op.Off - margin, op.Len + 2*margin})
	case Truncate:
		ws = append(ws, window{min(op.Size, op.Len) - margin, 2 * margin})
	}
	off := e.checks.Int64N(size)
	ws = append(ws, window{off, min(1+e.checks.Int64N(64<<10), size-off)})
	for i := range ws {
		if ws[i].off < 0 {
			ws[i].n += ws[i].off
			ws[i].off = 0
		}
		ws[i].n = min(ws[i].n, size-ws[i].off)
	}
	return ws
}

// compareFd checks fd's size and the windows' bytes against the model.
func (e *engine) compareFd(fd int, who string, ws []window) error {
	var st unix.Stat_t
	if err := retry(func() error { return unix.Fstat(fd, &st) }); err != nil {
		return fmt.Errorf("%s fstat: %w", who, err)
	}
	if st.Size != e.m.size() {
		return &mismatch{reason: fmt.Sprintf("%s: size %#x, want %#x", who, st.Size, e.m.size())}
	}
	for _, w := range ws {
		if w.n <= 0 {
			continue
		}
		got := make([]byte, w.n)
		n, err := preadFull(fd, got, w.off)
		if err != nil {
			return fmt.Errorf("%s pread %#x +%#x: %w", who, w.off, w.n, err)
		}
		e.stats.BytesChecked += int64(n)
		want := e.m.data[w.off : w.off+w.n]
		if int64(n) != w.n {
			return &mismatch{reason: fmt.Sprintf("%s: pread %#x +%#x returned %#x bytes within the size %#x", who, w.off, w.n, n, e.m.size())}
		}
		if bad := firstDiff(got, want); bad >= 0 {
			return &mismatch{
				reason: fmt.Sprintf("%s: contents differ from the model at %#x", who, w.off+int64(bad)),
				detail: e.describe(w.off, got, want, bad),
			}
		}
	}
	return nil
}

// firstDiff is the index of the first differing byte, or -1.
func firstDiff(got, want []byte) int {
	for i := range got {
		if got[i] != want[i] {
			return i
		}
	}
	return -1
}

// describe prints the bytes around the first difference and a guess at
// where the wrong bytes came from.
func (e *engine) describe(base int64, got, want []byte, bad int) string {
	var b strings.Builder
	nbad, last := 0, bad
	for i := bad; i < len(got); i++ {
		if got[i] != want[i] {
			nbad++
			last = i
		}
	}
	fmt.Fprintf(&b, "  %d bytes differ in [%#x, %#x], window [%#x, %#x)\n", nbad, base+int64(bad), base+int64(last), base, base+int64(len(got)))
	from := bad &^ 15
	to := min(from+48, len(got))
	fmt.Fprintf(&b, "  %-10s %-48s %s\n", "offset", "expected", "got")
	for i := from; i < to; i += 16 {
		j := min(i+16, to)
		fmt.Fprintf(&b, "  %#-10x % x  % x\n", base+int64(i), want[i:j], got[i:j])
	}
	b.WriteString("  " + e.guess(base, got, want, bad) + "\n")
	return b.String()
}

// guess says which step's pattern the wrong bytes match, if they match
// one, or that they are zeros. It looks at up to 16 wrong bytes from the
// first one.
func (e *engine) guess(base int64, got, want []byte, from int) string {
	zeros, stepByte, same, seen := true, -1, true, 0
	for i := from; i < len(got) && seen < 16; i++ {
		if got[i] == want[i] {
			continue
		}
		seen++
		if got[i] != 0 {
			zeros = false
		}
		s := int(got[i] - byte((base+int64(i))%251))
		if stepByte >= 0 && s != stepByte {
			same = false
		}
		stepByte = s
	}
	switch {
	case zeros:
		return "the wrong bytes are zeros (a hole, a lost write, or a punch/zero/truncate applied where it should not be)"
	case !same:
		return "the wrong bytes match no single step's pattern (source-file data, copied data, or garbage)"
	}
	var steps []string
	for _, op := range e.hist {
		if op.Step%256 == stepByte && (op.Kind == Write || op.Kind == MapWrite) {
			steps = append(steps, fmt.Sprintf("%d", op.Step))
		}
	}
	return fmt.Sprintf("the wrong bytes match the pattern of a write at step ≡ %d (mod 256); such writes in the history: %v", stepByte, steps)
}
