package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
)

// These tests run real Clients and Servers whose RDMA side is the fake
// fabric of package rdma/fake: work executes late, completions come out of
// order, and queue pairs break where a test says so. The TCP side is real.

const (
	opGate  uint16 = 110 // waits for the test's gate, then replies with bulk
	opCount uint16 = 111 // counts its calls
	opBig   uint16 = 112 // replies with a body larger than an RDMA message
	opBuf   uint16 = 113 // echoes its bulk through Request.BulkBuffer
)

// noGID is an RDMA config that does not read the environment.
var noGID = rdma.Config{GIDIndex: -1}

// newFabric returns a fake fabric, closed after the test's servers and
// clients.
func newFabric(t *testing.T, opts fake.Options) *fake.Fabric {
	t.Helper()
	f := fake.New(opts)
	t.Cleanup(f.Close)
	return f
}

// rdmaServer starts a test server on TCP whose RDMA side is verbs.
func rdmaTestServer(t *testing.T, verbs rdma.Verbs, cfg ServerConfig) *Server {
	t.Helper()
	cfg.Addr, cfg.Verbs = "127.0.0.1:0", verbs
	if cfg.RDMA == (rdma.Config{}) {
		cfg.RDMA = noGID
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportAuto
	}
	return startTestServer(t, cfg)
}

// rdmaTestClient returns a client whose RDMA side is verbs.
func rdmaTestClient(t *testing.T, verbs rdma.Verbs, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Verbs = verbs
	if cfg.RDMA == (rdma.Config{}) {
		cfg.RDMA = noGID
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportAuto
	}
	return newTestClient(t, cfg)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// sessionRDMA returns the RDMA side of a client's connection to addr.
func sessionRDMA(t *testing.T, c *Client, addr string) *rdmaClientConn {
	t.Helper()
	c.mu.Lock()
	p := c.pools[addr]
	c.mu.Unlock()
	if p != nil {
		for _, s := range p.slots {
			s.mu.Lock()
			cc := s.cc
			s.mu.Unlock()
			if cc != nil && cc.rd != nil && cc.healthy() {
				return cc.rd
			}
		}
	}
	t.Fatalf("no RDMA connection to %s", addr)
	return nil
}

// echo calls opEcho with out as bulk and checks the reply's bulk.
func echo(ctx context.Context, c *Client, addr string, out []byte) error {
	in := make([]byte, len(out))
	var resp echoResp
	n, err := c.CallBulk(ctx, addr, opEcho, &echoReq{Text: "e"}, out, &resp, in)
	if err != nil {
		return err
	}
	if n != len(out) || resp.BulkLen != len(out) || !bytes.Equal(in[:n], out) {
		return fmt.Errorf("echo of %d bytes came back as %d (server saw %d), or corrupt", len(out), n, resp.BulkLen)
	}
	return nil
}

// checkReleased closes c and stops s, then checks that every registered
// region of both nodes was released.
func checkReleased(t *testing.T, c *Client, s *Server, nodes ...*fake.Node) {
	t.Helper()
	_ = c.Close()
	s.Stop()
	for _, n := range nodes {
		if got := n.Registered(); got != 0 {
			t.Errorf("%d bytes still registered after Close and Stop", got)
		}
	}
}

func TestRDMARoundTrip(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 11, MaxDelay: 200 * time.Microsecond})
	sn, cn := f.Node("server"), f.Node("client")
	s := rdmaTestServer(t, sn, ServerConfig{})
	c := rdmaTestClient(t, cn, ClientConfig{})
	ctx := context.Background()
	addr := s.Addr()

	var resp echoResp
	if err := c.Call(ctx, addr, opEcho, &echoReq{Text: "hello"}, &resp); err != nil || resp.Text != "hello" {
		t.Fatalf("call: %v %+v", err, resp)
	}
	if got := c.Transport(addr); got != TransportRDMA {
		t.Fatalf("transport %q, want rdma", got)
	}
	if info, ok := c.RDMAInfo(addr); !ok || info.Device != "fake0" {
		t.Fatalf("RDMAInfo = %+v, %v", info, ok)
	}
	if err := echo(ctx, c, addr, pattern(1<<20, 3)); err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 1<<20)
	n, err := c.CallBulk(ctx, addr, opEcho, &echoReq{Text: "gen", Reply: 1 << 20}, nil, &resp, in)
	if err != nil || n != 1<<20 || !bytes.Equal(in, pattern(1<<20, 3)) {
		t.Fatalf("generated bulk: n=%d err=%v", n, err)
	}
	if err := c.Ping(ctx, addr); err != nil {
		t.Fatalf("ping: %v", err)
	}
	cs, ss := c.Stats(), s.Stats()
	if cs.RDMAConns < 1 || cs.RDMACalls != 4 || cs.TCPCalls != 0 || cs.RDMAMemory == 0 {
		t.Errorf("client stats %+v", cs)
	}
	if ss.RDMAConns < 1 || ss.RDMARequests != 4 || ss.Requests != 3 {
		t.Errorf("server stats %+v", ss)
	}
	checkReleased(t, c, s, sn, cn)
}

