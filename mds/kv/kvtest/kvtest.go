// Package kvtest is the conformance suite for kv engines: every engine
// runs it, so namespace code can rely on the same semantics from each.
// It is for tests only.
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stratafs/strata/mds/kv"
)

// RunSuite runs the conformance suite. open must return a fresh, empty
// engine for each call; the suite closes it.
func RunSuite(t *testing.T, open func(t *testing.T) kv.Engine) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *kv.DB)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"EmptyValue", testEmptyValue},
		{"ValueOwnership", testValueOwnership},
		{"ScanOrderAndBounds", testScanOrderAndBounds},
		{"ScanLimitAndStop", testScanLimitAndStop},
		{"ReadYourWrites", testReadYourWrites},
		{"BatchGet", testBatchGet},
		{"WriteDuringScan", testWriteDuringScan},
		{"Rollback", testRollback},
		{"ReadOnly", testReadOnly},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"WriteConflict", testWriteConflict},
		{"ConcurrentIncrement", testConcurrentIncrement},
		{"UpdateError", testUpdateError},
		{"LargeValue", testLargeValue},
		{"ManyKeys", testManyKeys},
		{"Sync", testSync},
		{"LeaseFence", testLeaseFence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := open(t)
			db := &kv.DB{Engine: e}
			t.Cleanup(func() {
				if err := e.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, db)
		})
	}
}

// RunPersistence checks that committed data survives closing and
// reopening an engine. reopen must open the store kept in dir, creating it
// on the first call.
func RunPersistence(t *testing.T, reopen func(t *testing.T, dir string) kv.Engine) {
	ctx := context.Background()
	dir := t.TempDir()
	db := &kv.DB{Engine: reopen(t, dir)}
	mustUpdate(t, db, func(tx kv.Txn) error {
		for i := range 100 {
			if err := tx.Set(key("p", i), val(i)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("empty"), nil)
	})
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete(key("p", 7)) })
	if err := db.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	db = &kv.DB{Engine: reopen(t, dir)}
	defer db.Close()
	got := scanAll(t, db, []byte("p"), []byte("q"), 0)
	if len(got) != 99 {
		t.Fatalf("after reopen: %d keys, want 99", len(got))
	}
	for _, p := range got {
		if bytes.Equal(p.k, key("p", 7)) {
			t.Fatalf("deleted key %q back after reopen", p.k)
		}
	}
	if v := mustGet(t, db, []byte("empty")); v == nil || len(v) != 0 {
		t.Fatalf("empty value after reopen: %q (nil %v)", v, v == nil)
	}
}

func testGetSetDelete(t *testing.T, db *kv.DB) {
	k := []byte("k")
	if v := mustGet(t, db, k); v != nil {
		t.Fatalf("absent key: got %q, want nil", v)
	}
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set(k, []byte("v1")) })
	if v := mustGet(t, db, k); string(v) != "v1" {
		t.Fatalf("got %q, want v1", v)
	}
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set(k, []byte("v2")) })
	if v := mustGet(t, db, k); string(v) != "v2" {
		t.Fatalf("after overwrite got %q, want v2", v)
	}
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete(k) })
	if v := mustGet(t, db, k); v != nil {
		t.Fatalf("after delete got %q, want nil", v)
	}
	// Deleting an absent key is not an error.
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete([]byte("never")) })
}

func testEmptyValue(t *testing.T, db *kv.DB) {
	zeros := []byte{0, 0, 0}
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("e1"), []byte{}); err != nil {
			return err
		}
		if err := tx.Set([]byte("e2"), nil); err != nil {
			return err
		}
		if err := tx.Set([]byte("z0"), []byte{0}); err != nil {
			return err
		}
		return tx.Set([]byte("z3"), zeros)
	})
	for _, k := range []string{"e1", "e2"} {
		v := mustGet(t, db, []byte(k))
		if v == nil || len(v) != 0 {
			t.Fatalf("%s: got %q (nil %v), want a present empty value", k, v, v == nil)
		}
	}
	if v := mustGet(t, db, []byte("z0")); !bytes.Equal(v, []byte{0}) {
		t.Fatalf("z0: got %v, want [0]", v)
	}
	if v := mustGet(t, db, []byte("z3")); !bytes.Equal(v, zeros) {
		t.Fatalf("z3: got %v, want %v", v, zeros)
	}
	got := scanAll(t, db, nil, nil, 0)
	want := []pair{{[]byte("e1"), []byte{}}, {[]byte("e2"), []byte{}}, {[]byte("z0"), []byte{0}}, {[]byte("z3"), zeros}}
	checkPairs(t, got, want)
}

