package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/rdma"
)

// rdmaServer is a Server's RDMA side: the rdma_cm listener, the sessions
// that may bind a queue pair, and the queue pairs.
type rdmaServer struct {
	s       *Server
	ln      rdma.Listener
	port    string
	anyHost bool // the listener takes every address: offer each session its own
	depth   int

	mu      sync.Mutex
	offers  map[string]*rdmaOffer // by binding token
	conns   map[*rdmaServerConn]struct{}
	pools   map[rdma.Domain]*rdma.Pool
	stopped bool
	running sync.WaitGroup // the accept loop and the connections' loops

	bound    atomic.Int64  // queue pairs bound to a session now
	requests atomic.Uint64 // requests received over RDMA
}

// rdmaOffer is a session allowed to bind one queue pair.
type rdmaOffer struct {
	sc     *serverConn
	nc, ns []byte // the session's nonces
}

// startRDMA listens for RDMA connections when the transport and the node's
// devices allow it. It runs before gnet starts, so no session sees the
// server half set up.
func (s *Server) startRDMA() error {
	if s.transport == TransportTCP {
		return nil
	}
	forced := s.transport == TransportRDMA
	devs, err := s.verbs.Devices()
	if err != nil || len(devs) == 0 {
		if forced {
			if err == nil {
				err = rdma.ErrNoDevice
			}
			return fmt.Errorf("rpc: listen %s: transport rdma: %w", s.addrWant, err)
		}
		if err != nil {
			s.log.Warn("rpc: listing RDMA devices failed; serving TCP only", "err", err)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(s.addrWant)
	if err != nil {
		return fmt.Errorf("rpc: listen %s: %w", s.addrWant, err)
	}
	src, err := s.rdmaCfg.Source()
	if err != nil {
		return s.rdmaUnavailable(forced, err)
	}
	if src != nil {
		host = src.String()
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ln, err := s.verbs.Listen(net.JoinHostPort(host, "0"), s.rdmaCfg)
	if err != nil {
		return s.rdmaUnavailable(forced, err)
	}
	lhost, port, err := net.SplitHostPort(ln.Addr())
	if err != nil {
		_ = ln.Close()
		return s.rdmaUnavailable(forced, err)
	}
	ip := net.ParseIP(lhost)
	r := &rdmaServer{
		s: s, ln: ln, port: port,
		anyHost: ip == nil || ip.IsUnspecified(),
		depth:   s.rdmaCfg.Depth(),
		offers:  make(map[string]*rdmaOffer),
		conns:   make(map[*rdmaServerConn]struct{}),
		pools:   make(map[rdma.Domain]*rdma.Pool),
	}
	s.rdma = r
	r.running.Add(1)
	go r.accept()
	s.log.Debug("rpc: serving RDMA", "addr", ln.Addr(), "devices", devs)
	return nil
}

// rdmaUnavailable is the outcome of a failure to listen for RDMA: an error
// under transport rdma, a warning (and TCP only) under auto.
func (s *Server) rdmaUnavailable(forced bool, err error) error {
	if forced {
		return fmt.Errorf("rpc: listen %s: transport rdma: %w", s.addrWant, err)
	}
	s.log.Warn("rpc: cannot listen for RDMA; serving TCP only", "err", err)
	return nil
}

// offer lets the session sc bind a queue pair, and returns the RDMA address
// to tell its client, or "" if none. It runs on the session's event loop
// while it authenticates.
func (r *rdmaServer) offer(sc *serverConn, nc []byte) string {
	if r == nil {
		return ""
	}
	host := ""
	if r.anyHost {
		if a, ok := sc.c.LocalAddr().(*net.TCPAddr); ok {
			host = a.IP.String()
		}
	} else {
		host, _, _ = net.SplitHostPort(r.ln.Addr())
	}
	if host == "" {
		return ""
	}
	token := string(rdmaBindMAC(r.s.secret, nc, sc.nonce))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ""
	}
	r.offers[token] = &rdmaOffer{sc: sc, nc: nc, ns: sc.nonce}
	sc.rdmaToken = token
	return net.JoinHostPort(host, r.port)
}

// closed tears down what a closing session had on the RDMA side: its offer
// and its queue pair. It runs in OnClose.
func (r *rdmaServer) closed(sc *serverConn) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if sc.rdmaToken != "" {
		delete(r.offers, sc.rdmaToken)
	}
	r.mu.Unlock()
	if rc := sc.rdma.Load(); rc != nil {
		rc.fail("session closed")
	}
}

// take claims the offer a binding token names; it is good once.
func (r *rdmaServer) take(token []byte) *rdmaOffer {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.offers[string(token)]
	delete(r.offers, string(token))
	return o
}

// pool returns the server's pool of registered buffers on dom: local
// access only, since the server is always the side that moves the bytes.
func (r *rdmaServer) pool(dom rdma.Domain) *rdma.Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pools[dom]
	if p == nil {
		p = rdma.NewPool(dom, 0, 0)
		r.pools[dom] = p
	}
	return p
}

