package tikv

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/txnkv/transaction"

	"github.com/stratafs/strata/mds/kv"
)

// txn is a client-go optimistic transaction as a kv.Tx.
type txn struct {
	t      *transaction.KVTxn
	update bool
	done   bool // committed or rolled back
	fenced bool // the commit timestamp came past the bound
}

var _ kv.Bounded = (*txn)(nil)

// CommitBefore implements kv.Bounded with client-go's commit timestamp
// check (which turns off async commit and 1PC for the transaction).
func (x *txn) CommitBefore(ts uint64) {
	x.t.SetCommitTSUpperBoundCheck(func(commitTS uint64) bool {
		if commitTS < ts {
			return true
		}
		x.fenced = true
		return false
	})
}

var _ kv.Tx = (*txn)(nil)

// Get returns a copy of key's value, or nil if it is absent.
func (x *txn) Get(ctx context.Context, key []byte) ([]byte, error) {
	e, err := x.t.Get(ctx, key)
	if tikverr.IsErrNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr("get", err)
	}
	// Copy: the slice may point into the transaction's write buffer.
	return bytes.Clone(decodeValue(e.Value)), nil
}

// BatchGet returns copies of the values of keys, in order, nil for the
// absent ones: one request per region instead of one per key.
func (x *txn) BatchGet(ctx context.Context, keys [][]byte) ([][]byte, error) {
	m, err := x.t.BatchGet(ctx, keys)
	if err != nil {
		return nil, mapErr("batch get", err)
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if e, ok := m[string(k)]; ok {
			out[i] = bytes.Clone(decodeValue(e.Value))
		}
	}
	return out, nil
}

// maxScanBatch is client-go's default number of pairs fetched per scan
// request; a Scan with a smaller limit asks for no more than it needs.
const maxScanBatch = 256

