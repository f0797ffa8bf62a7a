// Package testcluster starts a real Strata cluster inside a test process:
// an MDS over an embedded KV store in a temporary directory and OSSes with
// their OSTs, all on 127.0.0.1. The client and FUSE tests and benchmarks
// run against it.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/mds"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/embedded"
	"github.com/stratafs/strata/mds/kv/kvtest"
	"github.com/stratafs/strata/mds/kv/tikv"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Options shapes a cluster.
type Options struct {
	// OSSes and OSTsPerOSS set the object storage: OSSes servers with
	// OSTsPerOSS OSTs each. Zero means 2 and 2.
	OSSes, OSTsPerOSS int
	// StripeCount and StripeSize are the filesystem's default layout;
	// zero takes the format defaults.
	StripeCount int32
	StripeSize  int64
	// Verbose sends the servers' logs to stderr.
	Verbose bool
	// LossyStore keeps the metadata in a kvtest.Lossy over the embedded
	// store (Cluster.Store), whose Crash undoes what was not synced: a
	// power loss of the metadata disk.
	LossyStore bool
	// MDSes runs several MDS servers over one store shared in this process
	// (client-go's in-process TiKV mock when TiKV is set, else the embedded
	// store): MDTs lists, per server, the MDTs it serves (an empty list: a
	// standby). Unset: one MDS serving MDT 0.
	MDSes [][]uint32
	// TiKV keeps the metadata in client-go's in-process TiKV mock.
	TiKV bool
	// MDTLease is the MDSes' MDT ownership lease; 0: the default.
	MDTLease time.Duration
	// MetaLease is the MDSes' metadata lease term; 0: the default.
	MetaLease time.Duration
}

// Cluster is a running cluster.
type Cluster struct {
	FSName string
	Secret []byte
	MDS    string // the MDS address
	OSTs   int
	// OSTDirs are the OST directories, for tests that damage objects.
	OSTDirs []string
	// Store is the MDS's metadata store when Options.LossyStore is set.
	Store *kvtest.Lossy
	// MDSAddrs lists the address of every MDS server, in Options.MDSes
	// order (MDS is the first).
	MDSAddrs []string

	mdsStop []context.CancelFunc

	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// Start formats and starts a cluster; it is stopped when the test ends.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.OSSes == 0 {
		opts.OSSes = 2
	}
	if opts.OSTsPerOSS == 0 {
		opts.OSTsPerOSS = 2
	}
	dir := tb.TempDir()
	cl := &Cluster{FSName: "testfs", Secret: []byte("test-cluster-secret"), OSTs: opts.OSSes * opts.OSTsPerOSS}
	cl.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.Verbose {
		cl.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl.cancel = cancel
	tb.Cleanup(cl.stop)

	if len(opts.MDSes) > 0 || opts.TiKV {
		cl.startShared(tb, ctx, dir, opts)
	} else {
		cl.startOne(tb, ctx, dir, opts)
	}
	for i := range opts.OSSes {
		var osts []string
		for j := range opts.OSTsPerOSS {
			d := filepath.Join(dir, fmt.Sprintf("oss%d-ost%d", i, j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				tb.Fatal(err)
			}
			osts = append(osts, d)
			cl.OSTDirs = append(cl.OSTDirs, d)
		}
		cl.run(fmt.Sprintf("oss%d", i), func() error {
			return oss.Run(ctx, oss.Config{MDS: cl.MDSAddrs, OSTs: osts, Listen: "127.0.0.1:0",
				Secret: cl.Secret, Logger: cl.log})
		})
	}
	if err := cl.waitOSTs(ctx); err != nil {
		tb.Fatalf("testcluster: %v (server errors: %v)", err, cl.Errs())
	}
	return cl
}

// startOne starts the usual single MDS over its own store.
func (cl *Cluster) startOne(tb testing.TB, ctx context.Context, dir string, opts Options) {
	tb.Helper()
	kvURL := "embedded:" + filepath.Join(dir, "kv")
	inner := kvURL
	if opts.LossyStore {
		kvtest.RegisterLossy()
		kvURL = "lossy:" + kvURL
	}
	err := mds.Format(ctx, kvURL, mds.FormatOptions{FSName: cl.FSName, StripeCount: opts.StripeCount,
		StripeSize: opts.StripeSize, Logger: cl.log})
	if err != nil {
		tb.Fatalf("testcluster: format: %v", err)
	}
	addr := make(chan string, 1)
	cl.run("mds", func() error {
		return mds.Run(ctx, mds.Config{KV: kvURL, Listen: "127.0.0.1:0", Secret: cl.Secret, Logger: cl.log,
			MDTLease: opts.MDTLease, MetaLease: opts.MetaLease, OnListen: func(a string) { addr <- a }})
	})
	select {
	case cl.MDS = <-addr:
	case <-time.After(30 * time.Second):
		tb.Fatalf("testcluster: MDS did not start: %v", cl.Errs())
	}
	cl.MDSAddrs = []string{cl.MDS}
	if opts.LossyStore {
		cl.Store = kvtest.Opened(inner)
	}
}

// startShared starts several MDS servers over one store.
func (cl *Cluster) startShared(tb testing.TB, ctx context.Context, dir string, opts Options) {
	tb.Helper()
	var db *kv.DB
	if opts.TiKV {
		e, err := tikv.OpenMock(filepath.Join(dir, "tikv"))
		if err != nil {
			tb.Fatalf("testcluster: %v", err)
		}
		db = &kv.DB{Engine: e}
	} else {
		e, err := embedded.Open(filepath.Join(dir, "kv"), kv.Options{})
		if err != nil {
			tb.Fatalf("testcluster: %v", err)
		}
		db = &kv.DB{Engine: e}
	}
	tb.Cleanup(func() { db.Close() })
	err := mds.FormatDB(ctx, db, mds.FormatOptions{FSName: cl.FSName, StripeCount: opts.StripeCount,
		StripeSize: opts.StripeSize, Logger: cl.log})
	if err != nil {
		tb.Fatalf("testcluster: format: %v", err)
	}
	servers := opts.MDSes
	if len(servers) == 0 {
		servers = [][]uint32{{0}}
	}
	for i, mdts := range servers {
		sctx, stop := context.WithCancel(ctx)
		cl.mdsStop = append(cl.mdsStop, stop)
		addr := make(chan string, 1)
		cl.run(fmt.Sprintf("mds%d", i), func() error {
			return mds.Serve(sctx, db, mds.Config{Listen: "127.0.0.1:0", Secret: cl.Secret, Logger: cl.log,
				MDTs: mdts, Standby: len(mdts) == 0, MDTLease: opts.MDTLease, MetaLease: opts.MetaLease,
				OnListen: func(a string) { addr <- a }})
		})
		select {
		case a := <-addr:
			cl.MDSAddrs = append(cl.MDSAddrs, a)
		case <-time.After(30 * time.Second):
			tb.Fatalf("testcluster: MDS %d did not start: %v", i, cl.Errs())
		}
	}
	cl.MDS = cl.MDSAddrs[0]
}

// StopMDS stops MDS server i abruptly: its listener, sessions and leases
// go at once, as with a crash (the store keeps its records).
func (cl *Cluster) StopMDS(i int) { cl.mdsStop[i]() }

func (cl *Cluster) run(name string, fn func() error) {
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			cl.mu.Lock()
			cl.errs = append(cl.errs, fmt.Errorf("%s: %w", name, err))
			cl.mu.Unlock()
		}
	}()
}