// TestRDMAIntegrityUnderLoad: many callers, random sizes, out-of-order
// replies, a queue depth and READ limit small enough that requests wait
// for credits and READs queue, and completions reported late and out of
// order: every byte comes back right.
func TestRDMAIntegrityUnderLoad(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 12, MaxDelay: 300 * time.Microsecond, MaxReads: 2})
	sn, cn := f.Node("server"), f.Node("client")
	cfg := rdma.Config{GIDIndex: -1, QueueDepth: 4}
	s := rdmaTestServer(t, sn, ServerConfig{RDMA: cfg})
	c := rdmaTestClient(t, cn, ClientConfig{RDMA: cfg, ConnsPerAddr: 2})
	src := pattern(3<<20, 5)
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 10 {
				var err error
				if i%3 == 2 {
					text := fmt.Sprintf("g%d-%d", g, i)
					var resp echoResp
					delay := time.Duration(rng.IntN(3)) * time.Millisecond
					err = c.Call(context.Background(), s.Addr(), opSleep, &echoReq{Text: text, Delay: int64(delay)}, &resp)
					if err == nil && resp.Text != text {
						err = fmt.Errorf("reply %q for %q", resp.Text, text)
					}
				} else {
					n := rng.IntN(2 << 20)
					off := rng.IntN(1 << 20)
					err = echo(context.Background(), c, s.Addr(), src[off:off+n])
				}
				if err != nil {
					t.Errorf("goroutine %d call %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := c.Stats(); st.TCPCalls != 0 || st.RDMACalls != 120 {
		t.Errorf("client stats %+v: every call should have gone over RDMA", st)
	}
	checkReleased(t, c, s, sn, cn)
}

func TestRDMAErrors(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 13, MaxDelay: 100 * time.Microsecond})
	s := rdmaTestServer(t, f.Node("server"), ServerConfig{})
	c := rdmaTestClient(t, f.Node("client"), ClientConfig{ConnsPerAddr: 1})
	ctx := context.Background()
	addr := s.Addr()

	err := c.Call(ctx, addr, opFail, &echoReq{Text: "x", Errno: uint32(syscall.ENOENT)}, nil)
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "test: x") {
		t.Fatalf("err = %v, want ENOENT with the server's text", err)
	}
	if err := c.Call(ctx, addr, 999, nil, nil); !errors.Is(err, syscall.ENOSYS) {
		t.Fatalf("unknown op = %v, want ENOSYS", err)
	}
	if err := c.Call(ctx, addr, opPanic, nil, nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("panic = %v, want EIO", err)
	}
	if err := c.Call(ctx, addr, OpHello, nil, nil); !errors.Is(err, syscall.EPROTO) {
		t.Fatalf("hello on an open session = %v, want EPROTO", err)
	}
	// A reply bulk larger than the caller's buffer is not written.
	small := bytes.Repeat([]byte{0xee}, 10)
	_, err = c.CallBulk(ctx, addr, opEcho, &echoReq{Reply: 100}, nil, nil, small)
	if !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("short buffer = %v, want EMSGSIZE", err)
	}
	if !bytes.Equal(small, bytes.Repeat([]byte{0xee}, 10)) {
		t.Fatal("a reply bulk that did not fit was written into the caller's buffer")
	}
	if err := echo(ctx, c, addr, pattern(1000, 1)); err != nil {
		t.Fatalf("after EMSGSIZE: %v", err)
	}
	if got := c.Transport(addr); got != TransportRDMA {
		t.Fatalf("transport %q after errors, want rdma", got)
	}
}

