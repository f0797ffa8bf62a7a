package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
)

// pair is one scanned key and value, copied out of the engine.
type pair struct{ k, v []byte }

func key(prefix string, i int) []byte { return fmt.Appendf(nil, "%s%04d", prefix, i) }
func val(i int) []byte                { return fmt.Appendf(nil, "value-%d", i) }

func atoi(b []byte) int {
	if b == nil {
		return 0
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		panic(fmt.Sprintf("kvtest: counter %q: %v", b, err))
	}
	return n
}

func mustUpdate(t testing.TB, db *kv.DB, fn func(kv.Txn) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func mustView(t testing.TB, db *kv.DB, fn func(kv.Txn) error) {
	t.Helper()
	if err := db.View(context.Background(), fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func mustGet(t testing.TB, db *kv.DB, k []byte) []byte {
	t.Helper()
	var v []byte
	mustView(t, db, func(tx kv.Txn) error {
		var err error
		v, err = tx.Get(context.Background(), k)
		return err
	})
	return v
}

// fill writes n keys prefix0000.. with values value-0...
func fill(t testing.TB, db *kv.DB, prefix string, n int) {
	t.Helper()
	mustUpdate(t, db, func(tx kv.Txn) error {
		for i := range n {
			if err := tx.Set(key(prefix, i), val(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanAll(t testing.TB, db *kv.DB, start, end []byte, limit int) []pair {
	t.Helper()
	var got []pair
	mustView(t, db, func(tx kv.Txn) error {
		got = got[:0]
		return tx.Scan(context.Background(), start, end, limit, func(k, v []byte) bool {
			got = append(got, pair{bytes.Clone(k), bytes.Clone(v)})
			return true
		})
	})
	return got
}

func checkPairs(t testing.TB, got, want []pair) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d pairs %q, want %d %q", len(got), got, len(want), want)
	}
	for i := range got {
		if !bytes.Equal(got[i].k, want[i].k) || !bytes.Equal(got[i].v, want[i].v) {
			t.Fatalf("pair %d: got %q=%q, want %q=%q", i, got[i].k, got[i].v, want[i].k, want[i].v)
		}
	}
}

// testLeaseFence checks kv.Clock and kv.Bounded: a commit bounded by a
// timestamp already past fails with ErrFenced (and is not retried); one
// bounded by a future timestamp commits.
func testLeaseFence(t *testing.T, db *kv.DB) {
	clock, ok := db.Engine.(kv.Clock)
	if !ok {
		t.Fatalf("engine %T has no kv.Clock", db.Engine)
	}
	ctx := context.Background()
	now, err := clock.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	later := clock.Add(now, time.Hour)
	if later <= now {
		t.Fatalf("Add(%d, 1h) = %d", now, later)
	}
	calls := 0
	err = db.UpdateBounded(ctx, func() (uint64, bool) { return now, true }, func(tx kv.Txn) error {
		calls++
		return tx.Set([]byte("fenced"), []byte("x"))
	})
	if !errors.Is(err, kv.ErrFenced) || calls != 1 {
		t.Fatalf("commit past its bound: %v after %d attempts, want ErrFenced after 1", err, calls)
	}
	mustView(t, db, func(tx kv.Txn) error {
		if v, err := tx.Get(ctx, []byte("fenced")); err != nil || v != nil {
			t.Fatalf("a fenced commit wrote %q (%v)", v, err)
		}
		return nil
	})
	err = db.UpdateBounded(ctx, func() (uint64, bool) { return later, true }, func(tx kv.Txn) error {
		return tx.Set([]byte("in-lease"), []byte("x"))
	})
	if err != nil {
		t.Fatalf("commit within its bound: %v", err)
	}
	// A lease renewed while a commit missed the old bound: the retry
	// under the new bound commits (before, the MDS failed the request
	// although it still owned the MDT).
	bounds := 0
	calls = 0
	err = db.UpdateBounded(ctx, func() (uint64, bool) {
		bounds++
		if bounds == 1 {
			return now, true
		}
		return later, true
	}, func(tx kv.Txn) error {
		calls++
		return tx.Set([]byte("renewed"), []byte("x"))
	})
	if err != nil || calls != 2 {
		t.Fatalf("commit past a bound renewed meanwhile: %v after %d attempts, want success after 2", err, calls)
	}
}
