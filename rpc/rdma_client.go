package rpc

import (
	"context"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/rdma"
)

// rdmaClientConn moves a clientConn's calls over an RDMA queue pair. Calls
// keep their place in the clientConn's pending table, so deadlines,
// cancellation and failure work as on TCP; what changes is how a request
// goes out (a SEND with its bulk in a registered buffer) and how its reply
// comes in (a RECV, with the bulk already in that buffer).
//
// Its ring is one registered region: depth receive slots, then depth send
// slots. A request takes a credit, the send slot of the same index, which
// comes back once the request's SEND has completed and its reply has come;
// until then the request's bulk buffer is in use too (quarantined, for a
// call that gave up: a late RDMA WRITE lands there and nowhere else).
type rdmaClientConn struct {
	c     *Client
	cc    *clientConn
	qp    rdma.QueuePair
	pool  *rdma.Pool
	ring  rdma.Region
	depth int    // request slots in the ring
	limit int    // request slots in use at most: the server's depth, if lower
	nc    []byte // the session's client nonce
	ns    []byte // and the server's

	credits chan int      // free request slots
	broken  chan struct{} // closed by fail
	bound   chan error    // the binding's outcome; capacity 1
	drain   context.Context
	// stopDrain ends the completion loop's wait for a broken queue pair
	// to flush; fail arms it to fire after rdmaDrainTimeout.
	stopDrain  context.CancelFunc
	drainTimer *time.Timer

	mu       sync.Mutex
	slots    []rdmaSlot
	inflight map[uint64]int // request id to slot
	err      *Error         // why the connection broke
	attached bool           // bound and serving calls
}

// rdmaSlot is one request slot.
type rdmaSlot struct {
	busy    bool
	id      uint64
	buf     *rdma.Buffer // the request's registered bulk buffer, if any
	sent    bool         // its SEND completed
	replied bool         // its reply came
	unsent  bool         // its SEND flushed or failed to post: never sent
}

// dialRDMA connects a queue pair to the server's RDMA address, binds it to
// cc's session, starts its completion loop and sets cc.rd.
func (c *Client) dialRDMA(cc *clientConn, w *welcomeMsg) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.rdmaDialTimeout)
	defer cancel()
	qp, err := c.verbs.Dial(ctx, w.RDMA, c.rdmaCfg)
	if err != nil {
		return localError(syscall.EHOSTUNREACH, err, "rpc: %s: rdma: connect %s: %v", cc.addr, w.RDMA, err)
	}
	depth := min(c.rdmaCfg.Depth(), qp.Limits().RecvDepth, qp.Limits().SendDepth)
	ring, err := qp.Domain().Register(2*depth*rdmaInline, 0)
	if err != nil {
		_ = qp.Close()
		return localError(syscall.ENOMEM, err, "rpc: %s: rdma: %v", cc.addr, err)
	}
	rd := &rdmaClientConn{
		c: c, cc: cc, qp: qp, ring: ring, depth: depth, limit: depth,
		pool:     c.rdmaPool(qp.Domain()),
		nc:       w.clientNonce,
		ns:       w.serverNonce,
		credits:  make(chan int, depth),
		broken:   make(chan struct{}),
		bound:    make(chan error, 1),
		slots:    make([]rdmaSlot, depth),
		inflight: make(map[uint64]int),
	}
	rd.drain, rd.stopDrain = context.WithCancel(context.Background())
	for i := range depth {
		rd.credits <- i
		if err := qp.PostRecv(wrRecv|uint64(i), ring, i*rdmaInline, rdmaInline); err != nil {
			rd.release()
			return localError(syscall.EIO, err, "rpc: %s: rdma: post receive: %v", cc.addr, err)
		}
	}
	if !c.spawn(rd.run) {
		rd.release()
		return c.closedError(cc.addr)
	}
	if err := rd.bind(ctx); err != nil {
		rd.fail(asError(err))
		return err
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.err != nil {
		return rd.err
	}
	// Under rd.mu, so that finish, which reads attached under it, sees
	// cc.rd set.
	cc.rd = rd
	rd.attached = true
	cc.mu.Lock()
	cc.rdmaLive = true
	cc.mu.Unlock()
	return nil
}