// accept accepts queue pairs until the server stops.
func (r *rdmaServer) accept() {
	defer r.running.Done()
	backoff := 10 * time.Millisecond
	for {
		qp, err := r.ln.Accept(r.s.ctx)
		if err != nil {
			select {
			case <-r.s.stopping:
				return
			default:
			}
			if errors.Is(err, rdma.ErrClosed) || r.s.ctx.Err() != nil {
				return
			}
			r.s.log.Warn("rpc: accept RDMA connection", "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.s.stopping:
				t.Stop()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		rc, err := r.newConn(qp)
		if err != nil {
			r.s.log.Warn("rpc: set up RDMA connection", "peer", qp.Info().Remote, "err", err)
			_ = qp.Disconnect()
			_ = qp.Close()
			continue
		}
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			rc.release()
			continue
		}
		r.conns[rc] = struct{}{}
		r.running.Add(1)
		r.mu.Unlock()
		go rc.run()
	}
}

// stop closes the listener and every queue pair and waits for their loops.
// It may be called more than once.
func (r *rdmaServer) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		r.running.Wait()
		return
	}
	r.stopped = true
	conns := make([]*rdmaServerConn, 0, len(r.conns))
	for rc := range r.conns {
		conns = append(conns, rc)
	}
	r.offers = map[string]*rdmaOffer{}
	r.mu.Unlock()
	_ = r.ln.Close()
	for _, rc := range conns {
		rc.fail("server stopped")
	}
	r.running.Wait()
}

// closePools deregisters the buffers; those still lent to handlers are
// deregistered as they come back.
func (r *rdmaServer) closePools() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pools {
		_ = p.Close()
	}
}

// rdmaServerConn serves one queue pair. Its completion loop parses
// requests, RDMA-reads their bulk and hands them to the server's workers;
// workers post replies (reply), which wait their turn for send-queue room.
//
// Its ring is one registered region: depth receive slots, then depth+1
// send slots for replies (one more for the binding's answer).
type rdmaServerConn struct {
	r     *rdmaServer
	qp    rdma.QueuePair
	pool  *rdma.Pool
	ring  rdma.Region
	depth int
	peer  string

	drain     context.Context
	stopDrain context.CancelFunc
	bindTimer *time.Timer

	mu         sync.Mutex
	sc         *serverConn // the session, once bound
	broken     bool
	drainTimer *time.Timer
	sqFree     int            // send-queue room
	readsFree  int            // RDMA READs that may still start
	sendSlots  []int          // free send slots
	reads      []*rdmaRequest // requests waiting to read their bulk
	replies    []*rdmaReply   // replies waiting to be posted
	ops        map[uint64]any // posted work: *rdmaRequest (READ) or *rdmaReply
	nextOp     uint64
}

// rdmaRequest is a request that came over RDMA, from its receipt until
// its reply has been sent: inFrame.rdma.
type rdmaRequest struct {
	rc       *rdmaServerConn
	in       *inFrame
	source   rdma.Remote  // the request's bulk at the client
	sink     rdma.Remote  // where its reply's bulk goes
	buf      *rdma.Buffer // the request's bulk, read from the client
	replyBuf *rdma.Buffer // from Request.BulkBuffer
}

// rdmaReply is a reply waiting to be posted or completing.
type rdmaReply struct {
	req     *rdmaRequest // nil for the loop's own replies
	frame   *bytes.Buffer
	bulk    []byte       // in registered memory: region at off
	region  rdma.Region  // where bulk lies
	off     int          // its offset there
	copied  *rdma.Buffer // bulk copied into registered memory, if it was not
	release func()       // the handler's
	slot    int
	pending int  // work requests posted and not completed
	closeOn bool // fail the connection once sent (a refusal)
}

