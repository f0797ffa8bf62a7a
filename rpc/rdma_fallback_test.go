package rpc

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
)

// Tests of what happens around RDMA: binding queue pairs to sessions, and
// falling back to TCP where RDMA cannot work.

// rogue is a queue pair that speaks to a server without a Client.
type rogue struct {
	t    *testing.T
	qp   rdma.QueuePair
	ring rdma.Region
}

// dialRogue connects a bare queue pair from node to the server's RDMA
// listener and posts one receive.
func dialRogue(t *testing.T, node rdma.Verbs, s *Server) *rogue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qp, err := node.Dial(ctx, s.rdma.ln.Addr(), noGID)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := qp.Domain().Register(2*rdmaInline, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qp.Close(); _ = ring.Close() })
	if err := qp.PostRecv(wrRecv, ring, 0, rdmaInline); err != nil {
		t.Fatal(err)
	}
	return &rogue{t: t, qp: qp, ring: ring}
}

// call sends msg and returns the answer's header and body, or an error
// when the queue pair broke instead.
func (r *rogue) call(msg []byte) (header, []byte, error) {
	copy(r.ring.Bytes()[rdmaInline:], msg)
	if err := r.qp.PostSend(wrSend, r.ring, rdmaInline, len(msg)); err != nil {
		return header{}, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := make([]rdma.Completion, 4)
	for {
		n, err := r.qp.Poll(ctx, cs)
		if err != nil {
			return header{}, nil, err
		}
		for _, c := range cs[:n] {
			if c.ID == wrRecv && c.Status == rdma.StatusOK {
				m := r.ring.Bytes()[:c.Len]
				h, err := decodeHeader(m)
				return h, m[headerSize:], err
			}
		}
	}
}

// TestRDMABindingRequired: a queue pair is served only once bound to an
// authenticated session by a token derived from that session's handshake,
// and a token binds once.
func TestRDMABindingRequired(t *testing.T) {
	f := newFabric(t, fake.Options{Seed: 18})
	s := rdmaTestServer(t, f.Node("server"), ServerConfig{})
	node := f.Node("rogue")

	// A request before binding is refused.
	r := dialRogue(t, node, s)
	h, body, err := r.call(rawMessage(t, header{op: opEcho, id: 5}, &echoReq{}, descriptors{}))
	if err != nil || h.status != uint32(syscall.EACCES) || errorText(body) != authRequiredText {
		t.Fatalf("request before binding: %+v %q %v", h, errorText(body), err)
	}
	// A made-up token is refused.
	r = dialRogue(t, node, s)
	h, body, err = r.call(rawMessage(t, header{op: OpRDMABind}, &bindMsg{MAC: make([]byte, 32)}, descriptors{}))
	if err != nil || h.status != uint32(syscall.EACCES) || errorText(body) != authFailedText {
		t.Fatalf("bad token: %+v %q %v", h, errorText(body), err)
	}
	if got := s.Stats().Refused; got != 2 {
		t.Fatalf("refused %d, want 2", got)
	}

	// A session's own token binds, once.
	nc := rawConn(t, s.Addr())
	w, err := clientHandshake(nc, s.Addr(), testSecret, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if w.RDMA != s.rdma.ln.Addr() {
		t.Fatalf("welcome offers %q, want %q", w.RDMA, s.rdma.ln.Addr())
	}
	bind := rawMessage(t, header{op: OpRDMABind}, &bindMsg{MAC: rdmaBindMAC(testSecret, w.clientNonce, w.serverNonce)}, descriptors{})
	r = dialRogue(t, node, s)
	h, body, err = r.call(bind)
	var ack bindMsg
	if err != nil || h.status != 0 || msgpack.Unmarshal(body, &ack) != nil ||
		!bytes.Equal(ack.MAC, rdmaBoundMAC(testSecret, w.serverNonce, w.clientNonce)) {
		t.Fatalf("binding with the session's token: %+v %v", h, err)
	}
	if got := s.Stats().RDMAConns; got != 1 {
		t.Fatalf("%d RDMA sessions, want 1", got)
	}
	again := dialRogue(t, node, s)
	if h, _, err := again.call(bind); err != nil || h.status != uint32(syscall.EACCES) {
		t.Fatalf("second binding with one token: %+v %v", h, err)
	}
	// Closing the session's TCP connection drops its queue pair.
	_ = nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, err := r.qp.Poll(ctx, make([]rdma.Completion, 4))
		if errors.Is(err, rdma.ErrDrained) {
			break
		}
		if err != nil {
			t.Fatalf("waiting for the queue pair to drop: %v", err)
		}
	}
	waitFor(t, "the server to forget the session", func() bool { return s.Stats().RDMAConns == 0 })
}

// TestRDMAFallback: where RDMA cannot work, auto uses TCP and rdma fails
// with a clear error.
func TestRDMAFallback(t *testing.T) {
	ctx := context.Background()
	f := newFabric(t, fake.Options{Seed: 19})
	other := newFabric(t, fake.Options{Seed: 20}) // a fabric the server is not on

	t.Run("ServerWithoutDevice", func(t *testing.T) {
		s := rdmaTestServer(t, rdma.None(), ServerConfig{})
		c := rdmaTestClient(t, f.Node("client"), ClientConfig{})
		if err := echo(ctx, c, s.Addr(), pattern(5000, 1)); err != nil {
			t.Fatal(err)
		}
		if got, st := c.Transport(s.Addr()), c.Stats(); got != TransportTCP || st.RDMAFallbacks != 0 || st.TCPCalls != 1 {
			t.Fatalf("transport %q, stats %+v", got, st)
		}
		forced := rdmaTestClient(t, f.Node("client"), ClientConfig{Transport: TransportRDMA})
		err := forced.Ping(ctx, s.Addr())
		if !errors.Is(err, syscall.EPROTONOSUPPORT) || !strings.Contains(err.Error(), "offers no RDMA") {
			t.Fatalf("forced RDMA to a TCP-only server: %v", err)
		}
	})
	t.Run("ClientWithoutDevice", func(t *testing.T) {
		s := rdmaTestServer(t, f.Node("server"), ServerConfig{})
		c := rdmaTestClient(t, rdma.None(), ClientConfig{})
		if err := c.Ping(ctx, s.Addr()); err != nil || c.Transport(s.Addr()) != TransportTCP {
			t.Fatalf("ping %v over %q", err, c.Transport(s.Addr()))
		}
		forced := rdmaTestClient(t, rdma.None(), ClientConfig{Transport: TransportRDMA})
		if err := forced.Ping(ctx, s.Addr()); !errors.Is(err, syscall.EPROTONOSUPPORT) || !strings.Contains(err.Error(), "no RDMA device") {
			t.Fatalf("forced RDMA without a device: %v", err)
		}
	})
	t.Run("Unreachable", func(t *testing.T) {
		s := rdmaTestServer(t, f.Node("server"), ServerConfig{})
		c := rdmaTestClient(t, other.Node("client"), ClientConfig{ConnsPerAddr: 1})
		if err := echo(ctx, c, s.Addr(), pattern(70000, 1)); err != nil {
			t.Fatal(err)
		}
		if got, st := c.Transport(s.Addr()), c.Stats(); got != TransportTCP || st.RDMAFallbacks != 1 {
			t.Fatalf("transport %q, stats %+v", got, st)
		}
		// A new connection within the back-off does not try RDMA again.
		sessionTCP(t, c, s.Addr()).fail(localError(syscall.ECONNRESET, nil, "test"))
		if err := c.Ping(ctx, s.Addr()); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.RDMAFallbacks != 1 {
			t.Fatalf("RDMA tried again during the back-off: %+v", st)
		}
		forced := rdmaTestClient(t, other.Node("client"), ClientConfig{Transport: TransportRDMA})
		if err := forced.Ping(ctx, s.Addr()); err == nil || !strings.Contains(err.Error(), "rdma: connect") {
			t.Fatalf("forced RDMA to an unreachable address: %v", err)
		}
	})
	t.Run("ClientForcesTCP", func(t *testing.T) {
		s := rdmaTestServer(t, f.Node("server"), ServerConfig{})
		c := rdmaTestClient(t, f.Node("client"), ClientConfig{Transport: TransportTCP})
		if err := c.Ping(ctx, s.Addr()); err != nil || c.Transport(s.Addr()) != TransportTCP || s.Stats().RDMAConns != 0 {
			t.Fatalf("ping %v over %q, server %+v", err, c.Transport(s.Addr()), s.Stats())
		}
	})
	t.Run("ServerForcesRDMAWithoutDevice", func(t *testing.T) {
		s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), Verbs: rdma.None(), Transport: TransportRDMA})
		err := s.Start(ctx)
		if err == nil || !errors.Is(err, rdma.ErrNoDevice) {
			s.Stop()
			t.Fatalf("start with transport rdma and no device: %v", err)
		}
	})
	t.Run("Environment", func(t *testing.T) {
		t.Setenv(TransportEnv, "tcp")
		s := startTestServer(t, ServerConfig{Addr: "127.0.0.1:0", Verbs: f.Node("server"), RDMA: noGID})
		if s.rdma != nil {
			t.Fatal("server listens for RDMA under STRATA_TRANSPORT=tcp")
		}
		t.Setenv(TransportEnv, "infiniband")
		c := newTestClient(t, ClientConfig{})
		if err := c.Ping(ctx, s.Addr()); !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "want auto, tcp or rdma") {
			t.Fatalf("bad STRATA_TRANSPORT: %v", err)
		}
		bad := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
		if err := bad.Start(ctx); err == nil {
			bad.Stop()
			t.Fatal("server started with a bad STRATA_TRANSPORT")
		}
	})
	t.Run("Memlock", func(t *testing.T) {
		// Too little lockable memory for even the client's ring: auto
		// uses TCP, rdma says why.
		tight := newFabric(t, fake.Options{Seed: 21, MemlockLimit: 64 << 10})
		s := rdmaTestServer(t, tight.Node("server"), ServerConfig{})
		c := rdmaTestClient(t, tight.Node("client"), ClientConfig{})
		if err := c.Ping(ctx, s.Addr()); err != nil || c.Transport(s.Addr()) != TransportTCP {
			t.Fatalf("ping %v over %q", err, c.Transport(s.Addr()))
		}
		forced := rdmaTestClient(t, tight.Node("client"), ClientConfig{Transport: TransportRDMA})
		if err := forced.Ping(ctx, s.Addr()); !errors.Is(err, rdma.ErrMemlock) || !strings.Contains(err.Error(), "RLIMIT_MEMLOCK") {
			t.Fatalf("forced RDMA with a low lock limit: %v", err)
		}
	})
}

