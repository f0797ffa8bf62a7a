package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ErrReadOnly means a write was attempted in a transaction begun with
// update false (DB.View).
var ErrReadOnly = errors.New("kv: write in a read-only transaction")

// Options tune how a store is opened.
type Options struct {
	// Sync is the embedded engine's fsync policy: "always" (fsync every
	// commit), "interval" (fsync at most SyncInterval after a commit; a
	// process kill loses nothing, a power loss at most the interval) or
	// "none". Empty means the URL's ?sync= parameter or "interval".
	Sync         string
	SyncInterval time.Duration // 0: 100ms
}

// DB wraps an engine with retrying transactions. A DB built by hand as
// &DB{Engine: e} is as good as one from Open.
type DB struct {
	Engine Engine

	commits, conflicts atomic.Uint64
}

// Stats counts a DB's read-write transactions.
type Stats struct {
	Commits   uint64 // committed
	Conflicts uint64 // attempts that failed on a conflict and were retried (or gave up)
}

// Stats returns the DB's transaction counts.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.commits.Load(), Conflicts: db.conflicts.Load()}
}

// Retry policy of Update: jittered exponential backoff from firstBackoff
// up to maxBackoff between attempts, giving up once retryBudget has passed
// since the first attempt (or the context is done). Conflicts are short
// races between a handful of MDS threads, so a millisecond usually
// suffices; the budget bounds a livelock instead of hanging a client.
const (
	firstBackoff = time.Millisecond
	maxBackoff   = 100 * time.Millisecond
	retryBudget  = 10 * time.Second
)

// Open opens the store a URL names: "embedded:DIR[?sync=always|interval|none]"
// or "tikv://PD1:2379[,PD2:2379...]". The engines must be linked in by a
// blank import of github.com/stratafs/strata/mds/kv/engines; a URL whose
// scheme no engine claims fails with ErrBadURL.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	e, err := openEngine(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	return &DB{Engine: e}, nil
}

// Update runs fn in a read-write transaction and commits it, retrying the
// whole function with backoff while commit (or a read) fails with
// ErrConflict. fn must have no side effects outside the transaction.
// An error fn returns is passed back unchanged (and retried only if it
// wraps ErrConflict); the transaction is rolled back after every failed
// attempt. When retries run out, or ctx is done between attempts, the
// error wraps both the last conflict and, if any, the context's error.
func (db *DB) Update(ctx context.Context, fn func(Txn) error) error {
	return db.UpdateBounded(ctx, nil, fn)
}

// UpdateBounded is Update whose every commit must come before the
// timestamp bound returns just before it (false: no bound): see Bounded.
// A commit that comes too late fails with ErrFenced, and is retried only
// if bound has moved past the one it missed meanwhile: a commit slowed
// past the lease (by a lock it waited out) while the lease was renewed has
// not lost it. An MDS passes the lease of the MDTs it owns.
func (db *DB) UpdateBounded(ctx context.Context, bound func() (uint64, bool), fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		used, err := db.try(ctx, fn, bound)
		if err == nil {
			db.commits.Add(1)
			return nil
		}
		if errors.Is(err, ErrFenced) && used != 0 {
			if now, ok := bound(); ok && now > used && time.Since(start) <= retryBudget {
				db.conflicts.Add(1)
				continue
			}
			return err
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		db.conflicts.Add(1)
		if time.Since(start) > retryBudget {
			return fmt.Errorf("kv: update gave up after %d attempts in %v: %w",
				attempt, time.Since(start).Round(time.Millisecond), err)
		}
		// Full jitter in [backoff/2, backoff) keeps retrying goroutines
		// from colliding again in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kv: update abandoned after %d attempts: %w: %w", attempt, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// try runs one attempt of Update and returns the bound its commit had (0:
// none).
func (db *DB) try(ctx context.Context, fn func(Txn) error, bound func() (uint64, bool)) (uint64, error) {
	tx, err := db.Engine.Begin(ctx, true)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return 0, err
	}
	var used uint64
	if bound != nil {
		if ts, ok := bound(); ok {
			b, can := tx.(Bounded)
			if !can {
				return 0, fmt.Errorf("kv: engine %T cannot bound a commit by a lease", db.Engine)
			}
			b.CommitBefore(ts)
			used = ts
		}
	}
	return used, tx.Commit(ctx)
}

// View runs fn in a read-only snapshot transaction. Writes inside fn fail
// with ErrReadOnly. fn's error is returned unchanged.
func (db *DB) View(ctx context.Context, fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := db.Engine.Begin(ctx, false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// Sync forwards to the engine.
func (db *DB) Sync(ctx context.Context) error { return db.Engine.Sync(ctx) }

// Close closes the engine.
func (db *DB) Close() error { return db.Engine.Close() }
