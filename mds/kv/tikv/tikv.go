// Package tikv is the kv engine that keeps metadata in a TiKV cluster
// through client-go: the production engine, and the way past one machine,
// behind URLs of the form "tikv://PD1:2379[,PD2:2379...]". It registers
// itself with package kv on import.
//
// Transactions are optimistic (Percolator two-phase commit, with async
// commit and one-phase commit where the cluster allows them). TiKV reports
// only write-write conflicts: two transactions that read a key and write
// different keys both commit (snapshot isolation, not serializability), so
// namespace code that guards an invariant on a key it only reads must
// also write that key. Commits are durable once acknowledged (Raft and
// TiKV's own WAL), so Sync has nothing to do.
//
// OpenMock runs the same code against client-go's in-process mock store, a
// test double for TiKV and not an engine to ship.
package tikv

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pingcap/log"
	"github.com/tikv/client-go/v2/oracle"
	"github.com/tikv/client-go/v2/testutils"
	tikvstore "github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/txnkv"
	"go.uber.org/zap/zapcore"

	"github.com/stratafs/strata/mds/kv"
)

func init() { kv.RegisterEngine("tikv", openURL) }

// connectTimeout bounds Open when the context has no earlier deadline:
// txnkv.NewClient takes no context and blocks for about 100 s when PD is
// unreachable.
const connectTimeout = 20 * time.Second

// Engine is a TiKV cluster (or client-go's mock of one) used as a
// kv.Engine.
type Engine struct {
	client *txnkv.Client
	ts     tsShare
}

// newEngine wraps a client-go client.
func newEngine(c *txnkv.Client) *Engine {
	e := &Engine{client: c}
	e.ts.fetch = c.GetTimestamp
	return e
}

// TimestampFetches counts the start timestamps fetched from PD (each
// shared by the transactions that began while it was outstanding).
func (e *Engine) TimestampFetches() uint64 { return e.ts.fetches.Load() }

var _ kv.Engine = (*Engine)(nil)

// openURL is the kv registry hook: rest is "//PD1:2379[,PD2:2379...]".
func openURL(ctx context.Context, rest string, _ kv.Options) (kv.Engine, error) {
	addrs, err := parsePDAddrs(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", kv.ErrBadURL, "tikv:"+rest, err)
	}
	return Open(ctx, addrs)
}

// parsePDAddrs splits "//host:port,host:port" into addresses.
func parsePDAddrs(rest string) ([]string, error) {
	list, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return nil, fmt.Errorf("want tikv://HOST:PORT[,HOST:PORT...]")
	}
	list = strings.TrimSuffix(list, "/")
	if list == "" {
		return nil, fmt.Errorf("no PD address")
	}
	addrs := strings.Split(list, ",")
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return nil, fmt.Errorf("PD address %q is not HOST:PORT", a)
		}
	}
	return addrs, nil
}

// Open connects to the TiKV cluster whose PD servers are at pdAddrs. It
// gives up when ctx is done or after connectTimeout; client-go's dial
// cannot be interrupted, so it finishes in the background and a client it
// returns late is closed there.
func Open(ctx context.Context, pdAddrs []string) (*Engine, error) {
	quietClientGo()
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	type result struct {
		client *txnkv.Client
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := txnkv.NewClient(pdAddrs)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("kv/tikv: connect to PD %v: %w", pdAddrs, r.err)
		}
		return newEngine(r.client), nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.client != nil {
				_ = r.client.Close()
			}
		}()
		return nil, fmt.Errorf("kv/tikv: connect to PD %v: %w", pdAddrs, ctx.Err())
	}
}

// OpenMock opens client-go's in-process mock TiKV cluster persisted in dir
// (goleveldb, never fsynced): a test double for exercising this engine
// without a cluster. Reopening the same dir finds the data again.
func OpenMock(dir string) (*Engine, error) {
	quietClientGo()
	client, cluster, pd, err := testutils.NewMockTiKV(dir, nil)
	if err != nil {
		return nil, fmt.Errorf("kv/tikv: mock store in %s: %w", dir, err)
	}
	testutils.BootstrapWithSingleStore(cluster)
	store, err := tikvstore.NewTestTiKVStore(client, pd, nil, nil, 0)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kv/tikv: mock store in %s: %w", dir, err)
	}
	return newEngine(&txnkv.Client{KVStore: store}), nil
}

var quietOnce sync.Once

// quietClientGo raises client-go's log level to warn: at INFO it logs
// region cache and PD chatter for every process start.
func quietClientGo() {
	quietOnce.Do(func() { log.SetLevel(zapcore.WarnLevel) })
}

// Begin starts an optimistic transaction. A read-only one reads at a
// timestamp from PD fetched after Begin was called, shared with the
// read-only begins concurrent with it (tsShare). A read-write one gets a
// timestamp of its own: the start timestamp names a transaction's locks,
// and two writers sharing one would take each other's locks for their own
// and both commit over one another (kvtest ConcurrentIncrement loses
// updates then).
func (e *Engine) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if update {
		t, err := e.client.Begin()
		if err != nil {
			return nil, mapErr("begin", err)
		}
		t.SetEnableAsyncCommit(true)
		t.SetEnable1PC(true)
		return &txn{t: t, update: true}, nil
	}
	ts, err := e.ts.get(ctx)
	if err != nil {
		return nil, mapErr("begin", err)
	}
	t, err := e.client.Begin(tikvstore.WithStartTS(ts))
	if err != nil {
		return nil, mapErr("begin", err)
	}
	return &txn{t: t}, nil
}

var _ kv.Clock = (*Engine)(nil)

// Now implements kv.Clock with a timestamp from PD's oracle (TSO).
func (e *Engine) Now(ctx context.Context) (uint64, error) {
	ts, err := e.client.KVStore.CurrentTimestamp(oracle.GlobalTxnScope)
	if err != nil {
		return 0, fmt.Errorf("kv/tikv: timestamp: %w", err)
	}
	return ts, nil
}

// Add implements kv.Clock: a TSO holds milliseconds above 18 logical bits.
func (e *Engine) Add(ts uint64, d time.Duration) uint64 {
	return ts + uint64(d.Milliseconds())<<18
}

// Sync does nothing: a TiKV commit is durable when acknowledged.
func (e *Engine) Sync(ctx context.Context) error { return ctx.Err() }

// Close releases the client's connections and background goroutines.
func (e *Engine) Close() error {
	if err := e.client.Close(); err != nil {
		return fmt.Errorf("kv/tikv: close: %w", err)
	}
	return nil
}
