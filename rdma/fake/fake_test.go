package fake_test

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
	"github.com/stratafs/strata/rdma/verbstest"
)

// newEnv returns a conformance environment on a fresh fabric.
func newEnv(opts fake.Options) func(t *testing.T) verbstest.Env {
	return func(t *testing.T) verbstest.Env {
		f := fake.New(opts)
		t.Cleanup(f.Close)
		return verbstest.Env{
			Server:     f.Node("server"),
			Client:     f.Node("client"),
			ListenAddr: "10.0.0.1:0",
			Config:     rdma.Config{QueueDepth: 16},
		}
	}
}

// TestConformance runs the verbs suite over a fake that reports every
// completion at once, and over one that delays work and reorders
// completions.
func TestConformance(t *testing.T) {
	t.Run("Prompt", func(t *testing.T) { verbstest.Run(t, newEnv(fake.Options{Seed: 1})) })
	t.Run("Adversarial", func(t *testing.T) {
		verbstest.Run(t, newEnv(fake.Options{Seed: 2, MaxDelay: 2 * time.Millisecond, MaxReads: 4}))
	})
}

// pair connects a client and a server queue pair on f.
func pair(t *testing.T, f *fake.Fabric, cfg rdma.Config) (srv, cli rdma.QueuePair) {
	t.Helper()
	ln, err := f.Node("server").Listen("10.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		srv, err = ln.Accept(ctx)
		done <- err
	}()
	cli, err = f.Node("client").Dial(ctx, ln.Addr(), cfg)
	if aerr := <-done; err != nil || aerr != nil {
		t.Fatalf("dial: %v, accept: %v", err, aerr)
	}
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	return srv, cli
}

