package kvtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratafs/strata/mds/kv"
)

// Lossy wraps an engine to simulate a power loss: every transaction
// committed since the last Sync is undone by Crash, as a store that had
// not yet made those commits durable would lose them. It stands in for
// the metadata store's disk in durability tests (badger offers no file
// layer to inject faults under): a rule such as "fsync of a directory
// syncs the store before it replies" is tested by committing, calling the
// operation, crashing, and reading back.
//
// Commits are serialized by the wrapper, which reads the keys a
// transaction writes just before committing it, to know what to restore.
type Lossy struct {
	kv.Engine

	mu    sync.Mutex
	undo  [][]priorValue // per commit since the last Sync, oldest first
	syncs atomic.Uint64
}

// priorValue is a key's value before a commit (nil: absent).
type priorValue struct {
	key, value []byte
}

// NewLossy wraps e.
func NewLossy(e kv.Engine) *Lossy { return &Lossy{Engine: e} }

// Begin implements kv.Engine.
func (l *Lossy) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	tx, err := l.Engine.Begin(ctx, update)
	if err != nil {
		return nil, err
	}
	return &lossyTx{Tx: tx, l: l, written: map[string]bool{}}, nil
}

// Sync implements kv.Engine: what was committed is durable from now on.
func (l *Lossy) Sync(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.Engine.Sync(ctx); err != nil {
		return err
	}
	l.undo = nil
	l.syncs.Add(1)
	return nil
}

// Syncs returns how many times Sync succeeded.
func (l *Lossy) Syncs() uint64 { return l.syncs.Load() }

// Unsynced returns how many commits a Crash would undo now.
func (l *Lossy) Unsynced() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.undo)
}

// Crash undoes every commit since the last Sync, newest first.
func (l *Lossy) Crash(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.undo) == 0 {
		return nil
	}
	tx, err := l.Engine.Begin(ctx, true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, commit := range slices.Backward(l.undo) {
		for _, p := range commit {
			if p.value == nil {
				err = tx.Delete(p.key)
			} else {
				err = tx.Set(p.key, p.value)
			}
			if err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	l.undo = nil
	return nil
}

// lossyTx records the keys a transaction writes.
type lossyTx struct {
	kv.Tx
	l       *Lossy
	written map[string]bool
}

func (t *lossyTx) Set(key, value []byte) error {
	t.written[string(key)] = true
	return t.Tx.Set(key, value)
}

func (t *lossyTx) Delete(key []byte) error {
	t.written[string(key)] = true
	return t.Tx.Delete(key)
}

// Commit commits and remembers what the written keys held before.
func (t *lossyTx) Commit(ctx context.Context) error {
	if len(t.written) == 0 {
		return t.Tx.Commit(ctx)
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	prior, err := t.l.read(ctx, t.written)
	if err != nil {
		return err
	}
	if err := t.Tx.Commit(ctx); err != nil {
		return err
	}
	t.l.undo = append(t.l.undo, prior)
	return nil
}

// read returns the committed values of keys. Call with mu held.
func (l *Lossy) read(ctx context.Context, keys map[string]bool) ([]priorValue, error) {
	tx, err := l.Engine.Begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := make([]priorValue, 0, len(keys))
	for k := range keys {
		v, err := tx.Get(ctx, []byte(k))
		if err != nil {
			return nil, err
		}
		out = append(out, priorValue{key: []byte(k), value: v})
	}
	return out, nil
}

// RegisterLossy registers the URL scheme "lossy:" for tests that start
// servers by URL: "lossy:embedded:DIR" opens the embedded store in DIR
// wrapped in a Lossy, which Opened then returns.
func RegisterLossy() {
	registerOnce.Do(func() {
		kv.RegisterEngine("lossy", func(ctx context.Context, rest string, opts kv.Options) (kv.Engine, error) {
			db, err := kv.Open(ctx, rest, opts)
			if err != nil {
				return nil, err
			}
			l := NewLossy(db.Engine)
			opened.Store(rest, l)
			return l, nil
		})
	})
}

var (
	registerOnce sync.Once
	opened       sync.Map // inner URL -> *Lossy
)

// Opened returns the Lossy that "lossy:"+url opened last, or nil.
func Opened(url string) *Lossy {
	if l, ok := opened.Load(url); ok {
		return l.(*Lossy)
	}
	return nil
}

// Now implements kv.Clock if the wrapped engine does.
func (l *Lossy) Now(ctx context.Context) (uint64, error) {
	c, ok := l.Engine.(kv.Clock)
	if !ok {
		return 0, fmt.Errorf("kvtest: %T has no clock", l.Engine)
	}
	return c.Now(ctx)
}

// Add implements kv.Clock if the wrapped engine does.
func (l *Lossy) Add(ts uint64, d time.Duration) uint64 {
	if c, ok := l.Engine.(kv.Clock); ok {
		return c.Add(ts, d)
	}
	return ts + uint64(d)
}

// CommitBefore implements kv.Bounded if the wrapped transaction does.
func (t *lossyTx) CommitBefore(ts uint64) {
	if b, ok := t.Tx.(kv.Bounded); ok {
		b.CommitBefore(ts)
	}
}