func testValueOwnership(t *testing.T, db *kv.DB) {
	k, buf := []byte("own"), []byte("original")
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set(k, buf); err != nil {
			return err
		}
		// The engine must have copied: callers reuse encode buffers.
		copy(buf, "XXXXXXXX")
		k[0] = 'X'
		return nil
	})
	v := mustGet(t, db, []byte("own"))
	if string(v) != "original" {
		t.Fatalf("Set kept the caller's buffer: got %q", v)
	}
	v[0] = 'Y' // the returned slice belongs to the caller
	if v := mustGet(t, db, []byte("own")); string(v) != "original" {
		t.Fatalf("Get returned shared memory: got %q", v)
	}
}

func testScanOrderAndBounds(t *testing.T, db *kv.DB) {
	keys := []string{"a", "a\x00", "ab", "abc", "b", "ba", "c", "\xff", "\xff\xff"}
	shuffled := slices.Clone(keys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	mustUpdate(t, db, func(tx kv.Txn) error {
		for _, k := range shuffled {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	cases := []struct {
		start, end string
		nilStart   bool
		nilEnd     bool
		want       []string
	}{
		{nilStart: true, nilEnd: true, want: keys},
		{start: "a", end: "b", want: []string{"a", "a\x00", "ab", "abc"}},
		{start: "a\x00", end: "abc", want: []string{"a\x00", "ab"}},
		{start: "ab", end: "ab\x00", want: []string{"ab"}},
		{start: "b", nilEnd: true, want: []string{"b", "ba", "c", "\xff", "\xff\xff"}},
		{nilStart: true, end: "ab", want: []string{"a", "a\x00"}},
		{start: "bb", end: "bz", want: nil},
		{start: "c", end: "c", want: nil},
		{start: "d", end: "a", want: nil},
	}
	for _, c := range cases {
		var start, end []byte
		if !c.nilStart {
			start = []byte(c.start)
		}
		if !c.nilEnd {
			end = []byte(c.end)
		}
		got := scanAll(t, db, start, end, 0)
		var want []pair
		for _, k := range c.want {
			want = append(want, pair{[]byte(k), []byte("v" + k)})
		}
		t.Run(fmt.Sprintf("%q-%q", start, end), func(t *testing.T) { checkPairs(t, got, want) })
	}
}

func testScanLimitAndStop(t *testing.T, db *kv.DB) {
	fill(t, db, "s", 50)
	for _, limit := range []int{1, 2, 10, 49, 50, 51, 1000} {
		got := scanAll(t, db, []byte("s"), []byte("t"), limit)
		if want := min(limit, 50); len(got) != want {
			t.Fatalf("limit %d: %d keys, want %d", limit, len(got), want)
		}
		for i, p := range got {
			if !bytes.Equal(p.k, key("s", i)) {
				t.Fatalf("limit %d: key %d is %q, want %q", limit, i, p.k, key("s", i))
			}
		}
	}
	// fn returning false stops the scan after that key.
	var seen int
	mustView(t, db, func(tx kv.Txn) error {
		return tx.Scan(context.Background(), []byte("s"), []byte("t"), 0, func(k, v []byte) bool {
			seen++
			return seen < 5
		})
	})
	if seen != 5 {
		t.Fatalf("early stop: fn called %d times, want 5", seen)
	}
}

func testReadYourWrites(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	fill(t, db, "r", 5) // r0000 .. r0004
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("new"), []byte("n")); err != nil {
			return err
		}
		if v, err := tx.Get(ctx, []byte("new")); err != nil || string(v) != "n" {
			return fmt.Errorf("own write: got %q, %v", v, err)
		}
		if err := tx.Delete(key("r", 1)); err != nil {
			return err
		}
		if v, err := tx.Get(ctx, key("r", 1)); err != nil || v != nil {
			return fmt.Errorf("own delete: got %q, %v", v, err)
		}
		if err := tx.Set(key("r", 2), []byte("changed")); err != nil {
			return err
		}
		if err := tx.Set([]byte("r0002x"), []byte("added")); err != nil {
			return err
		}
		var got []pair
		err := tx.Scan(ctx, []byte("r"), []byte("s"), 0, func(k, v []byte) bool {
			got = append(got, pair{bytes.Clone(k), bytes.Clone(v)})
			return true
		})
		if err != nil {
			return err
		}
		checkPairs(t, got, []pair{
			{key("r", 0), val(0)},
			{key("r", 2), []byte("changed")},
			{[]byte("r0002x"), []byte("added")},
			{key("r", 3), val(3)},
			{key("r", 4), val(4)},
		})
		// Unbounded both ways, and with a delete of a key never stored.
		if err := tx.Delete([]byte("absent")); err != nil {
			return err
		}
		n := 0
		if err := tx.Scan(ctx, nil, nil, 0, func(k, v []byte) bool { n++; return true }); err != nil {
			return err
		}
		if n != 6 {
			return fmt.Errorf("full scan in the transaction saw %d keys, want 6", n)
		}
		return nil
	})
}

// testBatchGet reads committed keys, the transaction's own writes and
// deletes, absent keys and empty values in one batch, in the order asked.
func testBatchGet(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	fill(t, db, "b", 4) // b0000 .. b0003
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("empty"), nil) })
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set(key("b", 1), []byte("mine")); err != nil {
			return err
		}
		if err := tx.Delete(key("b", 2)); err != nil {
			return err
		}
		if err := tx.Set([]byte("fresh"), []byte("f")); err != nil {
			return err
		}
		keys := [][]byte{key("b", 3), []byte("absent"), key("b", 2), []byte("fresh"), key("b", 1), []byte("empty"), key("b", 0), key("b", 3)}
		got, err := tx.BatchGet(ctx, keys)
		if err != nil {
			return err
		}
		want := [][]byte{val(3), nil, nil, []byte("f"), []byte("mine"), {}, val(0), val(3)}
		if len(got) != len(want) {
			return fmt.Errorf("BatchGet gave %d values for %d keys", len(got), len(keys))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) || (got[i] == nil) != (want[i] == nil) {
				return fmt.Errorf("key %q: got %q (nil %v), want %q (nil %v)", keys[i], got[i], got[i] == nil, want[i], want[i] == nil)
			}
		}
		if got, err := tx.BatchGet(ctx, nil); err != nil || len(got) != 0 {
			return fmt.Errorf("empty batch: %q, %v", got, err)
		}
		return nil
	})
}