// Scan iterates [start, end) in key order, this transaction's own writes
// included. A nil end means no upper bound.
//
// It does not use KVTxn.Iter: client-go's write-buffer iterators go wrong
// (revisiting keys) when the buffer changes under them, and fn may write.
// Instead the buffered writes in range are copied first, as badger does,
// and merged with a streaming scan of the TiKV snapshot; so writes fn
// makes are not seen by the rest of the scan.
func (x *txn) Scan(ctx context.Context, start, end []byte, limit int, fn func(key, value []byte) bool) error {
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	buffered, err := x.bufferedWrites(start, end)
	if err != nil {
		return mapErr("scan", err)
	}
	batch := maxScanBatch
	if limit > 0 && limit < batch {
		batch = max(limit, 2)
	}
	snap := x.t.GetSnapshot()
	snap.SetScanBatchSize(batch)
	stored, err := snap.Iter(start, end)
	if err != nil {
		return mapErr("scan", err)
	}
	defer stored.Close()

	for n := 0; len(buffered) > 0 || stored.Valid(); {
		if err := ctx.Err(); err != nil {
			return err
		}
		fromBuffer, fromStore := len(buffered) > 0, stored.Valid()
		if fromBuffer && fromStore {
			c := bytes.Compare(buffered[0].key, stored.Key())
			fromBuffer, fromStore = c <= 0, c >= 0
		}
		var key, value []byte
		if fromBuffer {
			key, value = buffered[0].key, buffered[0].value
		} else {
			key, value = stored.Key(), stored.Value()
		}
		// An empty value in the buffer is this transaction's delete.
		if !fromBuffer || len(value) > 0 {
			if !fn(key, decodeValue(value)) {
				return nil
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
		if fromBuffer {
			buffered = buffered[1:]
		}
		if fromStore {
			if err := stored.Next(); err != nil {
				return mapErr("scan", err)
			}
		}
	}
	return nil
}

// bufferedWrite is one of this transaction's writes, copied out of
// client-go's write buffer; an empty value is a delete.
type bufferedWrite struct{ key, value []byte }

// bufferedWrites copies this transaction's writes in [start, end), in key
// order. A read-only transaction has none, so a View scan costs nothing
// here.
func (x *txn) bufferedWrites(start, end []byte) ([]bufferedWrite, error) {
	if x.t.Len() == 0 {
		return nil, nil
	}
	it, err := x.t.GetMemBuffer().Iter(start, end)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var (
		writes []bufferedWrite
		arena  []byte
	)
	for it.Valid() {
		writes = append(writes, bufferedWrite{key: it.Key(), value: it.Value()})
		arena = append(arena, it.Key()...)
		arena = append(arena, it.Value()...)
		if err := it.Next(); err != nil {
			return nil, err
		}
	}
	// One allocation for all the copies; slice them out once it is done
	// growing.
	off := 0
	for i := range writes {
		k, v := len(writes[i].key), len(writes[i].value)
		writes[i].key = arena[off : off+k : off+k]
		writes[i].value = arena[off+k : off+k+v : off+k+v]
		off += k + v
	}
	return writes, nil
}

// Set writes key = value; client-go copies both into its write buffer.
func (x *txn) Set(key, value []byte) error {
	if !x.update {
		return kv.ErrReadOnly
	}
	if err := x.t.Set(key, encodeValue(value)); err != nil {
		return mapErr("set", err)
	}
	return nil
}

// Delete removes key.
func (x *txn) Delete(key []byte) error {
	if !x.update {
		return kv.ErrReadOnly
	}
	if err := x.t.Delete(key); err != nil {
		return mapErr("delete", err)
	}
	return nil
}

// Commit runs two-phase commit (or one-phase, or async commit).
func (x *txn) Commit(ctx context.Context) error {
	x.done = true
	if err := x.t.Commit(ctx); err != nil {
		if x.fenced {
			return fmt.Errorf("kv/tikv: commit: %w: %v", kv.ErrFenced, err)
		}
		return mapErr("commit", err)
	}
	return nil
}

// Rollback discards the transaction; it is a no-op after Commit.
func (x *txn) Rollback() {
	if x.done {
		return
	}
	x.done = true
	_ = x.t.Rollback() // only fails on an already finished transaction
}

// mapErr translates client-go's errors to kv's, keeping client-go's text.
func mapErr(op string, err error) error {
	var (
		conflict *tikverr.ErrWriteConflict
		latch    *tikverr.ErrWriteConflictInLatch
		retry    *tikverr.ErrRetryable
		txnBig   *tikverr.ErrTxnTooLarge
		entryBig *tikverr.ErrEntryTooLarge
		keyBig   *tikverr.ErrKeyTooLarge
	)
	switch {
	case errors.As(err, &conflict), errors.As(err, &latch), errors.As(err, &retry):
		return fmt.Errorf("kv/tikv: %s: %w: %w", op, kv.ErrConflict, err)
	case errors.As(err, &txnBig), errors.As(err, &entryBig), errors.As(err, &keyBig):
		return fmt.Errorf("kv/tikv: %s: %w: %w", op, kv.ErrTooLarge, err)
	}
	return fmt.Errorf("kv/tikv: %s: %w", op, err)
}

// Value encoding. TiKV cannot store an empty value (client-go's write
// buffer uses empty to mean deleted), but kv distinguishes an empty value
// from an absent key. Values that are all zero bytes, the empty one
// included, are stored with one extra zero byte; every other value is
// stored as is. The mapping is a bijection, costs nothing for values
// whose first byte is not zero, and keeps stored values readable by other
// TiKV tools.

// encodeValue returns the stored form of v.
func encodeValue(v []byte) []byte {
	if !allZero(v) {
		return v
	}
	return make([]byte, len(v)+1)
}

// decodeValue returns the value a stored form s encodes; it may share s.
func decodeValue(s []byte) []byte {
	if len(s) == 0 { // not written by encodeValue; treat as empty
		return []byte{}
	}
	if allZero(s) {
		return s[:len(s)-1]
	}
	return s
}

// allZero says whether every byte of b is zero (true for empty b).
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
