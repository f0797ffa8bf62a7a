package rpc

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

const opDefer uint16 = 110

// TestDeferredReplies parks more requests than the server has workers with
// Request.Defer: none of them holds a worker (a plain echo still gets
// through), and each gets its own answer, in whatever order they are sent.
func TestDeferredReplies(t *testing.T) {
	cfg := ServerConfig{Addr: "127.0.0.1:0", Workers: 1, Secret: testSecret, Logger: quietLogger()}
	s := NewServer(cfg)
	var mu sync.Mutex
	parked := map[string]*Deferred{}
	arrived := make(chan struct{}, 16)
	s.Handle(opDefer, func(_ context.Context, req *Request) (*Reply, error) {
		var r echoReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		mu.Lock()
		parked[r.Text] = req.Defer()
		mu.Unlock()
		arrived <- struct{}{}
		return nil, ErrDeferred
	})
	s.Handle(opEcho, func(_ context.Context, req *Request) (*Reply, error) {
		var r echoReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		return &Reply{Body: &echoResp{Text: r.Text}}, nil
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := newTestClient(t, ClientConfig{})
	ctx := context.Background()

	const n = 5
	got := make(chan string, n)
	for i := range n {
		go func() {
			var resp echoResp
			if err := c.Call(ctx, s.Addr(), opDefer, &echoReq{Text: fmt.Sprint("poll", i)}, &resp); err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- resp.Text
		}()
	}
	for range n {
		<-arrived
	}
	var resp echoResp
	if err := c.Call(ctx, s.Addr(), opEcho, &echoReq{Text: "through"}, &resp); err != nil || resp.Text != "through" {
		t.Fatalf("echo with %d parked requests and one worker: %+v, %v", n, resp, err)
	}
	// The echo's own accounting ends just after its reply is written.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().InFlight != n {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d, want the %d parked requests", s.Stats().InFlight, n)
		}
		runtime.Gosched()
	}
	mu.Lock()
	for i := n - 1; i >= 0; i-- {
		name := fmt.Sprint("poll", i)
		d := parked[name]
		d.Reply(&Reply{Body: &echoResp{Text: "answer " + name}}, nil)
		d.Reply(&Reply{Body: &echoResp{Text: "twice"}}, nil) // ignored
	}
	mu.Unlock()
	seen := map[string]bool{}
	for range n {
		seen[<-got] = true
	}
	for i := range n {
		if want := fmt.Sprint("answer poll", i); !seen[want] {
			t.Fatalf("replies %v lack %q", seen, want)
		}
	}
}

// TestDeferredGone: a parked request learns that its connection closed.
func TestDeferredGone(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
	parked := make(chan *Deferred, 1)
	s.Handle(opDefer, func(_ context.Context, req *Request) (*Reply, error) {
		parked <- req.Defer()
		return nil, ErrDeferred
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger()})
	go func() { _ = c.Call(context.Background(), s.Addr(), opDefer, &echoReq{Text: "x"}, nil) }()
	d := <-parked
	select {
	case <-d.Gone():
		t.Fatal("gone before the connection closed")
	default:
	}
	_ = c.Close()
	<-d.Gone() // the test times out if it never closes
	d.Reply(&Reply{Body: &echoResp{}}, nil)
}
