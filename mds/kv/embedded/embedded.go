// Package embedded is the kv engine that keeps metadata in a badger v4
// database in a local directory: the single-node default behind URLs of
// the form "embedded:DIR[?sync=always|interval|none]". It registers itself
// with package kv on import.
//
// Durability: badger appends every commit to memory-mapped log files
// before Commit returns, so a killed process loses no committed
// transaction whatever the sync policy; the policy only decides how much a
// power loss or kernel crash can take ("always": nothing, "interval": up
// to Options.SyncInterval, "none": whatever the kernel had not written).
//
// It is not a server: one process at a time opens a directory (badger
// holds a lock file in it).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/stratafs/strata/mds/kv"
)

func init() { kv.RegisterEngine("embedded", openURL) }

// Sync policies.
const (
	SyncAlways   = "always"
	SyncInterval = "interval"
	SyncNone     = "none"
)

const (
	defaultSyncInterval = 100 * time.Millisecond
	// gcInterval is how often value-log garbage collection runs. Metadata
	// values mostly stay inline in the LSM tree, so the value log holds
	// only large values (xattrs, big layouts) and grows slowly.
	gcInterval = 5 * time.Minute
	// gcDiscardRatio is the fraction of a value-log file that must be
	// garbage before badger rewrites it.
	gcDiscardRatio = 0.5
)

// Engine is a badger database used as a kv.Engine.
type Engine struct {
	db       *badger.DB
	policy   string
	interval time.Duration

	dirty     chan struct{} // a commit awaits the interval fsync
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the background goroutine exits
	closeOnce sync.Once
	closeErr  error

	group syncGroup // concurrent Syncs share fsyncs
}

// syncGroup is group commit for Sync: a caller is covered by any fsync that
// starts after it asked, so concurrent callers (clients fsyncing files at
// once, each making its size durable) share one fsync instead of queueing
// for one each.
type syncGroup struct {
	mu      sync.Mutex
	cond    *sync.Cond
	asked   uint64 // tickets handed out
	covered uint64 // tickets an fsync has covered
	running bool
	sync    func() error // the fsync (badger's Sync; tests count it)
}

// do returns once an fsync that started after the call has succeeded, or
// with the error of the fsync that covered it.
func (g *syncGroup) do() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	ticket := g.asked
	for g.covered < ticket {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		target := g.asked
		g.mu.Unlock()
		err := g.sync()
		g.mu.Lock()
		g.running = false
		g.cond.Broadcast()
		if err != nil {
			return err
		}
		g.covered = max(g.covered, target)
	}
	return nil
}

var _ kv.Engine = (*Engine)(nil)