// bind proves the queue pair belongs to the session and checks the
// server's proof in answer.
func (rd *rdmaClientConn) bind(ctx context.Context) error {
	frame, err := encodeFrame(header{op: OpRDMABind}, &bindMsg{MAC: rdmaBindMAC(rd.c.secret, rd.nc, rd.ns)})
	if err != nil {
		return localError(syscall.EIO, err, "rpc: %s: rdma: bind: %v", rd.cc.addr, err)
	}
	defer putFrame(frame)
	idx := <-rd.credits
	if err := rd.post(idx, 0, frame.Bytes(), nil, nil); err != nil {
		return err
	}
	select {
	case err := <-rd.bound:
		if err != nil {
			return err
		}
		return nil
	case <-ctx.Done():
		return localError(syscall.ETIMEDOUT, ctx.Err(), "rpc: %s: rdma: bind timed out", rd.cc.addr)
	}
}

// bindReply checks the server's answer to the binding.
func (rd *rdmaClientConn) bindReply(h header, body []byte) {
	var m bindMsg
	var err error
	switch {
	case h.status != 0:
		err = handshakeRefused(rd.cc.addr, h, body)
	case decodeBody(body, &m) != nil || !hmac.Equal(m.MAC, rdmaBoundMAC(rd.c.secret, rd.ns, rd.nc)):
		err = localError(syscall.EACCES, nil, "rpc: %s: rdma: server did not prove the cluster secret", rd.cc.addr)
	case m.Depth > 0 && m.Depth < rd.depth:
		// Keep within the server's receives: retire the credits beyond
		// them. Only the binding's own slot may be busy now.
		for range rd.depth - m.Depth {
			<-rd.credits
		}
		rd.mu.Lock()
		rd.limit = m.Depth
		rd.mu.Unlock()
	}
	select {
	case rd.bound <- err:
	default:
	}
}

// send sends a call over RDMA, or over TCP when its frame is too large for
// an RDMA message or no registered buffer can be had. It waits for a
// credit until ctx ends or deadline.
func (rd *rdmaClientConn) send(ctx context.Context, frame, out, in []byte, deadline time.Time, expires int64) (*call, uint64, error) {
	cc := rd.cc
	if len(frame)+trailerSize > rdmaInline {
		rd.c.tcpCalls.Add(1)
		return cc.send(frame, out, in, deadline, expires)
	}
	var buf *rdma.Buffer
	if n := max(len(out), len(in)); n > 0 {
		b, err := rd.pool.Get(n)
		if err != nil {
			rd.c.warnOnce(&rd.c.rdmaMemWarned, "rpc: no registered memory for a request; sending it over TCP", "addr", cc.addr, "err", err)
			rd.c.tcpCalls.Add(1)
			return cc.send(frame, out, in, deadline, expires)
		}
		buf = b
		copy(buf.Bytes(), out)
	}
	op := frameOp(frame)
	idx, err := rd.acquire(ctx, deadline, op)
	if err != nil {
		rd.pool.Put(buf)
		return nil, 0, err
	}
	c := getCall()
	c.in, c.expires = in, expires
	id := cc.nextID.Add(1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		putCall(c)
		rd.unacquire(idx)
		rd.pool.Put(buf)
		return nil, 0, &Error{Errno: err.Errno, Msg: err.Msg, cause: errWrite}
	}
	cc.pending[id] = c
	cc.mu.Unlock()

	var d descriptors
	if buf != nil {
		if len(out) > 0 {
			d.source = buf.Remote().Slice(0, len(out))
		}
		if len(in) > 0 {
			d.sink = buf.Remote().Slice(0, len(in))
		}
	}
	if err := rd.post(idx, id, frame, buf, &d); err != nil {
		// The request did not go out; the connection is breaking.
		if cc.abandon(id) {
			putCall(c)
		}
		return nil, 0, &Error{Errno: err.Errno, Msg: err.Msg, cause: errWrite}
	}
	cc.lastUse.Store(time.Now().UnixNano())
	rd.c.rdmaCalls.Add(1)
	return c, id, nil
}

// frameOp returns the opcode of an encoded frame.
func frameOp(frame []byte) uint16 { return uint16(frame[6])<<8 | uint16(frame[7]) }