// sessionTCP returns one healthy connection of a client to addr.
func sessionTCP(t *testing.T, c *Client, addr string) *clientConn {
	t.Helper()
	for _, cc := range c.liveConns() {
		if cc.addr == addr {
			return cc
		}
	}
	t.Fatalf("no connection to %s", addr)
	return nil
}

// TestRDMAMemoryShortage: with room to register the rings but not the
// bulk buffers, calls still succeed: the client sends its bulk over TCP,
// and a server that cannot register a request's buffer asks for TCP.
func TestRDMAMemoryShortage(t *testing.T) {
	ctx := context.Background()
	// Depth 2: a client ring of 16 KiB, a server ring of 20 KiB.
	cfg := rdma.Config{GIDIndex: -1, QueueDepth: 2}
	t.Run("Client", func(t *testing.T) {
		f := newFabric(t, fake.Options{Seed: 22})
		cn := f.Node("client")
		cn.SetMemlockLimit(20 << 10)
		s := rdmaTestServer(t, f.Node("server"), ServerConfig{RDMA: cfg})
		c := rdmaTestClient(t, cn, ClientConfig{RDMA: cfg})
		if err := echo(ctx, c, s.Addr(), pattern(1<<20, 4)); err != nil {
			t.Fatal(err)
		}
		if got, st := c.Transport(s.Addr()), c.Stats(); got != TransportRDMA || st.TCPCalls != 1 || st.RDMACalls != 0 {
			t.Fatalf("transport %q, stats %+v: the bulk call should have gone over TCP", got, st)
		}
	})
	t.Run("Server", func(t *testing.T) {
		f := newFabric(t, fake.Options{Seed: 24})
		sn := f.Node("server")
		sn.SetMemlockLimit(24 << 10)
		s := rdmaTestServer(t, sn, ServerConfig{RDMA: cfg})
		c := rdmaTestClient(t, f.Node("client"), ClientConfig{RDMA: cfg})
		if err := echo(ctx, c, s.Addr(), pattern(8<<10, 4)); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.RDMACalls != 1 || st.TCPCalls != 1 {
			t.Fatalf("stats %+v: want one refused RDMA attempt and its TCP resend", st)
		}
		if st := s.Stats(); st.Requests != 1 {
			t.Fatalf("server ran %d requests, want 1", st.Requests)
		}
	})
}