// TestRDMALateWriteQuarantined: the reply to a call that timed out is
// written by the server after the caller gave up. Its buffer must not be
// reused before that reply came, or the late RDMA WRITE lands in the next
// request's bulk. The fake holds the late WRITE until the next request has
// taken a buffer and gone out.
func TestRDMALateWriteQuarantined(t *testing.T) {
	var holdWrite, watchSend atomic.Bool
	writeHeld, releaseWrite := make(chan struct{}), make(chan struct{})
	sendSeen := make(chan struct{}, 1)
	f := newFabric(t, fake.Options{Seed: 14, Hook: func(w fake.WorkRequest) {
		if w.Node == "server" && w.Op == rdma.OpWrite && holdWrite.CompareAndSwap(true, false) {
			close(writeHeld)
			<-releaseWrite
		}
		if w.Node == "client" && w.Op == rdma.OpSend && watchSend.CompareAndSwap(true, false) {
			sendSeen <- struct{}{}
		}
	}})
	gate := make(chan struct{})
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), Verbs: f.Node("server"), RDMA: noGID, Transport: TransportAuto})
	s.Handle(opEcho, func(_ context.Context, req *Request) (*Reply, error) {
		return &Reply{Body: &echoResp{BulkLen: len(req.Bulk)}, Bulk: req.Bulk}, nil
	})
	s.Handle(opGate, func(context.Context, *Request) (*Reply, error) {
		<-gate
		return &Reply{Bulk: bytes.Repeat([]byte{0xAA}, 64<<10)}, nil
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := rdmaTestClient(t, f.Node("client"), ClientConfig{ConnsPerAddr: 1})
	addr := s.Addr()
	if err := echo(context.Background(), c, addr, pattern(64<<10, 1)); err != nil {
		t.Fatal(err)
	}
	rd := sessionRDMA(t, c, addr)

	holdWrite.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.CallBulk(ctx, addr, opGate, nil, nil, nil, make([]byte, 64<<10))
	cancel()
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("gated call: %v, want ETIMEDOUT", err)
	}
	close(gate)
	<-writeHeld // the late reply's WRITE, held before it lands

	watchSend.Store(true)
	out := pattern(64<<10, 0x55)
	done := make(chan error, 1)
	go func() { done <- echo(context.Background(), c, addr, out) }()
	<-sendSeen
	// The timed-out call's buffer is still lent, beside the new call's.
	if st := rd.pool.Stats(); st.InUse < 2 {
		t.Errorf("pool has %d buffers in use while a late WRITE is pending; the timed-out call's was reused", st.InUse)
	}
	close(releaseWrite)
	if err := <-done; err != nil {
		t.Fatalf("call after the late WRITE: %v", err)
	}
	// The late reply frees the quarantined buffer.
	waitFor(t, "the quarantined buffer to come back", func() bool { return rd.pool.Stats().InUse == 0 })
}