// newConn sets up a queue pair's ring and posts its receives.
func (r *rdmaServer) newConn(qp rdma.QueuePair) (*rdmaServerConn, error) {
	lim := qp.Limits()
	depth := min(r.depth, lim.RecvDepth)
	ring, err := qp.Domain().Register((2*depth+1)*rdmaInline, 0)
	if err != nil {
		return nil, err
	}
	rc := &rdmaServerConn{
		r: r, qp: qp, ring: ring, depth: depth,
		pool:      r.pool(qp.Domain()),
		peer:      qp.Info().Remote,
		sqFree:    lim.SendDepth,
		readsFree: max(1, lim.MaxReads),
		ops:       make(map[uint64]any),
	}
	rc.drain, rc.stopDrain = context.WithCancel(context.Background())
	for i := range depth + 1 {
		rc.sendSlots = append(rc.sendSlots, depth+i)
	}
	for i := range depth {
		if err := qp.PostRecv(wrRecv|uint64(i), ring, i*rdmaInline, rdmaInline); err != nil {
			rc.release()
			return nil, fmt.Errorf("post receive: %w", err)
		}
	}
	rc.bindTimer = time.AfterFunc(r.s.authTimeout, func() { rc.fail("no binding before the authentication deadline") })
	return rc, nil
}

// release frees what newConn set up, for a queue pair whose loop never ran.
func (rc *rdmaServerConn) release() {
	rc.stopDrain()
	if rc.bindTimer != nil {
		rc.bindTimer.Stop()
	}
	_ = rc.qp.Disconnect()
	_ = rc.qp.Close()
	_ = rc.ring.Close()
}

// run handles completions until the queue pair has drained after a
// failure, then cleans up.
func (rc *rdmaServerConn) run() {
	defer rc.r.running.Done()
	defer rc.finish()
	cs := make([]rdma.Completion, 16)
	for {
		n, err := rc.qp.Poll(rc.drain, cs)
		switch {
		case err == nil:
		case errors.Is(err, rdma.ErrDrained) || errors.Is(err, rdma.ErrClosed):
			return
		case rc.drain.Err() != nil:
			rc.r.s.log.Warn("rpc: rdma queue pair did not flush in time; destroying it", "peer", rc.peer)
			return
		default:
			rc.fail(fmt.Sprintf("poll: %v", err))
			return
		}
		for _, c := range cs[:n] {
			rc.complete(c)
		}
	}
}

// complete handles one completion.
func (rc *rdmaServerConn) complete(c rdma.Completion) {
	if c.ID&wrKind == wrRecv {
		idx := int(c.ID &^ wrKind)
		switch {
		case idx >= rc.depth:
			rc.fail(fmt.Sprintf("completion for unknown receive %#x", c.ID))
		case c.Status == rdma.StatusFlushed:
		case c.Status != rdma.StatusOK:
			rc.fail(fmt.Sprintf("receive: %v", c.Err()))
		default:
			rc.received(idx, c.Len)
		}
		return
	}
	rc.mu.Lock()
	op, ok := rc.ops[c.ID]
	delete(rc.ops, c.ID)
	if ok {
		rc.sqFree++
	}
	rc.mu.Unlock()
	if !ok {
		rc.fail(fmt.Sprintf("completion for unknown work request %#x", c.ID))
		return
	}
	switch op := op.(type) {
	case *rdmaRequest:
		rc.mu.Lock()
		rc.readsFree++
		rc.mu.Unlock()
		if c.Status != rdma.StatusOK {
			op.in.release()
			if c.Status != rdma.StatusFlushed {
				rc.fail(fmt.Sprintf("RDMA READ of a request's bulk: %v", c.Err()))
			}
			break
		}
		rc.dispatch(op.in)
	case *rdmaReply:
		rc.mu.Lock()
		op.pending--
		done := op.pending == 0
		if done {
			rc.sendSlots = append(rc.sendSlots, op.slot)
		}
		rc.mu.Unlock()
		if done {
			op.done()
		}
		if c.Status != rdma.StatusOK && c.Status != rdma.StatusFlushed {
			rc.fail(fmt.Sprintf("reply: %v", c.Err()))
		} else if done && op.closeOn {
			rc.fail("refused")
		}
	}
	rc.pump()
}