// testWriteDuringScan checks the pattern "scan a range, deleting what it
// finds" in one transaction (dropping an inode's xattrs), with half the
// keys written earlier in the same transaction, and that writes made
// during a scan are not visited by it.
func testWriteDuringScan(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	const n = 3000
	fill(t, db, "w", n/2)
	mustUpdate(t, db, func(tx kv.Txn) error {
		for i := n / 2; i < n; i++ {
			if err := tx.Set(key("w", i), val(i)); err != nil {
				return err
			}
		}
		var werr error
		seen := 0
		err := tx.Scan(ctx, []byte("w"), []byte("x"), 0, func(k, v []byte) bool {
			if want := key("w", seen); !bytes.Equal(k, want) {
				werr = fmt.Errorf("scan visited %q, want %q", k, want)
				return false
			}
			seen++
			werr = errors.Join(
				tx.Delete(k),
				tx.Set(append([]byte("moved/"), k...), v),
				tx.Set(append(bytes.Clone(k), '+'), v), // ahead, in range
			)
			return werr == nil
		})
		if err == nil && werr == nil && seen != n {
			werr = fmt.Errorf("scan visited %d keys, want %d", seen, n)
		}
		return errors.Join(err, werr)
	})
	if got := scanAll(t, db, []byte("w"), []byte("x"), 0); len(got) != n {
		t.Fatalf("%d keys in range after the scan, want the %d written during it", len(got), n)
	}
	if got := scanAll(t, db, []byte("moved/"), []byte("moved0"), 0); len(got) != n {
		t.Fatalf("%d keys written during scan, want %d", len(got), n)
	}
}

func testRollback(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	tx, err := db.Engine.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set([]byte("rb"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	tx.Rollback() // twice is fine
	if v := mustGet(t, db, []byte("rb")); v != nil {
		t.Fatalf("rolled-back write visible: %q", v)
	}
	tx, err = db.Engine.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set([]byte("rb"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Rollback() // after Commit: a no-op
	if v := mustGet(t, db, []byte("rb")); string(v) != "v" {
		t.Fatalf("Rollback after Commit undid it: %q", v)
	}
}

func testReadOnly(t *testing.T, db *kv.DB) {
	err := db.View(context.Background(), func(tx kv.Txn) error { return tx.Set([]byte("ro"), []byte("v")) })
	if !errors.Is(err, kv.ErrReadOnly) {
		t.Fatalf("Set in View: %v, want ErrReadOnly", err)
	}
	err = db.View(context.Background(), func(tx kv.Txn) error { return tx.Delete([]byte("ro")) })
	if !errors.Is(err, kv.ErrReadOnly) {
		t.Fatalf("Delete in View: %v, want ErrReadOnly", err)
	}
}

func testSnapshotIsolation(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("si/a"), []byte("old")) })
	reader, err := db.Engine.Begin(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Rollback()
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("si/a"), []byte("new")); err != nil {
			return err
		}
		return tx.Set([]byte("si/b"), []byte("added"))
	})
	if v, err := reader.Get(ctx, []byte("si/a")); err != nil || string(v) != "old" {
		t.Fatalf("reader sees %q, %v; want the value of its snapshot", v, err)
	}
	if v, err := reader.Get(ctx, []byte("si/b")); err != nil || v != nil {
		t.Fatalf("reader sees a key committed after it began: %q, %v", v, err)
	}
	n := 0
	if err := reader.Scan(ctx, []byte("si/"), []byte("si0"), 0, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("reader's scan sees %d keys, want 1", n)
	}
}