// TestRDMAResendUnsent: a request whose SEND is flushed by a queue pair
// error never reached the server; the client sends it again on a new
// connection, and the server runs it once.
func TestRDMAResendUnsent(t *testing.T) {
	var holdSend atomic.Bool
	sendHeld, releaseSend := make(chan *fake.QueuePair, 1), make(chan struct{})
	f := newFabric(t, fake.Options{Seed: 15, Hook: func(w fake.WorkRequest) {
		if w.Node == "client" && w.Op == rdma.OpSend && holdSend.CompareAndSwap(true, false) {
			sendHeld <- w.QP
			<-releaseSend
		}
	}})
	var runs atomic.Int64
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), Verbs: f.Node("server"), RDMA: noGID, Transport: TransportAuto})
	s.Handle(opCount, func(context.Context, *Request) (*Reply, error) {
		runs.Add(1)
		return nil, nil
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	c := rdmaTestClient(t, f.Node("client"), ClientConfig{ConnsPerAddr: 1})
	addr := s.Addr()
	if err := c.Ping(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	holdSend.Store(true)
	done := make(chan error, 1)
	go func() { done <- c.Call(context.Background(), addr, opCount, nil, nil) }()
	qp := <-sendHeld
	qp.Break() // the SEND is still queued: it flushes
	close(releaseSend)
	if err := <-done; err != nil {
		t.Fatalf("call whose first SEND flushed: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	if st := c.Stats(); st.RDMACalls != 3 {
		t.Errorf("client stats %+v: want the ping, the flushed send and its resend over RDMA", st)
	}
	if got := c.Transport(addr); got != TransportRDMA {
		t.Fatalf("transport after reconnecting: %q", got)
	}
}

// TestRDMAQueuePairErrors breaks queue pairs again and again under load.
// Every call either returns the right bytes or fails with a transport
// error; the client reconnects over RDMA; nothing registered leaks.
func TestRDMAQueuePairErrors(t *testing.T) {
	var n atomic.Int64
	f := newFabric(t, fake.Options{Seed: 16, MaxDelay: 100 * time.Microsecond, Hook: func(w fake.WorkRequest) {
		if n.Add(1)%37 == 0 {
			w.QP.Break()
		}
	}})
	sn, cn := f.Node("server"), f.Node("client")
	s := rdmaTestServer(t, sn, ServerConfig{})
	c := rdmaTestClient(t, cn, ClientConfig{ConnsPerAddr: 2})
	src := pattern(1<<20, 9)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				size := 1 + (g*7919+i*104729)%(256<<10)
				err := echo(context.Background(), c, s.Addr(), src[:size])
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, syscall.ECONNRESET):
					failed.Add(1)
				default:
					t.Errorf("goroutine %d call %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls succeeded, %d failed with ECONNRESET", ok.Load(), failed.Load())
	if ok.Load() == 0 {
		t.Fatal("no call succeeded")
	}
	if err := echo(context.Background(), c, s.Addr(), src[:1000]); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("call after the storm: %v", err)
	}
	checkReleased(t, c, s, sn, cn)
}

// rawMessage builds an RDMA request message: header, msgpack body and a
// trailer with d.
func rawMessage(t *testing.T, h header, body any, d descriptors) []byte {
	t.Helper()
	f, err := encodeFrame(h, body)
	if err != nil {
		t.Fatal(err)
	}
	msg := append(bytes.Clone(f.Bytes()), make([]byte, trailerSize)...)
	putFrame(f)
	setBulkLen(msg, int(h.bulkLen))
	msg[5] |= flagRDMA
	d.encode(msg[len(msg)-trailerSize:])
	return msg
}

// postRaw sends msg on the client's queue pair as if it were a request.
func postRaw(t *testing.T, rd *rdmaClientConn, msg []byte) {
	t.Helper()
	idx := <-rd.credits
	off := (rd.depth + idx) * rdmaInline
	copy(rd.ring.Bytes()[off:], msg)
	rd.mu.Lock()
	rd.slots[idx] = rdmaSlot{busy: true, id: 1 << 40}
	rd.inflight[1<<40] = idx
	rd.mu.Unlock()
	if err := rd.qp.PostSend(wrSend|uint64(idx), rd.ring, off, len(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestRDMAMisbehavingClient sends what no correct client sends over a
// bound queue pair: a bulk descriptor with a bad rkey, a message shorter
// than a header, a message without descriptors. The server drops that
// session, frees what it held, and keeps serving.
func TestRDMAMisbehavingClient(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 17, MaxDelay: 50 * time.Microsecond})
	sn, cn := f.Node("server"), f.Node("client")
	s := rdmaTestServer(t, sn, ServerConfig{})
	addr := s.Addr()
	cases := []struct {
		name    string
		msg     func(rd *rdmaClientConn) []byte
		refused bool
	}{
		{"BadRkey", func(rd *rdmaClientConn) []byte {
			buf, err := rd.pool.Get(100)
			if err != nil {
				t.Fatal(err)
			}
			bad := buf.Remote()
			bad.Key ^= 0x77
			return rawMessage(t, header{op: opEcho, id: 1 << 40, bulkLen: 100}, &echoReq{}, descriptors{source: bad})
		}, false},
		{"Short", func(*rdmaClientConn) []byte { return []byte("STRA\x01") }, true},
		{"NoDescriptors", func(*rdmaClientConn) []byte {
			m := rawMessage(t, header{op: opEcho, id: 1 << 40}, &echoReq{}, descriptors{})
			m[5] &^= flagRDMA
			return m
		}, true},
		{"SourceLengthMismatch", func(rd *rdmaClientConn) []byte {
			return rawMessage(t, header{op: opEcho, id: 1 << 40, bulkLen: 10}, &echoReq{}, descriptors{source: rdma.Remote{Len: 20}})
		}, true},
		{"Reply", func(*rdmaClientConn) []byte {
			return rawMessage(t, header{op: opEcho, id: 1 << 40, flags: flagReply}, nil, descriptors{})
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rdmaTestClient(t, cn, ClientConfig{ConnsPerAddr: 1})
			if err := c.Ping(context.Background(), addr); err != nil {
				t.Fatal(err)
			}
			rd := sessionRDMA(t, c, addr)
			refused, blocked := s.Stats().Refused, s.Stats().InFlight
			// A call in flight on the session fails with it. (Handlers
			// of earlier cases still block: they end with the server.)
			gate := make(chan error, 1)
			go func() { gate <- c.Call(context.Background(), addr, opBlock, nil, nil) }()
			waitFor(t, "the blocking call to reach its handler", func() bool { return s.Stats().InFlight > blocked })
			postRaw(t, rd, tc.msg(rd))
			if err := <-gate; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("call on the dropped session: %v, want ECONNRESET", err)
			}
			if got := s.Stats().Refused - refused; tc.refused != (got == 1) {
				t.Errorf("refused %d connections, want refused=%v", got, tc.refused)
			}
			waitFor(t, "the session's queue pair to go", func() bool { return s.Stats().RDMAConns == 0 })
			checkServing(t, s)
			if err := echo(context.Background(), c, addr, pattern(5000, 2)); err != nil {
				t.Fatalf("the client's next call: %v", err)
			}
			if got := c.Transport(addr); got != TransportRDMA {
				t.Fatalf("client reconnected over %q", got)
			}
			_ = c.Close()
		})
	}
	s.Stop()
	if got := sn.Registered(); got != 0 {
		t.Errorf("server holds %d registered bytes after Stop", got)
	}
}

// TestRDMALargeFramesUseTCP: a request or reply whose metadata does not
// fit an RDMA message travels over the session's TCP connection, and
// frees its request slot either way.
func TestRDMALargeFramesUseTCP(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 25, MaxDelay: 50 * time.Microsecond})
	cfg := rdma.Config{GIDIndex: -1, QueueDepth: 2}
	s := rdmaTestServer(t, f.Node("server"), ServerConfig{RDMA: cfg})
	s.Handle(opBig, func(_ context.Context, req *Request) (*Reply, error) {
		return &Reply{Body: &echoResp{Text: strings.Repeat("b", 3*rdmaInline)}, Bulk: pattern(100000, 6)}, nil
	})
	c := rdmaTestClient(t, f.Node("client"), ClientConfig{RDMA: cfg, ConnsPerAddr: 1})
	ctx := context.Background()
	long := strings.Repeat("x", 2*rdmaInline)
	for i := range 8 { // more than the queue depth: slots must come back
		var resp echoResp
		if err := c.Call(ctx, s.Addr(), opEcho, &echoReq{Text: long}, &resp); err != nil || resp.Text != long {
			t.Fatalf("large request %d: %v", i, err)
		}
		in := make([]byte, 100000)
		n, err := c.CallBulk(ctx, s.Addr(), opBig, nil, pattern(3000, 1), &resp, in)
		if err != nil || len(resp.Text) != 3*rdmaInline || n != len(in) || !bytes.Equal(in, pattern(100000, 6)) {
			t.Fatalf("large reply %d: n=%d %v", i, n, err)
		}
	}
	if st := c.Stats(); st.TCPCalls != 8 || st.RDMACalls != 8 {
		t.Fatalf("stats %+v", st)
	}
	if got := c.Transport(s.Addr()); got != TransportRDMA {
		t.Fatalf("transport %q", got)
	}
}

