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

// maxScanBatch is client-go's default number of pairs fetched per scan
// request; a Scan with a smaller limit asks for no more than it needs.
const maxScanBatch = 256

// Scan iterates [start, end) in key order, this transaction's own writes
// included. A nil end means no upper bound.
func (x *txn) Scan(ctx context.Context, start, end []byte, limit int, fn func(key, value []byte) bool) error {
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	batch := maxScanBatch
	if limit > 0 && limit < batch {
		batch = max(limit, 2)
	}
	x.t.GetSnapshot().SetScanBatchSize(batch)
	it, err := x.t.Iter(start, end)
	if err != nil {
		return mapErr("scan", err)
	}
	defer it.Close()
	for n := 0; it.Valid(); {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(it.Key(), decodeValue(it.Value())) {
			return nil
		}
		if n++; limit > 0 && n >= limit {
			return nil
		}
		if err := it.Next(); err != nil {
			return mapErr("scan", err)
		}
	}
	return nil
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