// register registers size bytes, closed at cleanup.
func register(t *testing.T, qp rdma.QueuePair, size int, access rdma.Access) rdma.Region {
	t.Helper()
	r, err := qp.Domain().Register(size, access)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestLimitsEnforced: posting past the send depth, the receive depth or the
// outstanding READ limit is refused, so a caller that ignores the limits
// fails against the fake.
func TestLimitsEnforced(t *testing.T) {
	block := make(chan struct{})
	f := fake.New(fake.Options{Seed: 3, MaxReads: 2, Hook: func(fake.WorkRequest) { <-block }})
	t.Cleanup(f.Close)
	t.Cleanup(func() { close(block) })
	srv, cli := pair(t, f, rdma.Config{QueueDepth: 4})
	lim := srv.Limits()
	if lim.MaxReads != 2 || lim.RecvDepth != 4 || lim.SendDepth != 12 {
		t.Fatalf("limits %+v", lim)
	}
	src := register(t, cli, 4096, rdma.AccessRemoteRead)
	dst := register(t, srv, 4096, 0)
	for i := range lim.MaxReads {
		if err := srv.PostRead(uint64(i), dst, 0, 16, src.Remote()); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if err := srv.PostRead(9, dst, 0, 16, src.Remote()); !errors.Is(err, rdma.ErrQueueFull) {
		t.Fatalf("read past the limit: %v, want ErrQueueFull", err)
	}
	for i := range lim.SendDepth - lim.MaxReads {
		if err := srv.PostSend(uint64(100+i), dst, 0, 16); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := srv.PostSend(999, dst, 0, 16); !errors.Is(err, rdma.ErrQueueFull) {
		t.Fatalf("send past the depth: %v, want ErrQueueFull", err)
	}
	for i := range lim.RecvDepth {
		if err := cli.PostRecv(uint64(i), src, 0, 16); err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
	}
	if err := cli.PostRecv(99, src, 0, 16); !errors.Is(err, rdma.ErrQueueFull) {
		t.Fatalf("receive past the depth: %v, want ErrQueueFull", err)
	}
	if err := srv.PostSend(1000, src, 0, 16); err == nil {
		t.Fatal("posted a region of another node")
	}
}

// TestFailRateBreaksConnections: with every work request failing, the
// first send drops the connection and everything flushes.
func TestFailRateBreaksConnections(t *testing.T) {
	f := fake.New(fake.Options{Seed: 4, FailRate: 1})
	t.Cleanup(f.Close)
	srv, cli := pair(t, f, rdma.Config{})
	buf := register(t, cli, 4096, 0)
	sbuf := register(t, srv, 4096, 0)
	if err := srv.PostRecv(1, sbuf, 0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := cli.PostSend(2, buf, 0, 10); err != nil {
		t.Fatal(err)
	}
	for name, qp := range map[string]rdma.QueuePair{"client": cli, "server": srv} {
		var got []rdma.Completion
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for {
			cs := make([]rdma.Completion, 4)
			n, err := qp.Poll(ctx, cs)
			if errors.Is(err, rdma.ErrDrained) {
				break
			}
			if err != nil {
				t.Fatalf("%s: poll: %v", name, err)
			}
			got = append(got, cs[:n]...)
		}
		cancel()
		if len(got) != 1 || got[0].Status != rdma.StatusFlushed || got[0].Op != rdma.OpUnknown {
			t.Fatalf("%s: completions %+v, want one flushed with no opcode", name, got)
		}
	}
}

// TestMemlockLimit: registering past the node's lock limit fails with a
// MemlockError naming RLIMIT_MEMLOCK.
func TestMemlockLimit(t *testing.T) {
	f := fake.New(fake.Options{MemlockLimit: 64 << 10})
	t.Cleanup(f.Close)
	n := f.Node("client")
	r, err := n.Domain().Register(64<<10, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Domain().Register(4096, 0)
	if !errors.Is(err, rdma.ErrMemlock) || !errors.Is(err, syscall.ENOMEM) {
		t.Fatalf("register past the limit: %v, want ErrMemlock wrapping ENOMEM", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := n.Registered(); got != 0 {
		t.Fatalf("%d bytes registered after closing every region", got)
	}
	if _, err := n.Domain().Register(4096, 0); err != nil {
		t.Fatalf("register after freeing: %v", err)
	}
}

// TestDialTimesOutWithoutAccept: a listener that never accepts leaves the
// dialer waiting until its context ends.
func TestDialTimesOutWithoutAccept(t *testing.T) {
	f := fake.New(fake.Options{})
	t.Cleanup(f.Close)
	ln, err := f.Node("server").Listen("10.0.0.1:0", rdma.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Node("client").Dial(ctx, ln.Addr(), rdma.Config{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial: %v, want DeadlineExceeded", err)
	}
	// The abandoned request is gone: Accept finds nothing.
	actx, acancel := context.WithCancel(context.Background())
	acancel()
	if _, err := ln.Accept(actx); !errors.Is(err, context.Canceled) {
		t.Fatalf("accept after the dialer gave up: %v", err)
	}
}

// TestHookHoldsWork: a hook holding a WRITE holds the SEND posted after it,
// so the receiver never sees the SEND before the WRITE's data.
func TestHookHoldsWork(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	held := make(chan struct{})
	f := fake.New(fake.Options{Seed: 5, Hook: func(w fake.WorkRequest) {
		if w.Op == rdma.OpWrite {
			once.Do(func() { close(held) })
			<-hold
		}
	}})
	t.Cleanup(f.Close)
	srv, cli := pair(t, f, rdma.Config{})
	sink := register(t, cli, 4096, rdma.AccessRemoteWrite)
	note := register(t, cli, 64, 0)
	src := register(t, srv, 4096, 0)
	if err := cli.PostRecv(1, note, 0, 64); err != nil {
		t.Fatal(err)
	}
	src.Bytes()[0] = 42
	if err := srv.PostWrite(2, src, 0, 4096, sink.Remote()); err != nil {
		t.Fatal(err)
	}
	if err := srv.PostSend(3, src, 0, 8); err != nil {
		t.Fatal(err)
	}
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	n, err := cli.Poll(ctx, make([]rdma.Completion, 4))
	cancel()
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client saw %d completions (%v) while the WRITE was held", n, err)
	}
	close(hold)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := make([]rdma.Completion, 4)
	if n, err := cli.Poll(ctx, cs); err != nil || n != 1 || cs[0].Status != rdma.StatusOK {
		t.Fatalf("after release: %d %v %+v", n, err, cs[:n])
	}
	if sink.Bytes()[0] != 42 {
		t.Fatal("WRITE not in place when the SEND after it was received")
	}
}