// openURL is the kv registry hook: rest is "DIR[?sync=POLICY]".
func openURL(ctx context.Context, rest string, opts kv.Options) (kv.Engine, error) {
	dir, query, _ := strings.Cut(rest, "?")
	if dir == "" {
		return nil, fmt.Errorf("%w: %q: no directory", kv.ErrBadURL, "embedded:"+rest)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", kv.ErrBadURL, "embedded:"+rest, err)
	}
	for name := range params {
		if name != "sync" {
			return nil, fmt.Errorf("%w: %q: unknown parameter %q", kv.ErrBadURL, "embedded:"+rest, name)
		}
	}
	if opts.Sync == "" {
		opts.Sync = params.Get("sync")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return Open(dir, opts)
}

// Open opens (creating if needed) the badger database in dir. opts.Sync
// picks the fsync policy; empty means "interval".
func Open(dir string, opts kv.Options) (*Engine, error) {
	policy := opts.Sync
	if policy == "" {
		policy = SyncInterval
	}
	switch policy {
	case SyncAlways, SyncInterval, SyncNone:
	default:
		return nil, fmt.Errorf("%w: sync policy %q is not always, interval or none", kv.ErrBadURL, policy)
	}
	interval := opts.SyncInterval
	if interval <= 0 {
		interval = defaultSyncInterval
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("kv/embedded: %w", err)
	}
	db, err := badger.Open(badgerOptions(dir, policy == SyncAlways))
	if err != nil {
		return nil, fmt.Errorf("kv/embedded: open %s: %w", dir, err)
	}
	e := &Engine{
		db:       db,
		policy:   policy,
		interval: interval,
		dirty:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	e.group.cond = sync.NewCond(&e.group.mu)
	e.group.sync = db.Sync
	go e.background()
	return e, nil
}

// badgerOptions sizes badger for an MDS that shares a small machine with
// FUSE clients and OSS daemons: badger's defaults (64 MiB memtables times
// five, a 256 MiB block cache, four compactors, 1 GiB value-log files)
// are for a machine of its own. The memtable size also caps a transaction
// at 15% of it (2.4 MiB of inline data), far above any namespace
// operation.
func badgerOptions(dir string, syncWrites bool) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(syncWrites).
		WithLogger(slogLogger{}).
		WithMetricsEnabled(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumCompactors(2).
		WithValueLogFileSize(64 << 20).
		// Values from 64 KiB up go to the value log, so big xattrs are
		// not rewritten by every compaction and do not fill memtables.
		WithValueThreshold(64 << 10)
}

// Begin starts a badger transaction; update says whether it may write.
func (e *Engine) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.db.IsClosed() {
		return nil, errors.New("kv/embedded: engine closed")
	}
	return &txn{e: e, t: e.db.NewTransaction(update), update: update}, nil
}

// Sync fsyncs badger's logs, making every committed transaction durable
// against power loss.
func (e *Engine) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.group.do(); err != nil {
		return fmt.Errorf("kv/embedded: sync: %w", err)
	}
	return nil
}

// Close stops the background goroutine and closes the database, which
// flushes the memtable to disk. It is safe to call more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.done
		if err := e.db.Close(); err != nil {
			e.closeErr = fmt.Errorf("kv/embedded: close: %w", err)
		}
	})
	return e.closeErr
}

// committed tells the background goroutine a write transaction committed,
// so that under the interval policy it fsyncs within the interval.
func (e *Engine) committed() {
	if e.policy != SyncInterval {
		return
	}
	select {
	case e.dirty <- struct{}{}:
	default: // a sync is already pending; it will cover this commit
	}
}

// background runs the interval fsync and the periodic value-log GC until
// Close.
func (e *Engine) background() {
	defer close(e.done)
	gc := time.NewTicker(gcInterval)
	defer gc.Stop()
	var syncDue <-chan time.Time // non-nil while a sync is scheduled
	for {
		select {
		case <-e.stop:
			return
		case <-e.dirty:
			if syncDue == nil {
				syncDue = time.After(e.interval)
			}
		case <-syncDue:
			syncDue = nil
			if err := e.db.Sync(); err != nil {
				slog.Warn("kv/embedded: interval sync failed", "err", err)
			}
		case <-gc.C:
			e.collectValueLog()
		}
	}
}

// collectValueLog rewrites value-log files until none is worth it, or
// Close is called.
func (e *Engine) collectValueLog() {
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		err := e.db.RunValueLogGC(gcDiscardRatio)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			slog.Warn("kv/embedded: value log GC failed", "err", err)
		}
		return
	}
}

// slogLogger routes badger's log to slog, keeping only warnings and
// errors: badger narrates every compaction and memtable flush at INFO. It
// looks up slog.Default at each call, so a logger installed after Open is
// honoured.
type slogLogger struct{}

func (slogLogger) Errorf(format string, args ...any) {
	slog.Error(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (slogLogger) Warningf(format string, args ...any) {
	slog.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}

var _ kv.Clock = (*Engine)(nil)

// Now implements kv.Clock with this process's clock in unix nanoseconds:
// every user of an embedded store is in this process.
func (e *Engine) Now(ctx context.Context) (uint64, error) {
	return uint64(time.Now().UnixNano()), ctx.Err()
}

// Add implements kv.Clock.
func (e *Engine) Add(ts uint64, d time.Duration) uint64 { return ts + uint64(d) }
