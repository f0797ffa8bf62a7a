package rpc

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// serverConn is a server's state for one connection. Fields without atomics
// are touched only on the connection's event loop.
type serverConn struct {
	c        gnet.Conn
	fd       int // gnet's socket, written by workers (see writeReply)
	peer     string
	nonce    []byte // the challenge sent to the client
	openedAt time.Time

	in    *inFrame // the request being received, if any
	ready []job    // complete requests to hand to workers

	authed     atomic.Bool
	lastActive atomic.Int64 // unix nanoseconds of the last frame in or out
	inFlight   atomic.Int64 // requests being handled

	rdma      atomic.Pointer[rdmaServerConn] // the queue pair bound to the session
	rdmaToken string                         // the binding token offered, on the loop

	wmu         sync.Mutex             // serializes writes to the socket
	closed      bool                   // OnClose ran: the descriptor is gnet's to close
	parked      map[*Deferred]struct{} // deferred requests not answered yet
	queued      int                    // replies handed to AsyncWritev, not yet written
	backlog     bool                   // gnet's outbound buffer held data when last seen
	loopWriting bool                   // the loop is writing with gnet
}

// eventHandler is the server's gnet event handler. Its methods run on gnet's
// event loops (OnTick on gnet's ticker goroutine) and must never block on
// anything but a free handler slot.
type eventHandler struct {
	gnet.BuiltinEventEngine
	s      *Server
	booted chan<- error
}

var _ gnet.EventHandler = (*eventHandler)(nil)

// OnBoot records the engine, keeps a duplicate of the listening socket (for
// stopEngine) and releases Start with the listener's address.
func (e *eventHandler) OnBoot(eng gnet.Engine) gnet.Action {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eng = eng
	select {
	case <-s.stopping:
		// Stop ran before the engine existed, so it could not stop it.
		e.booted <- fmt.Errorf("rpc: server stopped")
		return gnet.Shutdown
	default:
	}
	fd, err := eng.Dup()
	if err == nil {
		s.lnFD = fd
		s.addr, err = localAddr(fd)
	}
	e.booted <- err
	return gnet.None
}

// OnOpen registers a new connection and sends it the authentication
// challenge.
func (e *eventHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s := e.s
	select {
	case <-s.stopping:
		return nil, gnet.Close
	default:
	}
	now := time.Now()
	sc := &serverConn{c: c, fd: c.Fd(), peer: c.RemoteAddr().String(), nonce: newNonce(), openedAt: now}
	sc.lastActive.Store(now.UnixNano())
	c.SetContext(sc)
	_ = c.SetKeepAlivePeriod(time.Minute)
	s.mu.Lock()
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	s.connCount.Add(1)

	frame, err := encodeFrame(header{op: OpHello}, &challengeMsg{Nonce: sc.nonce})
	if err != nil {
		s.log.Error("rpc: encode challenge", "err", err)
		return nil, gnet.Close
	}
	out := bytes.Clone(frame.Bytes())
	putFrame(frame)
	return out, gnet.None
}

// OnClose forgets a connection. Handlers still running for it finish; their
// replies are dropped by gnet.
func (e *eventHandler) OnClose(c gnet.Conn, _ error) gnet.Action {
	sc, ok := c.Context().(*serverConn)
	if !ok {
		return gnet.None
	}
	sc.markClosed()
	e.s.rdma.closed(sc)
	if sc.in != nil {
		sc.in.release()
		sc.in = nil
	}
	s := e.s
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	s.connCount.Add(-1)
	return gnet.None
}

// OnTick enforces the authentication deadline and the idle timeout.
func (e *eventHandler) OnTick() (time.Duration, gnet.Action) {
	s := e.s
	now := time.Now()
	s.mu.Lock()
	for sc := range s.conns {
		switch {
		case !sc.authed.Load():
			if now.Sub(sc.openedAt) > s.authTimeout {
				s.log.Warn("rpc: closing connection: authentication deadline passed", "peer", sc.peer)
				s.refused.Add(1)
				s.onLoop(sc.c.Close)
			}
		case sc.inFlight.Load() == 0 && now.Sub(time.Unix(0, sc.lastActive.Load())) > s.idleTimeout:
			s.log.Debug("rpc: closing idle connection", "peer", sc.peer)
			s.onLoop(sc.c.Close)
		}
	}
	s.mu.Unlock()
	return s.tick, gnet.None
}

// inFrame is a request whose header has been read and whose body and bulk
// are still arriving. Bytes go from gnet's read buffer into pooled buffers,
// and what of a bulk gnet has not read yet straight from the socket (see
// readBulk), so most of a large bulk is not copied in user space.
type inFrame struct {
	h       header
	handler Handler // nil: the frame is consumed and answered on the loop
	body    []byte  // for the handler; nil when discarding
	bulk    []byte  // for the handler; nil when discarding
	got     int     // bytes of body and bulk received so far

	replyBuf []byte       // from Request.BulkBuffer, pooled
	rdma     *rdmaRequest // set when the request came over RDMA
	req      Request      // what the handler gets: part of the frame, to save an allocation
}

