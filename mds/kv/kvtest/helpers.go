package kvtest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"

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
