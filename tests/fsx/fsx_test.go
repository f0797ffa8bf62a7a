package fsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLocalDisk runs the engine on the local filesystem, whose behaviour
// the model copies: any failure here is the engine's own bug. A local
// filesystem may lack fallocate modes (tmpfs has no ZERO_RANGE); those are
// only logged.
func TestLocalDisk(t *testing.T) {
	dir := t.TempDir()
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	for _, seed := range []int64{1, 2, 3} {
		path := filepath.Join(dir, "f")
		st, err := Run(Config{
			Seed: seed, Ops: ops, Path: path, SourcePath: filepath.Join(dir, "src"),
			StripeSize: 64 << 10, Peer: path, PeerEveryStep: seed%2 == 0,
			AllowMissing: []string{FeatureFallocate},
		})
		if err != nil {
			t.Fatal(err)
		}
		for k := Kind(0); k < numKinds; k++ {
			if st.PerKind[k] == 0 {
				t.Errorf("seed %d: no %s in %d steps", seed, k, ops)
			}
		}
		t.Logf("seed %d: %v", seed, st)
	}
}

// TestSameSeedSameSteps checks that a seed replays: the generator draws
// the same steps for the same seed and others for another seed.
func TestSameSeedSameSteps(t *testing.T) {
	draw := func(seed int64) []Op {
		cfg := Config{Seed: seed}
		cfg.defaults()
		g := newGenerator(&cfg, func(Kind, uint32) bool { return false })
		var ops []Op
		var m model
		for step := 1; step <= 200; step++ {
			op := g.next(step, m.size())
			if op.Kind == Write || op.Kind == Truncate {
				m.truncate(max(m.size(), op.Off+op.Len))
			}
			ops = append(ops, op)
		}
		return ops
	}
	a, b, c := draw(7), draw(7), draw(8)
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7 drew %v then %v at step %d", a[i], b[i], i+1)
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Error("seeds 7 and 8 drew the same 200 steps")
	}
}

// TestReportsMismatch checks that a file changing behind the engine's back
// is caught at once, with a report naming the seed and step and the steps
// before it.
func TestReportsMismatch(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("not the file under test"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(Config{
		Seed: 42, Ops: 100, Path: filepath.Join(dir, "f"), SourcePath: filepath.Join(dir, "src"),
		Peer: other, PeerEveryStep: true, Replay: func(step int) string { return fmt.Sprintf("go test -run X -fsx.seed=42 -fsx.ops=%d", step) },
	})
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("Run = %v, want a *Failure", err)
	}
	if f.Seed != 42 || f.Step != 1 || len(f.History) != 1 || !strings.Contains(f.Reason, "peer") {
		t.Errorf("failure = seed %d step %d reason %q, %d steps of history", f.Seed, f.Step, f.Reason, len(f.History))
	}
	for _, want := range []string{"seed 42 step 1", "last 1 steps", "replay: go test -run X -fsx.seed=42 -fsx.ops=1"} {
		if !strings.Contains(f.Error(), want) {
			t.Errorf("report lacks %q:\n%s", want, f.Error())
		}
	}
}

// TestModelFallocate pins the model's fallocate semantics to Linux's.
func TestModelFallocate(t *testing.T) {
	base := func() *model { return &model{data: []byte("abcdefgh")} }
	cases := []struct {
		mode    uint32
		off, n  int64
		want    string
		comment string
	}{
		{0, 6, 4, "abcdefgh\x00\x00", "mode 0 extends with zeros"},
		{unix.FALLOC_FL_KEEP_SIZE, 6, 4, "abcdefgh", "KEEP_SIZE keeps the size"},
		{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, 2, 3, "ab\x00\x00\x00fgh", "punch zeros inside"},
		{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, 6, 9, "abcdef\x00\x00", "punch stops at the end"},
		{unix.FALLOC_FL_ZERO_RANGE, 6, 4, "abcdef\x00\x00\x00\x00", "zero range extends"},
		{unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, 6, 4, "abcdef\x00\x00", "zero range keeping the size"},
	}
	for _, c := range cases {
		m := base()
		m.fallocate(c.mode, c.off, c.n)
		if string(m.data) != c.want {
			t.Errorf("%s: %q, want %q", c.comment, m.data, c.want)
		}
	}
}

// TestGuessNamesStep checks that a report traces stale bytes to the write
// that produced them and recognizes zeros.
func TestGuessNamesStep(t *testing.T) {
	e := &engine{hist: []Op{{Step: 4, Kind: Write, Off: 0x100, Len: 8}, {Step: 9, Kind: Truncate}}}
	got := make([]byte, 32)
	want := make([]byte, 32)
	pattern(got[8:16], 4, 0x108)
	if g := e.guess(0x100, got, want, 8); !strings.Contains(g, "step ≡ 4 (mod 256)") || !strings.Contains(g, "[4]") {
		t.Errorf("guess for step 4's bytes: %s", g)
	}
	pattern(want, 9, 0x100)
	if g := e.guess(0x100, make([]byte, 32), want, 0); !strings.Contains(g, "zeros") {
		t.Errorf("guess for zeros: %s", g)
	}
}