// received parses the message in receive slot idx, posts the receive
// again, and serves the request: the binding, a request the loop answers
// itself, or one for a handler once its bulk has been read.
func (rc *rdmaServerConn) received(idx, n int) {
	s := rc.r.s
	off := idx * rdmaInline
	msg := rc.ring.Bytes()[off : off+n]
	h, perr := parseRDMARequest(msg, s.maxBulk)
	var body []byte
	var d descriptors
	if perr == nil {
		if h.bodyLen > 0 {
			body = getBuf(int(h.bodyLen))
			copy(body, msg[headerSize:])
		}
		d = decodeDescriptors(msg[headerSize+int(h.bodyLen):])
	}
	if err := rc.qp.PostRecv(wrRecv|uint64(idx), rc.ring, off, rdmaInline); err != nil {
		putBuf(body)
		rc.fail(fmt.Sprintf("post receive: %v", err))
		return
	}
	if perr != nil {
		s.log.Warn("rpc: closing RDMA connection: malformed message", "peer", rc.peer, "err", perr)
		s.refused.Add(1)
		rc.fail(perr.Error())
		return
	}
	rc.mu.Lock()
	sc := rc.sc
	rc.mu.Unlock()
	if sc == nil {
		rc.bind(h, body)
		putBuf(body)
		return
	}
	rc.r.requests.Add(1)
	sc.lastActive.Store(time.Now().UnixNano())
	in := &inFrame{h: h, body: body}
	if h.op >= FirstUserOp {
		in.handler = s.handler(h.op)
	}
	if in.handler == nil {
		putBuf(body)
		switch h.op {
		case OpPing:
			rc.replyLoop(header{flags: flagReply, op: h.op, id: h.id}, nil, false)
		case OpHello, OpRDMABind:
			rc.replyLoop(header{flags: flagReply, op: h.op, id: h.id, status: uint32(syscall.EPROTO)}, "rpc: connection already authenticated", false)
		default:
			rc.replyLoop(header{flags: flagReply, op: h.op, id: h.id, status: uint32(syscall.ENOSYS)}, fmt.Sprintf("rpc: op %d not supported", h.op), false)
		}
		return
	}
	req := &rdmaRequest{rc: rc, in: in, source: d.source, sink: d.sink}
	in.rdma = req
	if h.bulkLen == 0 {
		rc.dispatch(in)
		return
	}
	buf, err := rc.pool.Get(int(h.bulkLen))
	if err != nil {
		// Unserved: the client sends it again over TCP.
		s.log.Warn("rpc: no registered memory for an RDMA request; asking for TCP", "peer", rc.peer, "err", err)
		putBuf(body)
		rc.replyLoop(header{flags: flagReply | flagRetryTCP, op: h.op, id: h.id, status: uint32(syscall.ENOBUFS)}, "rpc: server out of registered memory", false)
		return
	}
	req.buf = buf
	in.bulk = buf.Bytes()
	rc.mu.Lock()
	if rc.broken {
		rc.mu.Unlock()
		in.release()
		return
	}
	rc.reads = append(rc.reads, req)
	rc.mu.Unlock()
	rc.pump()
}

// parseRDMARequest checks a request message: a well-formed request header
// within the limits, flagRDMA, and exactly its body and trailer.
func parseRDMARequest(msg []byte, maxBulk int) (header, error) {
	if len(msg) < headerSize+trailerSize {
		return header{}, fmt.Errorf("rpc: short RDMA message of %d bytes", len(msg))
	}
	h, err := decodeHeader(msg)
	if err != nil {
		return h, err
	}
	if ferr := h.check(maxBulk); ferr != nil {
		return h, ferr
	}
	switch {
	case h.isReply():
		return h, errors.New("rpc: unexpected reply frame")
	case h.flags&flagRDMA == 0:
		return h, errors.New("rpc: RDMA message without descriptors")
	case headerSize+int(h.bodyLen)+trailerSize != len(msg):
		return h, fmt.Errorf("rpc: RDMA message of %d bytes announces a %d-byte body", len(msg), h.bodyLen)
	}
	if src := decodeDescriptors(msg[headerSize+int(h.bodyLen):]).source; src.Len != h.bulkLen {
		return h, fmt.Errorf("rpc: RDMA request of %d bulk bytes names a %d-byte source", h.bulkLen, src.Len)
	}
	return h, nil
}