// Errs returns the errors the servers stopped with so far.
func (cl *Cluster) Errs() []error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]error(nil), cl.errs...)
}

// waitOSTs waits until the MDS lists every OST as active and each OSS
// answers for its OSTs (an OSS learns the indices of new OSTs from the
// registration reply, just after the MDS has listed them).
func (cl *Cluster) waitOSTs(ctx context.Context) error {
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret, Logger: cl.log})
	defer rc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var resp proto.TargetsResp
		err := rc.Call(ctx, cl.MDS, proto.OpTargets, &proto.TargetsReq{}, &resp)
		active := 0
		for _, o := range resp.OSTs {
			if o.Active && o.Addr != "" {
				active++
			}
		}
		if err == nil && active == cl.OSTs && served(ctx, rc, resp.OSTs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d OSTs active after 30s (last error %v)", active, cl.OSTs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// served reports whether every OST's OSS answers a statfs for it.
func served(ctx context.Context, rc *rpc.Client, osts []proto.OST) bool {
	for _, o := range osts {
		var st proto.OSTStatfsResp
		if err := rc.Call(ctx, o.Addr, proto.OpOSTStatfs, &proto.OSTStatfsReq{OST: o.Index}, &st); err != nil {
			return false
		}
	}
	return true
}

func (cl *Cluster) stop() {
	cl.cancel()
	cl.wg.Wait()
}

// Client connects a client library instance; it is closed when the test
// ends (before the cluster stops).
func (cl *Cluster) Client(tb testing.TB, cfg client.Config) *client.Client {
	tb.Helper()
	cfg.MDS = cl.MDSAddrs
	cfg.FSName = cl.FSName
	cfg.Secret = cl.Secret
	if cfg.Logger == nil {
		cfg.Logger = cl.log
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("testcluster: client: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("testcluster: close client: %v", err)
		}
	})
	return c
}