// size is the length of the frame's body and bulk.
func (in *inFrame) size() int { return int(in.h.bodyLen) + int(in.h.bulkLen) }

// release returns the frame's buffers to their pools.
func (in *inFrame) release() {
	putBuf(in.body)
	if in.rdma != nil {
		// The bulk is registered memory, not the pools'.
		in.rdma.releaseBuffers()
		return
	}
	putBuf(in.bulk)
	putBuf(in.replyBuf)
}

// OnTraffic consumes everything buffered on c, then hands the complete
// requests to workers and yields.
//
// Waking a worker puts it next in line on the loop's P, and the Go
// scheduler wakes a spinning thread to steal it. Were the loop to go on
// running, that thread would find only the worker, which it may not take
// yet, and sleep in the scheduler (usleep(3): some 50 µs with Linux's
// default timer slack) holding the other P, stranding whatever the network
// poller wakes meanwhile. Yielding at once runs the worker on the loop's P
// and leaves the loop to the spinning thread.
func (e *eventHandler) OnTraffic(c gnet.Conn) gnet.Action {
	sc, ok := c.Context().(*serverConn)
	if !ok {
		return gnet.Close
	}
	sc.lastActive.Store(time.Now().UnixNano())
	action := e.consume(c, sc)
	for i, j := range sc.ready {
		sc.ready[i] = job{}
		if !e.s.hand(j) {
			for _, rest := range sc.ready[i+1:] {
				rest.in.release()
			}
			j.in.release()
			action = gnet.Close
			break
		}
	}
	if len(sc.ready) > 0 {
		sc.ready = sc.ready[:0]
		runtime.Gosched()
	}
	return action
}

// consume reads everything buffered on c: frame headers are checked as
// soon as they arrive, request bodies and bulks are read into a pooled
// buffer, and each complete request joins sc.ready. Handshake, ping and
// error replies are answered on the loop.
func (e *eventHandler) consume(c gnet.Conn, sc *serverConn) gnet.Action {
	for {
		if sc.in == nil {
			if c.InboundBuffered() < headerSize {
				return gnet.None
			}
			h, action, ok := e.readHeader(c, sc)
			if !ok {
				return action
			}
			if !sc.authed.Load() {
				if action, done := e.startAuth(c, sc, h); !done || action != gnet.None {
					return action
				}
				continue
			}
			sc.in = e.newInFrame(h)
			_, _ = c.Discard(headerSize)
		}
		in := sc.in
		for in.got < in.size() {
			buffered := c.InboundBuffered()
			if buffered == 0 {
				if in.handler == nil || in.got < len(in.body) {
					return gnet.None
				}
				n := readBulk(sc.fd, in.bulk[in.got-len(in.body):])
				if n == 0 {
					return gnet.None
				}
				in.got += n
				continue
			}
			var n int
			switch {
			case in.handler == nil:
				n, _ = c.Discard(min(in.size()-in.got, buffered))
			case in.got < len(in.body):
				n, _ = c.Read(in.body[in.got:])
			default:
				n, _ = c.Read(in.bulk[in.got-len(in.body):])
			}
			if n <= 0 {
				return gnet.None
			}
			in.got += n
		}
		sc.in = nil
		if action := e.dispatch(c, sc, in); action != gnet.None {
			return action
		}
	}
}