// TestBulkBuffer: a handler that builds its reply in Request.BulkBuffer
// gets it back right over both transports; over RDMA the buffer is
// registered memory, so the reply is written to the client without a copy.
func TestBulkBuffer(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 26})
	var registered atomic.Int64
	handler := func(_ context.Context, req *Request) (*Reply, error) {
		b := req.BulkBuffer(len(req.Bulk))
		if other := req.BulkBuffer(10); len(other) != 10 || (len(b) > 0 && &other[0] == &b[0]) {
			return nil, errors.New("second BulkBuffer shares the first")
		}
		if req.in.rdma != nil && req.in.rdma.replyBuf != nil {
			if _, ok := within(b, req.in.rdma.replyBuf.Region().Bytes()); ok {
				registered.Add(1)
			}
		}
		copy(b, req.Bulk)
		return &Reply{Body: &echoResp{BulkLen: len(req.Bulk)}, Bulk: b}, nil
	}
	for _, transport := range []string{TransportTCP, TransportRDMA} {
		s := rdmaTestServer(t, f.Node("server"), ServerConfig{Transport: transport})
		s.Handle(opBuf, handler)
		c := rdmaTestClient(t, f.Node("client"), ClientConfig{Transport: transport})
		out := pattern(200000, 8)
		in := make([]byte, len(out))
		var resp echoResp
		n, err := c.CallBulk(context.Background(), s.Addr(), opBuf, nil, out, &resp, in)
		if err != nil || n != len(out) || !bytes.Equal(in, out) {
			t.Fatalf("%s: n=%d %v", transport, n, err)
		}
	}
	if registered.Load() != 1 {
		t.Fatalf("BulkBuffer gave registered memory %d times over RDMA, want 1", registered.Load())
	}
}

