package rpc

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCallTimeout(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	c := newTestClient(t, ClientConfig{ConnsPerAddr: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Call(ctx, s.Addr(), opSleep, &echoReq{Delay: int64(300 * time.Millisecond)}, nil)
	if !errors.Is(err, syscall.ETIMEDOUT) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ETIMEDOUT", err)
	}
	var rerr *Error
	if !errors.As(err, &rerr) {
		t.Fatalf("err is %T, want *Error", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("timeout took %v", d)
	}

	// The default deadline applies when ctx has none.
	short := newTestClient(t, ClientConfig{CallTimeout: 50 * time.Millisecond})
	if err := short.Call(context.Background(), s.Addr(), opSleep, &echoReq{Delay: int64(time.Second)}, nil); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("CallTimeout: err = %v", err)
	}

	// The late reply is discarded and the connection stays usable.
	time.Sleep(300 * time.Millisecond)
	var resp echoResp
	if err := c.Call(context.Background(), s.Addr(), opEcho, &echoReq{Text: "after"}, &resp); err != nil || resp.Text != "after" {
		t.Fatalf("call after timeout: %v %+v", err, resp)
	}

	// Cancellation is reported as EINTR.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := c.Call(ctx, s.Addr(), opBlock, nil, nil); !errors.Is(err, syscall.EINTR) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
}

func TestStopFailsPendingCalls(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	c := newTestClient(t, ClientConfig{})
	if err := c.Ping(context.Background(), s.Addr()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 8)
	for range cap(errc) {
		go func() { errc <- c.Call(context.Background(), s.Addr(), opBlock, nil, nil) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().InFlight != int64(cap(errc)) {
		if time.Now().After(deadline) {
			t.Fatalf("handlers did not start: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.Stop()
	for range cap(errc) {
		err := <-errc
		var rerr *Error
		if !errors.As(err, &rerr) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EIO)) {
			t.Fatalf("pending call: %v, want ECONNRESET", err)
		}
		if !strings.Contains(err.Error(), s.Addr()) {
			t.Fatalf("error %q does not name the server", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %v", d)
	}
	if got := s.Stats().InFlight; got != 0 {
		t.Fatalf("%d handlers still running after Stop", got)
	}
	s.Stop() // idempotent
}

func TestReconnectAfterRestart(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	addr := s.Addr()
	c := newTestClient(t, ClientConfig{})
	if err := c.Ping(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	// A call racing the close may go out on the old connection and fail
	// with ECONNRESET; once the client has seen the close, it redials.
	err := c.Ping(context.Background(), addr)
	for i := 0; i < 2 && errors.Is(err, syscall.ECONNRESET); i++ {
		err = c.Ping(context.Background(), addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("call to a stopped server: %v, want ECONNREFUSED naming %s", err, addr)
	}
	s2 := newTestServer(t, addr)
	if s2.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s2.Addr(), addr)
	}
	for i := range 4 {
		if err := c.Ping(context.Background(), addr); err != nil {
			t.Fatalf("ping %d after restart: %v", i, err)
		}
	}
}

func TestDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newTestClient(t, ClientConfig{})
	err = c.Ping(context.Background(), addr)
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Errno != syscall.ECONNREFUSED {
		t.Fatalf("err = %#v, want ECONNREFUSED", err)
	}
	if want := "rpc: " + addr + ": cannot connect: connection refused"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	err = c.Ping(context.Background(), "no-such-host.invalid:7000")
	if !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("unknown host: %v, want EHOSTUNREACH", err)
	}
}

func TestServerStartErrors(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Logger: quietLogger()})
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("started without a secret")
	}
	a := newTestServer(t, "127.0.0.1:0")
	b := NewServer(ServerConfig{Addr: a.Addr(), Secret: testSecret, Logger: quietLogger()})
	if err := b.Start(context.Background()); err == nil {
		b.Stop()
		t.Fatal("two servers on one address")
	}
	b.Stop()

	// Start's context ending stops the server.
	ctx, cancel := context.WithCancel(context.Background())
	s = NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	c := newTestClient(t, ClientConfig{})
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(context.Background(), s.Addr()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("server still serving after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
}

func TestClientClose(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger()})
	if err := c.Ping(context.Background(), s.Addr()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Call(context.Background(), s.Addr(), opBlock, nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("call in flight survived Close")
	}
	if err := c.Ping(context.Background(), s.Addr()); !errors.Is(err, syscall.ESHUTDOWN) {
		t.Fatalf("call after Close: %v", err)
	}
	_ = c.Close()
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
		s.Handle(opEcho, func(context.Context, *Request) (*Reply, error) { return nil, nil })
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := NewClient(ClientConfig{Secret: testSecret, ConnsPerAddr: 3, Logger: quietLogger()})
		for range 20 {
			if err := c.Call(context.Background(), s.Addr(), opEcho, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.Ping(context.Background(), "127.0.0.1:1")
		_ = c.Close()
		s.Stop()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStopUnderLoad(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	addr := s.Addr()
	c := newTestClient(t, ClientConfig{CallTimeout: 10 * time.Second})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := pattern(64<<10, 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, _ = c.CallBulk(context.Background(), addr, opEcho, &echoReq{}, out, nil, make([]byte, len(out)))
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("call took %v during stop", d)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stop took %v", d)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
}

func TestStopWithHandlerSlotsExhausted(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Workers: 1, Logger: quietLogger()})
	s.Handle(opBlock, func(ctx context.Context, _ *Request) (*Reply, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, ClientConfig{ConnsPerAddr: 1})
	errc := make(chan error, 3)
	for range cap(errc) {
		go func() { errc <- c.Call(context.Background(), s.Addr(), opBlock, nil, nil) }()
	}
	// One handler runs; the loop waits for a slot to hand over the next.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().InFlight != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("handler did not start: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.Stats().Requests; got != 1 {
		t.Fatalf("%d requests handed out with one worker", got)
	}
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %v", d)
	}
	for range cap(errc) {
		if err := <-errc; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("call: %v, want ECONNRESET", err)
		}
	}
}