// bind binds the queue pair to the session whose token the first message
// carries, or refuses it.
func (rc *rdmaServerConn) bind(h header, body []byte) {
	s := rc.r.s
	var m bindMsg
	if h.op != OpRDMABind || h.bulkLen != 0 || len(body) > maxHandshakeBody || decodeBody(body, &m) != nil {
		s.log.Warn("rpc: refused RDMA connection: request before binding", "peer", rc.peer, "op", h.op)
		s.refused.Add(1)
		rc.replyLoop(header{flags: flagReply, op: h.op, id: h.id, status: uint32(syscall.EACCES)}, authRequiredText, true)
		return
	}
	o := rc.r.take(m.MAC)
	if o == nil {
		s.log.Warn("rpc: refused RDMA connection: unknown or used binding", "peer", rc.peer)
		s.refused.Add(1)
		rc.replyLoop(header{flags: flagReply, op: h.op, id: h.id, status: uint32(syscall.EACCES)}, authFailedText, true)
		return
	}
	rc.bindTimer.Stop()
	sc := o.sc
	rc.mu.Lock()
	rc.sc = sc
	rc.mu.Unlock()
	rc.r.bound.Add(1)
	sc.rdma.Store(rc)
	sc.wmu.Lock()
	closed := sc.closed
	sc.wmu.Unlock()
	if closed {
		// The session closed before it could see the queue pair.
		rc.fail("session closed")
		return
	}
	rc.replyLoop(header{flags: flagReply, op: OpRDMABind, id: h.id}, &bindMsg{MAC: rdmaBoundMAC(s.secret, o.ns, o.nc), Depth: rc.depth}, false)
}

// dispatch hands a complete request to a worker.
func (rc *rdmaServerConn) dispatch(in *inFrame) {
	rc.mu.Lock()
	sc := rc.sc
	rc.mu.Unlock()
	if !rc.r.s.hand(job{sc: sc, in: in}) {
		in.release()
		rc.fail("server stopped")
	}
}

// replyLoop sends a small reply of the loop's own (ping, refusals, the
// binding's answer); closeOn fails the connection once it is sent.
func (rc *rdmaServerConn) replyLoop(h header, body any, closeOn bool) {
	frame, err := encodeFrame(h, body)
	if err != nil {
		rc.fail(fmt.Sprintf("encode reply: %v", err))
		return
	}
	rc.submit(&rdmaReply{frame: frame, closeOn: closeOn})
}

// fail breaks the connection: the queue pair disconnects and flushes, and
// the completion loop cleans up once it has drained.
func (rc *rdmaServerConn) fail(why string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.failLocked(why)
}

// failLocked is fail with rc.mu held.
func (rc *rdmaServerConn) failLocked(why string) {
	if rc.broken {
		return
	}
	rc.broken = true
	rc.r.s.log.Debug("rpc: closing RDMA connection", "peer", rc.peer, "why", why)
	rc.drainTimer = time.AfterFunc(rdmaDrainTimeout, rc.stopDrain)
	_ = rc.qp.Disconnect()
}

// finish runs once the queue pair has drained (or its drain timed out):
// it destroys the queue pair, after which no RDMA touches the buffers, and
// releases every request and reply still held, then closes the session.
func (rc *rdmaServerConn) finish() {
	rc.fail("closing")
	rc.bindTimer.Stop()
	_ = rc.qp.Close()
	rc.mu.Lock()
	rc.drainTimer.Stop()
	var reqs []*rdmaRequest
	reps := rc.replies
	rc.replies = nil
	reqs = append(reqs, rc.reads...)
	rc.reads = nil
	for _, op := range rc.ops {
		switch op := op.(type) {
		case *rdmaRequest:
			reqs = append(reqs, op)
		case *rdmaReply:
			if op.pending > 0 {
				op.pending = 0
				reps = append(reps, op)
			}
		}
	}
	rc.ops = nil
	sc := rc.sc
	rc.mu.Unlock()
	rc.stopDrain()
	for _, q := range reqs {
		q.in.release()
	}
	for _, rep := range reps {
		rep.done()
	}
	_ = rc.ring.Close()
	r := rc.r
	r.mu.Lock()
	delete(r.conns, rc)
	r.mu.Unlock()
	if sc != nil {
		r.bound.Add(-1)
		r.s.onLoop(sc.c.Close)
	}
}