func testWriteConflict(t *testing.T, db *kv.DB) {
	ctx := context.Background()
	k := []byte("wc")
	mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set(k, []byte("0")) })
	t1, err := db.Engine.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback()
	t2, err := db.Engine.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Rollback()
	for _, tx := range []kv.Tx{t1, t2} {
		if _, err := tx.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := t1.Set(k, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := t2.Set(k, []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := t1.Commit(ctx); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	if err := t2.Commit(ctx); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("second commit: %v, want ErrConflict", err)
	}
	if v := mustGet(t, db, k); string(v) != "1" {
		t.Fatalf("after conflict: %q, want the first commit's value", v)
	}
}

func testConcurrentIncrement(t *testing.T, db *kv.DB) {
	const workers, each = 8, 10
	k := []byte("counter")
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.Update(context.Background(), func(tx kv.Txn) error {
					v, err := tx.Get(context.Background(), k)
					if err != nil {
						return err
					}
					return tx.Set(k, fmt.Appendf(nil, "%d", atoi(v)+1))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("update: %v", err)
	}
	if got := atoi(mustGet(t, db, k)); got != workers*each {
		t.Fatalf("counter = %d, want %d", got, workers*each)
	}
}

func testUpdateError(t *testing.T, db *kv.DB) {
	errMine := errors.New("mine")
	err := db.Update(context.Background(), func(tx kv.Txn) error {
		if err := tx.Set([]byte("ue"), []byte("v")); err != nil {
			return err
		}
		return errMine
	})
	if err != errMine {
		t.Fatalf("Update returned %v, want fn's error unchanged", err)
	}
	if v := mustGet(t, db, []byte("ue")); v != nil {
		t.Fatalf("failed Update committed: %q", v)
	}
}

func testLargeValue(t *testing.T, db *kv.DB) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rand.N(256))
	}
	mustUpdate(t, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("big/1"), big); err != nil {
			return err
		}
		return tx.Set([]byte("big/2"), big[:len(big)-1])
	})
	if v := mustGet(t, db, []byte("big/1")); !bytes.Equal(v, big) {
		t.Fatalf("1 MiB value came back as %d bytes, differing", len(v))
	}
	got := scanAll(t, db, []byte("big/"), []byte("big0"), 0)
	if len(got) != 2 || !bytes.Equal(got[0].v, big) || !bytes.Equal(got[1].v, big[:len(big)-1]) {
		t.Fatalf("scan of large values: %d pairs, wrong contents", len(got))
	}
}

func testManyKeys(t *testing.T, db *kv.DB) {
	const n, perTxn = 10000, 1000
	for b := 0; b < n; b += perTxn {
		mustUpdate(t, db, func(tx kv.Txn) error {
			for i := b; i < b+perTxn; i++ {
				if err := tx.Set(key("m", i), val(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	got := scanAll(t, db, []byte("m"), []byte("n"), 0)
	if len(got) != n {
		t.Fatalf("scanned %d keys, want %d", len(got), n)
	}
	for i, p := range got {
		if !bytes.Equal(p.k, key("m", i)) || !bytes.Equal(p.v, val(i)) {
			t.Fatalf("pair %d is %q=%q", i, p.k, p.v)
		}
	}
	got = scanAll(t, db, key("m", 5000), []byte("n"), 100)
	if len(got) != 100 || !bytes.Equal(got[0].k, key("m", 5000)) || !bytes.Equal(got[99].k, key("m", 5099)) {
		t.Fatalf("limited scan from the middle: %d keys", len(got))
	}
}

func testSync(t *testing.T, db *kv.DB) {
	fill(t, db, "y", 3)
	if err := db.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
}
