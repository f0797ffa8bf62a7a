package kv

import (
	"context"
	"time"
)

// Options tune how a store is opened.
type Options struct {
	// Sync is the embedded engine's fsync policy: "always" (fsync every
	// commit), "interval" (fsync at most SyncInterval after a commit; a
	// process kill loses nothing, a power loss at most the interval) or
	// "none". Empty means the URL's ?sync= parameter or "interval".
	Sync         string
	SyncInterval time.Duration // 0: 100ms
}

// DB wraps an engine with retrying transactions.
type DB struct {
	Engine Engine
}

// Open opens the store a URL names: "embedded:DIR[?sync=always|interval|none]"
// or "tikv://PD1:2379[,PD2:2379...]".
func Open(ctx context.Context, url string, opts Options) (*DB, error) { panic("kv: not implemented") }

// Update runs fn in a read-write transaction and commits it, retrying the
// whole function with backoff while commit (or a read) fails with
// ErrConflict. fn must have no side effects outside the transaction.
func (db *DB) Update(ctx context.Context, fn func(Txn) error) error { panic("kv: not implemented") }

// View runs fn in a read-only snapshot transaction.
func (db *DB) View(ctx context.Context, fn func(Txn) error) error { panic("kv: not implemented") }

// Sync forwards to the engine.
func (db *DB) Sync(ctx context.Context) error { return db.Engine.Sync(ctx) }

// Close closes the engine.
func (db *DB) Close() error { return db.Engine.Close() }
