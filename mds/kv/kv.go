// Package kv is the narrow transactional key-value interface the MDS keeps
// all metadata in, with two engines: embedded (badger v4 in a local
// directory; the single-node default) and tikv (client-go against a TiKV
// cluster; production). Namespace code in package mds sees only this package.
//
// Keys and values are opaque bytes; keys sort bytewise. Transactions are
// snapshot-isolated and optimistic: a write-write conflict at commit fails
// the transaction with ErrConflict, and DB.Update retries it with backoff.
// Only write-write conflicts are guaranteed to be caught (TiKV checks
// nothing else; badger also checks keys read), so an invariant that rests
// on a key a transaction only reads must be protected by writing that key
// too.
//
// The engines live in subpackages (embedded, tikv) that import this one
// and register their URL schemes with RegisterEngine from init. A program
// links them in with a blank import of
// github.com/stratafs/strata/mds/kv/engines; without it Open knows no
// scheme. The conformance suite every engine passes is in kvtest.
package kv

import (
	"context"
	"errors"
	"time"
)

// Errors.
var (
	// ErrConflict means the transaction lost a write conflict and may be retried.
	ErrConflict = errors.New("kv: transaction conflict")
	// ErrTooLarge means the transaction exceeds the engine's size limits.
	ErrTooLarge = errors.New("kv: transaction too large")
	// ErrBadURL means the store URL names no known engine.
	ErrBadURL = errors.New("kv: store URL must be embedded:DIR or tikv://PD[,PD...]")
	// ErrFenced means a commit came too late: its timestamp was not below
	// the bound the transaction was given (Bounded), typically the end of
	// a lease its writer no longer holds. It is not retried.
	ErrFenced = errors.New("kv: commit past its lease: fenced")
)

// Clock is implemented by engines with a timestamp that every process
// using the store agrees on (TiKV's TSO; the local clock of the one process
// an embedded store belongs to). Leases kept in the store are expressed in
// it, so no host's wall clock is ever compared with another's.
type Clock interface {
	// Now returns the current timestamp.
	Now(ctx context.Context) (uint64, error)
	// Add returns ts plus d.
	Add(ts uint64, d time.Duration) uint64
}

// Bounded is implemented by transactions whose commit can be fenced by a
// lease: after CommitBefore(ts), a commit whose timestamp is not below ts
// fails with ErrFenced. An MDS bounds every transaction by the lease of the
// MDTs it owns, so a paused owner can commit nothing once the lease is past
// and another MDS may have taken the MDTs over.
type Bounded interface {
	CommitBefore(ts uint64)
}

// Txn is what transaction bodies see.
type Txn interface {
	// Get returns the value of key, or nil and no error if it is absent. A
	// present empty value is a non-nil empty slice. The returned slice
	// belongs to the caller.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// BatchGet returns the values of keys in their order (nil for an
	// absent key), as Get would, in one round trip where the engine can
	// (TiKV); the slices belong to the caller.
	BatchGet(ctx context.Context, keys [][]byte) ([][]byte, error)
	// Scan calls fn for keys in [start, end) in ascending order, at most
	// limit of them (limit <= 0: no limit), until fn returns false. A nil
	// end means no upper bound. The transaction's own writes are included.
	// The key and value slices are valid only during the call; fn may call
	// Get, Set and Delete on the same transaction, and what it writes is
	// not visited by the rest of this scan.
	Scan(ctx context.Context, start, end []byte, limit int, fn func(key, value []byte) bool) error
	// Set writes key = value in this transaction. It copies both slices, so
	// the caller may reuse them; a nil value stores an empty value.
	Set(key, value []byte) error
	// Delete removes key in this transaction.
	Delete(key []byte) error
}

// Tx is an engine transaction: a Txn that can be committed or discarded.
type Tx interface {
	Txn
	// Commit makes the writes durable according to the engine's sync
	// policy, or fails with ErrConflict.
	Commit(ctx context.Context) error
	// Rollback discards the transaction; safe after Commit.
	Rollback()
}

// Engine is one KV engine.
type Engine interface {
	// Begin starts a transaction; update says whether it may write.
	Begin(ctx context.Context, update bool) (Tx, error)
	// Sync makes every committed transaction durable (for fsync from a
	// client when the sync policy is lazy).
	Sync(ctx context.Context) error
	// Close releases the engine.
	Close() error
}
