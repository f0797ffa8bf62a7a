// Package verbstest is the conformance suite of the rdma verbs interface:
// one set of tests that the in-process fake and the cgo verbs over real
// hardware must both pass, so that code tested against the fake can trust
// what it assumed of verbs.
//
// It checks what the rpc layer relies on: messages land whole in the
// receives posted first, an RDMA WRITE is in place before a SEND posted
// after it is received, READ and WRITE honour keys, ranges and access
// rights, a refused key or a receive too short breaks the connection, and
// a disconnected queue pair flushes every outstanding work request before
// Poll reports it drained. It never assumes that completions come in order.
package verbstest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stratafs/strata/rdma"
)

// Env is one implementation under test: a server and a client node that
// can reach each other.
type Env struct {
	Server rdma.Verbs
	Client rdma.Verbs
	// ListenAddr is where the server listens ("ip:0").
	ListenAddr string
	// Config configures both sides.
	Config rdma.Config
}

// timeout bounds every wait of the suite.
const timeout = 20 * time.Second

// Run runs the suite; newEnv is called once per test.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	tests := []struct {
		name string
		fn   func(t *testing.T, env Env)
	}{
		{"Devices", testDevices},
		{"ConnectInfo", testConnectInfo},
		{"SendRecvOrder", testSendRecvOrder},
		{"WriteBeforeSend", testWriteBeforeSend},
		{"Read", testRead},
		{"BadKeyBreaks", testBadKeyBreaks},
		{"AccessRights", testAccessRights},
		{"DeregisteredKey", testDeregisteredKey},
		{"ReceiveTooShort", testReceiveTooShort},
		{"DisconnectFlushes", testDisconnectFlushes},
		{"PostAfterDisconnectFlushes", testPostAfterDisconnect},
		{"PollHonoursContext", testPollContext},
		{"DialRefused", testDialRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t)) })
	}
}

// conn is a connected pair of queue pairs with registered regions, torn
// down at cleanup: queue pairs first, then regions.
type conn struct {
	t        *testing.T
	srv, cli rdma.QueuePair
	regions  []rdma.Region
}

// connect listens, dials and accepts.
func connect(t *testing.T, env Env) *conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ln, err := env.Server.Listen(env.ListenAddr, env.Config)
	if err != nil {
		t.Fatalf("listen %s: %v", env.ListenAddr, err)
	}
	defer ln.Close()
	type accepted struct {
		qp  rdma.QueuePair
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		qp, err := ln.Accept(ctx)
		ch <- accepted{qp, err}
	}()
	cli, err := env.Client.Dial(ctx, ln.Addr(), env.Config)
	a := <-ch
	if err != nil || a.err != nil {
		if a.qp != nil {
			_ = a.qp.Close()
		}
		if cli != nil {
			_ = cli.Close()
		}
		t.Fatalf("connect %s: dial: %v, accept: %v", ln.Addr(), err, a.err)
	}
	c := &conn{t: t, srv: a.qp, cli: cli}
	t.Cleanup(c.close)
	return c
}

// close destroys the queue pairs and then the regions.
func (c *conn) close() {
	_ = c.cli.Close()
	_ = c.srv.Close()
	for _, r := range c.regions {
		if err := r.Close(); err != nil {
			c.t.Errorf("close region: %v", err)
		}
	}
}

// register registers size bytes on qp's domain, closed at cleanup.
func (c *conn) register(qp rdma.QueuePair, size int, access rdma.Access) rdma.Region {
	c.t.Helper()
	r, err := qp.Domain().Register(size, access)
	if err != nil {
		c.t.Fatalf("register %d bytes: %v", size, err)
	}
	if len(r.Bytes()) < size {
		c.t.Fatalf("registered region has %d bytes, want %d", len(r.Bytes()), size)
	}
	c.regions = append(c.regions, r)
	return r
}

