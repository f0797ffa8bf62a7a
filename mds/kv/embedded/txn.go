package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/stratafs/strata/mds/kv"
)

// txn is a badger transaction as a kv.Tx. Badger detects conflicts on
// every key the transaction read (Get, or visited by Scan) that another
// transaction wrote after this one began, which is stricter than TiKV's
// write-write rule; both are retried by kv.DB.Update.
type txn struct {
	e      *Engine
	t      *badger.Txn
	update bool
	wrote  bool
	bound  uint64 // commit only before this timestamp; 0: no bound
}

var (
	_ kv.Tx      = (*txn)(nil)
	_ kv.Bounded = (*txn)(nil)
)

// CommitBefore implements kv.Bounded. The clock is this process's (an
// embedded store belongs to one process), and the bound is checked just
// before badger commits, which it does in memory and at once.
func (x *txn) CommitBefore(ts uint64) { x.bound = ts }

// BatchGet gets each key in turn: badger reads are local.
func (x *txn) BatchGet(ctx context.Context, keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := x.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Get returns a copy of key's value, or nil if it is absent. A present
// empty value comes back as a non-nil empty slice.
func (x *txn) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	item, err := x.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr("get", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, mapErr("get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// smallScan is the limit up to which Scan does not prefetch values: a
// lookup of a few entries should not read a hundred ahead.
const smallScan = 16

// Scan iterates [start, end) in key order, this transaction's own writes
// included. A nil end means no upper bound.
func (x *txn) Scan(ctx context.Context, start, end []byte, limit int, fn func(key, value []byte) bool) error {
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	opt := badger.DefaultIteratorOptions
	if limit > 0 && limit <= smallScan {
		opt.PrefetchValues = false
	} else if limit > 0 {
		opt.PrefetchSize = min(limit, opt.PrefetchSize)
	}
	// Every key in [start, end) shares the common prefix of start and end;
	// telling badger lets it skip tables whose key range misses it.
	if end != nil {
		opt.Prefix = commonPrefix(start, end)
	}
	it := x.t.NewIterator(opt)
	defer it.Close()
	n := 0
	for it.Seek(start); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		key := item.Key()
		if end != nil && bytes.Compare(key, end) >= 0 {
			return nil
		}
		more := true
		err := item.Value(func(v []byte) error {
			if v == nil {
				v = []byte{}
			}
			more = fn(key, v)
			return nil
		})
		if err != nil {
			return mapErr("scan", err)
		}
		n++
		if !more || (limit > 0 && n >= limit) {
			return nil
		}
	}
	return nil
}

// Set writes key = value. Both slices are copied, since badger keeps
// references until commit and callers reuse their encode buffers. A nil
// value is stored as an empty value.
func (x *txn) Set(key, value []byte) error {
	if !x.update {
		return kv.ErrReadOnly
	}
	if value == nil {
		value = []byte{}
	}
	if err := x.t.Set(bytes.Clone(key), bytes.Clone(value)); err != nil {
		return mapErr("set", err)
	}
	x.wrote = true
	return nil
}

// Delete removes key.
func (x *txn) Delete(key []byte) error {
	if !x.update {
		return kv.ErrReadOnly
	}
	if err := x.t.Delete(bytes.Clone(key)); err != nil {
		return mapErr("delete", err)
	}
	x.wrote = true
	return nil
}

// Commit commits the transaction; badger has written it to its
// memory-mapped logs (and fsynced them under the "always" policy) when it
// returns. If ctx is already done nothing is committed.
func (x *txn) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		x.t.Discard()
		return err
	}
	if now := uint64(time.Now().UnixNano()); x.bound != 0 && now >= x.bound {
		x.t.Discard()
		return fmt.Errorf("kv/embedded: commit at %d, bound %d: %w", now, x.bound, kv.ErrFenced)
	}
	if err := x.t.Commit(); err != nil {
		return mapErr("commit", err)
	}
	if x.wrote {
		x.e.committed()
	}
	return nil
}

// Rollback discards the transaction; it is a no-op after Commit.
func (x *txn) Rollback() { x.t.Discard() }

// mapErr translates badger's errors to kv's, keeping badger's text.
func mapErr(op string, err error) error {
	switch {
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("kv/embedded: %s: %w: %w", op, kv.ErrConflict, err)
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("kv/embedded: %s: %w: %w", op, kv.ErrTooLarge, err)
	}
	return fmt.Errorf("kv/embedded: %s: %w", op, err)
}

// commonPrefix returns the longest common prefix of a and b.
func commonPrefix(a, b []byte) []byte {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n:n]
}