// acquire takes a credit, waiting until ctx ends or deadline. When every
// credit is held by a call that gave up waiting for its reply, the
// connection can never serve another call: it is failed, and the call
// retried on a new one.
func (rd *rdmaClientConn) acquire(ctx context.Context, deadline time.Time, op uint16) (int, error) {
	select {
	case idx := <-rd.credits:
		return idx, nil
	default:
	}
	if rd.allAbandoned() {
		err := localError(syscall.ETIMEDOUT, nil, "rpc: %s: rdma: every request slot is held by a call past its deadline", rd.cc.addr)
		rd.fail(err)
		return 0, &Error{Errno: err.Errno, Msg: err.Msg, cause: errWrite}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case idx := <-rd.credits:
		return idx, nil
	case <-rd.broken:
		err := rd.failure()
		return 0, &Error{Errno: err.Errno, Msg: err.Msg, cause: errWrite}
	case <-ctx.Done():
		return 0, ctxError(ctx.Err(), rd.cc.addr, op)
	case <-timer.C:
		return 0, ctxError(context.DeadlineExceeded, rd.cc.addr, op)
	}
}

// unacquire returns a credit that was not used.
func (rd *rdmaClientConn) unacquire(idx int) { rd.credits <- idx }

// allAbandoned reports whether every request slot belongs to a call nobody
// waits for any more.
func (rd *rdmaClientConn) allAbandoned() bool {
	rd.mu.Lock()
	ids := make([]uint64, 0, len(rd.inflight))
	for id := range rd.inflight {
		ids = append(ids, id)
	}
	limit := rd.limit
	rd.mu.Unlock()
	if len(ids) < limit {
		return false
	}
	cc := rd.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, id := range ids {
		if _, waited := cc.pending[id]; waited || cc.receiving != nil {
			return false
		}
	}
	return true
}

// post encodes a request into send slot idx and sends it. d, when not nil,
// is written as the trailer; buf is the request's bulk buffer. It works
// under rd.mu, so that the ring is never written once the connection has
// broken (finish unmaps it).
func (rd *rdmaClientConn) post(idx int, id uint64, frame []byte, buf *rdma.Buffer, d *descriptors) *Error {
	rd.mu.Lock()
	if rd.err != nil {
		err := rd.err
		rd.mu.Unlock()
		rd.unacquire(idx)
		rd.pool.Put(buf)
		return err
	}
	off := (rd.depth + idx) * rdmaInline
	msg := rd.ring.Bytes()[off : off+len(frame)+trailerSize]
	copy(msg, frame)
	binary.BigEndian.PutUint64(msg[8:], id)
	msg[5] |= flagRDMA
	if d == nil {
		d = &descriptors{}
	}
	d.encode(msg[len(frame):])
	rd.slots[idx] = rdmaSlot{busy: true, id: id, buf: buf}
	rd.inflight[id] = idx
	err := rd.qp.PostSend(wrSend|uint64(idx), rd.ring, off, len(msg))
	if err != nil {
		rd.slots[idx].unsent = true
	}
	rd.mu.Unlock()
	if err != nil {
		e := localError(syscall.ECONNRESET, err, "rpc: %s: rdma: send: %v", rd.cc.addr, err)
		rd.fail(e)
		return e
	}
	return nil
}

// run handles completions until the queue pair has drained after a
// failure, then releases everything.
func (rd *rdmaClientConn) run() {
	defer rd.finish()
	cs := make([]rdma.Completion, 16)
	for {
		n, err := rd.qp.Poll(rd.drain, cs)
		switch {
		case err == nil:
		case errors.Is(err, rdma.ErrDrained) || errors.Is(err, rdma.ErrClosed):
			return
		case rd.drain.Err() != nil:
			rd.c.log.Warn("rpc: rdma queue pair did not flush in time; destroying it", "addr", rd.cc.addr)
			return
		default:
			rd.fail(localError(syscall.EIO, err, "rpc: %s: rdma: poll: %v", rd.cc.addr, err))
			return
		}
		for _, c := range cs[:n] {
			rd.complete(c)
		}
	}
}