// await polls qp until completions for every id in ids have come, in any
// order, and returns them by id.
func await(t *testing.T, qp rdma.QueuePair, ids ...uint64) map[uint64]rdma.Completion {
	t.Helper()
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	got := make(map[uint64]rdma.Completion, len(ids))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	buf := make([]rdma.Completion, 8)
	for len(got) < len(ids) {
		n, err := qp.Poll(ctx, buf)
		if err != nil {
			t.Fatalf("poll: %v (have %d of %d completions)", err, len(got), len(ids))
		}
		for _, c := range buf[:n] {
			if !want[c.ID] {
				t.Fatalf("completion for unexpected work request %#x: %+v", c.ID, c)
			}
			if _, dup := got[c.ID]; dup {
				t.Fatalf("two completions for work request %#x", c.ID)
			}
			got[c.ID] = c
		}
	}
	return got
}

// drain polls qp until it reports ErrDrained and returns what came before.
func drain(t *testing.T, qp rdma.QueuePair) map[uint64]rdma.Completion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := make(map[uint64]rdma.Completion)
	buf := make([]rdma.Completion, 8)
	for {
		n, err := qp.Poll(ctx, buf)
		if errors.Is(err, rdma.ErrDrained) {
			return got
		}
		if err != nil {
			t.Fatalf("poll while draining: %v", err)
		}
		for _, c := range buf[:n] {
			if _, dup := got[c.ID]; dup {
				t.Fatalf("two completions for work request %#x", c.ID)
			}
			got[c.ID] = c
		}
	}
}

// ok fails the test unless c succeeded as op.
func ok(t *testing.T, c rdma.Completion, op rdma.Opcode) {
	t.Helper()
	if c.Status != rdma.StatusOK || c.Op != op {
		t.Fatalf("work request %#x: %s %s, want %s success", c.ID, c.Op, c.Status, op)
	}
}

// fill writes a pattern seeded by seed into b.
func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = byte(i*13) + seed
	}
}

func testDevices(t *testing.T, env Env) {
	devs, err := env.Server.Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("Devices() = %q, %v; want at least one", devs, err)
	}
	for _, d := range devs {
		if d == "" {
			t.Fatalf("Devices() = %q: empty name", devs)
		}
	}
}

func testConnectInfo(t *testing.T, env Env) {
	c := connect(t, env)
	for _, qp := range []rdma.QueuePair{c.srv, c.cli} {
		info, lim := qp.Info(), qp.Limits()
		if info.Device == "" || info.Local == "" || info.Remote == "" {
			t.Errorf("Info() = %+v: empty fields", info)
		}
		if lim.SendDepth < env.Config.Depth() || lim.RecvDepth < env.Config.Depth() || lim.MaxReads < 1 {
			t.Errorf("Limits() = %+v for queue depth %d", lim, env.Config.Depth())
		}
	}
	if c.cli.Domain() == nil || c.srv.Domain() == nil {
		t.Fatal("queue pair without a domain")
	}
}

func testSendRecvOrder(t *testing.T, env Env) {
	c := connect(t, env)
	const msgs, size = 8, 512
	rbuf := c.register(c.srv, msgs*size, 0)
	sbuf := c.register(c.cli, msgs*size, 0)
	var rids, sids []uint64
	for i := range msgs {
		id := uint64(100 + i)
		if err := c.srv.PostRecv(id, rbuf, i*size, size); err != nil {
			t.Fatalf("post receive %d: %v", i, err)
		}
		rids = append(rids, id)
	}
	for i := range msgs {
		n := 1 + i*size/msgs // every message a different length
		fill(sbuf.Bytes()[i*size:i*size+n], byte(i))
		id := uint64(200 + i)
		if err := c.cli.PostSend(id, sbuf, i*size, n); err != nil {
			t.Fatalf("post send %d: %v", i, err)
		}
		sids = append(sids, id)
	}
	for _, cpl := range await(t, c.cli, sids...) {
		ok(t, cpl, rdma.OpSend)
	}
	got := await(t, c.srv, rids...)
	for i, id := range rids {
		cpl := got[id]
		ok(t, cpl, rdma.OpRecv)
		n := 1 + i*size/msgs
		if cpl.Len != n {
			t.Errorf("receive %d: %d bytes, want %d", i, cpl.Len, n)
		}
		// Message i lands in the receive posted i-th, whatever order the
		// completions came in.
		if want := sbuf.Bytes()[i*size : i*size+n]; !bytes.Equal(rbuf.Bytes()[i*size:i*size+n], want) {
			t.Errorf("receive %d holds the wrong message", i)
		}
	}
}