// readBulk reads what the socket holds of a request's bulk straight into
// p, once gnet's read buffer is drained: gnet would read it into its own
// buffer first and have it copied from there. It returns 0 when the socket
// has nothing now, and also when it failed or reached its end, which gnet
// then meets on its next read: gnet's poller is level-triggered, so it calls
// OnTraffic again once more arrives.
func readBulk(fd int, p []byte) int {
	for {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
}

// readHeader decodes and checks the header at the front of c's buffer. A
// header that breaks the rules is answered (when its request id can be
// trusted) and the connection is closed.
func (e *eventHandler) readHeader(c gnet.Conn, sc *serverConn) (header, gnet.Action, bool) {
	s := e.s
	hb, err := c.Peek(headerSize)
	if err != nil {
		return header{}, gnet.None, false
	}
	h, err := decodeHeader(hb)
	if err != nil {
		// Without the magic nothing in the header can be trusted, not even
		// the request id to answer.
		s.log.Warn("rpc: closing connection: malformed frame", "peer", sc.peer, "err", err)
		s.refused.Add(1)
		return h, gnet.Close, false
	}
	if ferr := h.check(s.maxBulk); ferr != nil {
		s.log.Warn("rpc: closing connection: malformed frame", "peer", sc.peer, "op", h.op, "err", ferr.Msg)
		s.refused.Add(1)
		e.replyError(c, sc, h.op, h.id, ferr.Errno, ferr.Msg)
		return h, gnet.Close, false
	}
	if h.isReply() {
		s.log.Warn("rpc: closing connection: unexpected reply frame", "peer", sc.peer, "op", h.op)
		s.refused.Add(1)
		e.replyError(c, sc, h.op, h.id, syscall.EPROTO, "rpc: unexpected reply frame")
		return h, gnet.Close, false
	}
	return h, gnet.None, true
}

// startAuth handles a frame on a connection that has not authenticated yet:
// only a small hello is acceptable. It reports done once the hello has been
// handled, and false while the rest of it is still arriving.
func (e *eventHandler) startAuth(c gnet.Conn, sc *serverConn, h header) (action gnet.Action, done bool) {
	if h.op != OpHello || h.bulkLen != 0 || h.bodyLen > maxHandshakeBody {
		e.s.log.Warn("rpc: refused connection: request before authentication", "peer", sc.peer, "op", h.op)
		e.s.refused.Add(1)
		e.replyError(c, sc, h.op, h.id, syscall.EACCES, authRequiredText)
		return gnet.Close, true
	}
	if c.InboundBuffered() < h.frameLen() {
		return gnet.None, false
	}
	if !e.authenticate(c, sc, h) {
		return gnet.Close, true
	}
	return gnet.None, true
}

// newInFrame prepares to receive the body and bulk of the request h.
func (e *eventHandler) newInFrame(h header) *inFrame {
	in := &inFrame{h: h}
	if h.op >= FirstUserOp {
		in.handler = e.s.handler(h.op)
	}
	if in.handler != nil {
		in.body = getBuf(int(h.bodyLen))
		in.bulk = getBuf(int(h.bulkLen))
	}
	return in
}

// dispatch answers a complete request on the loop for the rpc package's own
// opcodes and unknown ones, and queues the others for a worker (see hand).
func (e *eventHandler) dispatch(c gnet.Conn, sc *serverConn, in *inFrame) gnet.Action {
	h := in.h
	if in.handler == nil {
		var ok bool
		switch h.op {
		case OpPing:
			ok = e.reply(c, sc, header{flags: flagReply, op: h.op, id: h.id}, nil)
		case OpHello:
			ok = e.replyError(c, sc, h.op, h.id, syscall.EPROTO, "rpc: connection already authenticated")
		default:
			ok = e.replyError(c, sc, h.op, h.id, syscall.ENOSYS, fmt.Sprintf("rpc: op %d not supported", h.op))
		}
		if !ok {
			return gnet.Close
		}
		return gnet.None
	}
	sc.ready = append(sc.ready, job{sc: sc, in: in})
	return gnet.None
}

// authenticate checks the client's hello frame (fully buffered) and answers
// with the server's proof or with a refusal. It reports whether the
// connection may go on.
func (e *eventHandler) authenticate(c gnet.Conn, sc *serverConn, h header) bool {
	s := e.s
	_, _ = c.Discard(headerSize)
	var body []byte
	if h.bodyLen > 0 {
		var err error
		if body, err = c.Next(int(h.bodyLen)); err != nil {
			return false
		}
	}
	var hello helloMsg
	if decodeBody(body, &hello) != nil || len(hello.Nonce) != nonceSize ||
		!hmac.Equal(hello.MAC, clientMAC(s.secret, sc.nonce, hello.Nonce)) {
		s.log.Warn("rpc: refused connection: wrong cluster secret", "peer", sc.peer)
		s.refused.Add(1)
		e.replyError(c, sc, h.op, h.id, syscall.EACCES, authFailedText)
		return false
	}
	sc.authed.Store(true)
	return e.reply(c, sc, header{flags: flagReply, op: OpHello, id: h.id},
		&welcomeMsg{MAC: serverMAC(s.secret, hello.Nonce, sc.nonce), MaxBulk: s.maxBulk, RDMA: s.rdma.offer(sc, hello.Nonce)})
}

// reply writes a small reply from the event loop. It reports whether the
// write was accepted (gnet closes the connection when it was not).
func (e *eventHandler) reply(c gnet.Conn, sc *serverConn, h header, body any) bool {
	frame, err := encodeFrame(h, body)
	if err != nil {
		e.s.log.Error("rpc: encode reply", "op", h.op, "err", err)
		return false
	}
	return e.s.loopWrite(c, sc, frame)
}

// replyError writes an error reply from the event loop.
func (e *eventHandler) replyError(c gnet.Conn, sc *serverConn, op uint16, id uint64, errno syscall.Errno, msg string) bool {
	return e.reply(c, sc, header{flags: flagReply, op: op, id: id, status: uint32(errno)}, msg)
}