// complete handles one completion.
func (rd *rdmaClientConn) complete(c rdma.Completion) {
	idx := int(c.ID &^ wrKind)
	switch c.ID & wrKind {
	case wrRecv:
		if idx >= rd.depth {
			rd.fail(localError(syscall.EPROTO, nil, "rpc: %s: rdma: completion for unknown receive %#x", rd.cc.addr, c.ID))
			return
		}
		if c.Status != rdma.StatusOK {
			if c.Status != rdma.StatusFlushed {
				rd.fail(localError(syscall.ECONNRESET, c.Err(), "rpc: %s: rdma: receive: %v", rd.cc.addr, c.Err()))
			}
			return
		}
		if err := rd.received(idx, c.Len); err != nil {
			rd.fail(err)
		}
	case wrSend:
		if idx >= rd.depth {
			rd.fail(localError(syscall.EPROTO, nil, "rpc: %s: rdma: completion for unknown send %#x", rd.cc.addr, c.ID))
			return
		}
		rd.mu.Lock()
		s := &rd.slots[idx]
		if c.Status != rdma.StatusOK {
			if c.Status == rdma.StatusFlushed {
				s.unsent = true
			}
			rd.mu.Unlock()
			rd.fail(localError(syscall.ECONNRESET, c.Err(), "rpc: %s: rdma: send: %v", rd.cc.addr, c.Err()))
			return
		}
		s.sent = true
		rd.maybeFreeLocked(idx)
		rd.mu.Unlock()
	default:
		rd.fail(localError(syscall.EPROTO, nil, "rpc: %s: rdma: completion for unknown work request %#x", rd.cc.addr, c.ID))
	}
}

// maybeFreeLocked returns slot idx and its buffer once its SEND completed
// and its reply came, unless the connection broke (finish frees slots
// then); rd.mu is held.
func (rd *rdmaClientConn) maybeFreeLocked(idx int) {
	s := &rd.slots[idx]
	if !s.sent || !s.replied || rd.err != nil {
		return
	}
	buf := s.buf
	*s = rdmaSlot{}
	rd.pool.Put(buf)
	rd.credits <- idx
}

// received handles the message in receive slot idx: a reply to a request
// of a slot, or the binding's answer. The receive is posted again.
func (rd *rdmaClientConn) received(idx, n int) *Error {
	cc := rd.cc
	off := idx * rdmaInline
	msg := rd.ring.Bytes()[off : off+n]
	if n < headerSize || n > rdmaInline {
		return localError(syscall.EPROTO, nil, "rpc: %s: rdma: short message of %d bytes", cc.addr, n)
	}
	h, err := decodeHeader(msg)
	if err == nil && (!h.isReply() || h.version != frameVersion || headerSize+int(h.bodyLen) != n) {
		err = errors.New("rpc: malformed reply header")
	}
	if err != nil {
		return localError(syscall.EPROTO, err, "rpc: %s: rdma: protocol error: %v", cc.addr, err)
	}
	body := msg[headerSize:]
	rd.mu.Lock()
	slot, ok := rd.inflight[h.id]
	rd.mu.Unlock()
	if !ok {
		return localError(syscall.EPROTO, nil, "rpc: %s: rdma: reply to unknown request %d", cc.addr, h.id)
	}
	if h.op == OpRDMABind && h.id == 0 {
		rd.bindReply(h, body)
	} else {
		cc.lastUse.Store(time.Now().UnixNano())
		if c := cc.claim(h.id); c != nil {
			rd.deliver(c, h, body, slot)
			cc.received(c)
		}
	}
	if err := rd.qp.PostRecv(wrRecv|uint64(idx), rd.ring, off, rdmaInline); err != nil {
		return localError(syscall.ECONNRESET, err, "rpc: %s: rdma: post receive: %v", cc.addr, err)
	}
	rd.mu.Lock()
	delete(rd.inflight, h.id)
	rd.slots[slot].replied = true
	rd.maybeFreeLocked(slot)
	rd.mu.Unlock()
	return nil
}