func testWriteBeforeSend(t *testing.T, env Env) {
	c := connect(t, env)
	const size = 64 << 10
	sink := c.register(c.cli, size, rdma.AccessRemoteWrite)
	note := c.register(c.cli, 64, 0)
	src := c.register(c.srv, size+64, 0)
	for round := range 4 {
		clear(sink.Bytes()[:size])
		if err := c.cli.PostRecv(1, note, 0, 64); err != nil {
			t.Fatal(err)
		}
		fill(src.Bytes()[:size], byte(round+1))
		if err := c.srv.PostWrite(2, src, 0, size, sink.Remote()); err != nil {
			t.Fatalf("post write: %v", err)
		}
		if err := c.srv.PostSend(3, src, size, 16); err != nil {
			t.Fatalf("post send: %v", err)
		}
		ok(t, await(t, c.cli, 1)[1], rdma.OpRecv)
		// The SEND was received, so the WRITE posted before it is in
		// place, even before the server sees its completions.
		if !bytes.Equal(sink.Bytes()[:size], src.Bytes()[:size]) {
			t.Fatalf("round %d: RDMA WRITE not in place when the SEND after it arrived", round)
		}
		got := await(t, c.srv, 2, 3)
		ok(t, got[2], rdma.OpWrite)
		ok(t, got[3], rdma.OpSend)
	}
}

func testRead(t *testing.T, env Env) {
	c := connect(t, env)
	const size = 256 << 10
	src := c.register(c.cli, size, rdma.AccessRemoteRead)
	dst := c.register(c.srv, size, 0)
	fill(src.Bytes(), 7)
	lim := c.srv.Limits().MaxReads
	var ids []uint64
	// As many READs as the limit allows, each a slice of the source.
	chunk := size / lim
	for i := range lim {
		id := uint64(10 + i)
		if err := c.srv.PostRead(id, dst, i*chunk, chunk, src.Remote().Slice(i*chunk, chunk)); err != nil {
			t.Fatalf("post read %d of %d: %v", i, lim, err)
		}
		ids = append(ids, id)
	}
	for _, cpl := range await(t, c.srv, ids...) {
		ok(t, cpl, rdma.OpRead)
	}
	if !bytes.Equal(dst.Bytes()[:lim*chunk], src.Bytes()[:lim*chunk]) {
		t.Fatal("RDMA READ brought the wrong bytes")
	}
}

// expectBroken checks that work request id on qp failed with status want
// (or any failure when want is StatusOther) and that both queue pairs then
// drain.
func expectBroken(t *testing.T, c *conn, qp rdma.QueuePair, id uint64, want rdma.Status) {
	t.Helper()
	cpl := await(t, qp, id)[id]
	if cpl.Status == rdma.StatusOK || (want != rdma.StatusOther && cpl.Status != want) {
		t.Fatalf("work request %#x: %s, want %s", id, cpl.Status, want)
	}
	if cpl.Err() == nil {
		t.Fatalf("failed completion %+v has no error", cpl)
	}
	// The connection is broken: both sides drain (a real device may need
	// the disconnect to notice).
	_ = c.cli.Disconnect()
	_ = c.srv.Disconnect()
	drain(t, c.cli)
	drain(t, c.srv)
}

func testBadKeyBreaks(t *testing.T, env Env) {
	c := connect(t, env)
	sink := c.register(c.cli, 4096, rdma.AccessRemoteWrite)
	src := c.register(c.srv, 4096, 0)
	bad := sink.Remote()
	bad.Key ^= 0x5a5a
	if err := c.srv.PostWrite(1, src, 0, 4096, bad); err != nil {
		t.Fatalf("post write: %v", err)
	}
	expectBroken(t, c, c.srv, 1, rdma.StatusRemoteAccess)
}