// TestRDMAStop: stopping the server fails the calls in flight over RDMA
// and releases everything; so does closing the client.
func TestRDMAStop(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 27, MaxDelay: 50 * time.Microsecond})
	sn, cn := f.Node("server"), f.Node("client")
	s := rdmaTestServer(t, sn, ServerConfig{})
	c := rdmaTestClient(t, cn, ClientConfig{})
	addr := s.Addr()
	if err := c.Ping(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 4)
	for range cap(errc) {
		go func() { errc <- c.Call(context.Background(), addr, opBlock, nil, nil) }()
	}
	waitFor(t, "the handlers to start", func() bool { return s.Stats().InFlight == int64(cap(errc)) })
	s.Stop()
	for range cap(errc) {
		if err := <-errc; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("call in flight at Stop: %v, want ECONNRESET", err)
		}
	}
	if got := sn.Registered(); got != 0 {
		t.Errorf("server holds %d registered bytes after Stop", got)
	}
	_ = c.Close()
	if got := cn.Registered(); got != 0 {
		t.Errorf("client holds %d registered bytes after Close", got)
	}
}

// TestWelcomeUnchangedWithoutRDMA: a server without RDMA sends the same
// welcome bytes as before RDMA existed.
func TestWelcomeUnchangedWithoutRDMA(t *testing.T) {
	mac := bytes.Repeat([]byte{1}, 32)
	old, err := msgpack.Marshal(&struct {
		MAC     []byte `msgpack:"mac"`
		MaxBulk int    `msgpack:"mb"`
	}{mac, 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	now, err := msgpack.Marshal(&welcomeMsg{MAC: mac, MaxBulk: 1 << 20, clientNonce: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old, now) {
		t.Fatalf("welcome without RDMA encodes as %x, was %x", now, old)
	}
}