// deliver fills call c from reply h, whose bulk the server wrote into the
// buffer of slot.
func (rd *rdmaClientConn) deliver(c *call, h header, body []byte, slot int) {
	c.status = h.status
	if len(body) > 0 {
		c.body = getBuf(len(body))
		copy(c.body, body)
	}
	if h.flags&flagRetryTCP != 0 {
		c.err = localError(syscall.ENOBUFS, errRetryTCP, "rpc: %s: %s", rd.cc.addr, errorText(body))
		return
	}
	n := int(h.bulkLen)
	if n == 0 || h.status != 0 {
		return
	}
	if n > len(c.in) {
		c.err = localError(syscall.EMSGSIZE, nil, "rpc: %s: reply bulk of %d bytes does not fit the %d-byte buffer", rd.cc.addr, n, len(c.in))
		return
	}
	rd.mu.Lock()
	buf := rd.slots[slot].buf
	rd.mu.Unlock()
	if buf == nil || n > len(buf.Bytes()) {
		c.err = localError(syscall.EPROTO, nil, "rpc: %s: rdma: reply announces %d bytes of bulk the request had no room for", rd.cc.addr, n)
		return
	}
	c.bulkN = copy(c.in[:n], buf.Bytes()[:n])
}

// repliedOverTCP frees the slot of a request whose reply came over TCP
// (a reply too large for an RDMA message); the TCP reader calls it for
// every reply.
func (rd *rdmaClientConn) repliedOverTCP(id uint64) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	slot, ok := rd.inflight[id]
	if !ok {
		return
	}
	delete(rd.inflight, id)
	rd.slots[slot].replied = true
	rd.maybeFreeLocked(slot)
}

// fail breaks the RDMA side of the connection: no call takes a credit any
// more, and the queue pair disconnects and flushes. The completion loop
// then cleans up (finish). An attached connection stops taking calls at
// once.
func (rd *rdmaClientConn) fail(err *Error) {
	rd.mu.Lock()
	if rd.err != nil {
		rd.mu.Unlock()
		return
	}
	rd.err = err
	rd.drainTimer = time.AfterFunc(rdmaDrainTimeout, rd.stopDrain)
	attached := rd.attached
	rd.mu.Unlock()
	close(rd.broken)
	if attached {
		rd.cc.broken.Store(true)
	}
	select {
	case rd.bound <- err:
	default:
	}
	_ = rd.qp.Disconnect()
}

// failure returns why the connection broke.
func (rd *rdmaClientConn) failure() *Error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.err
}

// disconnect breaks the RDMA side because the session is closing.
func (rd *rdmaClientConn) disconnect(err *Error) { rd.fail(err) }

// finish runs once the queue pair has drained (or its drain timed out):
// it destroys the queue pair, after which no RDMA touches the buffers,
// returns every buffer, fails the calls whose requests never left as
// unsent (CallBulk sends them again), and fails the session.
func (rd *rdmaClientConn) finish() {
	rd.fail(localError(syscall.ECONNRESET, nil, "rpc: %s: rdma: connection closed", rd.cc.addr))
	_ = rd.qp.Close()
	rd.mu.Lock()
	var unsent []uint64
	for i := range rd.slots {
		s := &rd.slots[i]
		if !s.busy {
			continue
		}
		if s.unsent && !s.replied {
			unsent = append(unsent, s.id)
		}
		rd.pool.Put(s.buf)
		*s = rdmaSlot{}
	}
	rd.inflight = nil
	err, attached := rd.err, rd.attached
	rd.drainTimer.Stop()
	rd.mu.Unlock()
	rd.stopDrain()
	_ = rd.ring.Close()
	if !attached {
		return
	}
	cc := rd.cc
	var resend []*call
	cc.mu.Lock()
	cc.rdmaLive = false
	for _, id := range unsent {
		if c := cc.pending[id]; c != nil {
			delete(cc.pending, id)
			resend = append(resend, c)
		}
	}
	cc.mu.Unlock()
	for _, c := range resend {
		c.err = &Error{Errno: syscall.ECONNRESET, Msg: fmt.Sprintf("%s (request not sent)", err.Msg), cause: errUnsent}
		c.finish()
	}
	cc.fail(err)
}

// release frees what dialRDMA set up before the completion loop started.
func (rd *rdmaClientConn) release() {
	rd.stopDrain()
	_ = rd.qp.Disconnect()
	_ = rd.qp.Close()
	_ = rd.ring.Close()
}

// asError returns err as an *Error, wrapping it in an EIO one if it is not.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return localError(syscall.EIO, err, "%v", err)
}

// warnOnce logs a warning the first time it is called with flag.
func (c *Client) warnOnce(flag *atomic.Bool, msg string, args ...any) {
	if flag.CompareAndSwap(false, true) {
		c.log.Warn(msg, args...)
	}
}