func testAccessRights(t *testing.T, env Env) {
	c := connect(t, env)
	readOnly := c.register(c.cli, 4096, rdma.AccessRemoteRead)
	src := c.register(c.srv, 4096, 0)
	fill(readOnly.Bytes(), 3)
	before := bytes.Clone(readOnly.Bytes())
	if err := c.srv.PostWrite(1, src, 0, 4096, readOnly.Remote()); err != nil {
		t.Fatalf("post write: %v", err)
	}
	expectBroken(t, c, c.srv, 1, rdma.StatusRemoteAccess)
	if !bytes.Equal(readOnly.Bytes(), before) {
		t.Fatal("a refused RDMA WRITE changed the region")
	}
}

func testDeregisteredKey(t *testing.T, env Env) {
	c := connect(t, env)
	gone, err := c.cli.Domain().Register(4096, rdma.AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	rem := gone.Remote()
	if err := gone.Close(); err != nil {
		t.Fatalf("close region: %v", err)
	}
	src := c.register(c.srv, 4096, 0)
	if err := c.srv.PostWrite(1, src, 0, 4096, rem); err != nil {
		t.Fatalf("post write: %v", err)
	}
	expectBroken(t, c, c.srv, 1, rdma.StatusRemoteAccess)
}

func testReceiveTooShort(t *testing.T, env Env) {
	c := connect(t, env)
	rbuf := c.register(c.srv, 4096, 0)
	sbuf := c.register(c.cli, 4096, 0)
	if err := c.srv.PostRecv(1, rbuf, 0, 64); err != nil {
		t.Fatal(err)
	}
	if err := c.cli.PostSend(2, sbuf, 0, 1024); err != nil {
		t.Fatal(err)
	}
	expectBroken(t, c, c.srv, 1, rdma.StatusLocalLength)
}

func testDisconnectFlushes(t *testing.T, env Env) {
	c := connect(t, env)
	rbuf := c.register(c.cli, 8*256, 0)
	srvBuf := c.register(c.srv, 8*256, 0)
	for i := range 8 {
		if err := c.cli.PostRecv(uint64(i), rbuf, i*256, 256); err != nil {
			t.Fatal(err)
		}
		if err := c.srv.PostRecv(uint64(100+i), srvBuf, i*256, 256); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.cli.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	for name, qp := range map[string]rdma.QueuePair{"client": c.cli, "server": c.srv} {
		got := drain(t, qp)
		if len(got) != 8 {
			t.Errorf("%s: %d of 8 receives completed before the drain", name, len(got))
		}
		for _, cpl := range got {
			if cpl.Status != rdma.StatusFlushed {
				t.Errorf("%s: receive %d: %s, want flushed", name, cpl.ID, cpl.Status)
			}
		}
	}
}

func testPostAfterDisconnect(t *testing.T, env Env) {
	c := connect(t, env)
	buf := c.register(c.cli, 4096, 0)
	if err := c.cli.Disconnect(); err != nil {
		t.Fatal(err)
	}
	// Verbs accept work on a queue pair in the error state and flush it;
	// refusing it outright is allowed too.
	posted := c.cli.PostSend(7, buf, 0, 100) == nil
	got := drain(t, c.cli)
	if cpl, ok := got[7]; posted && (!ok || cpl.Status != rdma.StatusFlushed) {
		t.Fatalf("send posted after disconnect: %+v (reported %v), want flushed", cpl, ok)
	}
}

func testPollContext(t *testing.T, env Env) {
	c := connect(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.cli.Poll(ctx, make([]rdma.Completion, 4))
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Poll after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(timeout):
		t.Fatal("Poll did not return after its context ended")
	}
}

func testDialRefused(t *testing.T, env Env) {
	ln, err := env.Server.Listen(env.ListenAddr, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr()
	if err := ln.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	qp, err := env.Client.Dial(ctx, addr, env.Config)
	if err == nil {
		_ = qp.Close()
		t.Fatalf("dial %s succeeded with no listener", addr)
	}
	if ctx.Err() != nil {
		t.Fatalf("dial to a closed listener waited for its deadline: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "rdma: ") {
		t.Fatalf("dial error %q does not say it is from rdma", err)
	}
}
