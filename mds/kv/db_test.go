package kv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
)

// fakeEngine fails the first conflicts commits with ErrConflict and counts
// what the DB does with its transactions.
type fakeEngine struct {
	conflicts  int
	begun      int
	committed  int
	rolledBack int
}

func (f *fakeEngine) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	f.begun++
	return &fakeTx{f: f}, nil
}
func (f *fakeEngine) Sync(context.Context) error { return nil }
func (f *fakeEngine) Close() error               { return nil }

type fakeTx struct {
	f    *fakeEngine
	done bool
}

func (x *fakeTx) Get(context.Context, []byte) ([]byte, error) { return nil, nil }
func (x *fakeTx) Scan(context.Context, []byte, []byte, int, func(k, v []byte) bool) error {
	return nil
}
func (x *fakeTx) BatchGet(_ context.Context, keys [][]byte) ([][]byte, error) {
	return make([][]byte, len(keys)), nil
}
func (x *fakeTx) Set(k, v []byte) error { return nil }
func (x *fakeTx) Delete(k []byte) error { return nil }
func (x *fakeTx) Commit(context.Context) error {
	x.done = true
	if x.f.conflicts > 0 {
		x.f.conflicts--
		return fmt.Errorf("fake: %w", kv.ErrConflict)
	}
	x.f.committed++
	return nil
}
func (x *fakeTx) Rollback() {
	if !x.done {
		x.f.rolledBack++
	}
	x.done = true
}

func TestUpdateRetriesConflicts(t *testing.T) {
	f := &fakeEngine{conflicts: 5}
	db := &kv.DB{Engine: f}
	calls := 0
	if err := db.Update(context.Background(), func(kv.Txn) error { calls++; return nil }); err != nil {
		t.Fatal(err)
	}
	if calls != 6 || f.begun != 6 || f.committed != 1 {
		t.Fatalf("calls %d begun %d committed %d; want 6, 6, 1", calls, f.begun, f.committed)
	}
}

func TestUpdateRetriesConflictFromFn(t *testing.T) {
	f := &fakeEngine{}
	db := &kv.DB{Engine: f}
	calls := 0
	err := db.Update(context.Background(), func(kv.Txn) error {
		if calls++; calls < 3 {
			return fmt.Errorf("read: %w", kv.ErrConflict)
		}
		return nil
	})
	if err != nil || calls != 3 || f.rolledBack != 2 || f.committed != 1 {
		t.Fatalf("err %v calls %d rolled back %d committed %d", err, calls, f.rolledBack, f.committed)
	}
}

func TestUpdateGivesUpWithContext(t *testing.T) {
	f := &fakeEngine{conflicts: 1 << 30}
	db := &kv.DB{Engine: f}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := db.Update(ctx, func(kv.Txn) error { return nil })
	if !errors.Is(err, kv.ErrConflict) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v: want both the conflict and the deadline", err)
	}
	if f.begun < 3 {
		t.Fatalf("only %d attempts in 50ms", f.begun)
	}
}

func TestUpdateFnError(t *testing.T) {
	f := &fakeEngine{}
	db := &kv.DB{Engine: f}
	errMine := errors.New("mine")
	if err := db.Update(context.Background(), func(kv.Txn) error { return errMine }); err != errMine {
		t.Fatalf("got %v, want fn's error unchanged", err)
	}
	if f.rolledBack != 1 || f.committed != 0 {
		t.Fatalf("rolled back %d committed %d; want 1, 0", f.rolledBack, f.committed)
	}
}

func TestDoneContext(t *testing.T) {
	f := &fakeEngine{}
	db := &kv.DB{Engine: f}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Update(ctx, func(kv.Txn) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Update: %v", err)
	}
	if err := db.View(ctx, func(kv.Txn) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("View: %v", err)
	}
	if f.begun != 0 {
		t.Fatalf("%d transactions begun under a done context", f.begun)
	}
}

// registerFake registers the "fake" scheme once per test binary, so the
// test also passes with -count greater than 1.
var registerFake sync.Once

func TestOpenBadURL(t *testing.T) {
	registerFake.Do(func() { kv.RegisterEngine("fake", openFake) })
	if _, err := kv.Open(context.Background(), "fake://x", kv.Options{}); err != nil {
		t.Fatalf("registered engine: %v", err)
	}
	for _, url := range []string{"", "nocolon", "fake:", ":x", "mystery://x", "/var/lib/strata"} {
		if _, err := kv.Open(context.Background(), url, kv.Options{}); !errors.Is(err, kv.ErrBadURL) {
			t.Errorf("Open(%q): %v, want ErrBadURL", url, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a scheme twice did not panic")
		}
	}()
	kv.RegisterEngine("fake", nil)
}

func openFake(ctx context.Context, rest string, opts kv.Options) (kv.Engine, error) {
	if rest != "//x" {
		return nil, fmt.Errorf("rest %q", rest)
	}
	return &fakeEngine{}, nil
}
