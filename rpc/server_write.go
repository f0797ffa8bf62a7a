package rpc

import (
	"bytes"
	"sync"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// How replies reach the socket.
//
// A worker writes its reply to the connection's socket itself, with one
// non-blocking writev, instead of handing it to the event loop with
// AsyncWritev: that would cost an eventfd write and a wakeup of the loop's
// thread per reply, most of a small call's latency. The socket is gnet's, so
// three rules keep the byte stream whole:
//
//   - Frames are never interleaved: writers of a connection serialize on
//     serverConn.wmu, and a worker writes directly only while nothing of the
//     connection's output waits in gnet (no AsyncWritev of ours pending, no
//     bytes left in gnet's outbound buffer) and the loop is not writing.
//     What a full socket buffer does not take is queued with AsyncWritev,
//     and so is every reply after it until the loop has caught up.
//   - The descriptor is only written while it is open: OnClose runs before
//     gnet closes it, and marks the connection closed under wmu, so no
//     worker can write to a number the kernel may since have reused.
//   - The loop writes its own replies (handshake, pings, refusals) with
//     gnet's Write, so that a refusal is flushed before the close that
//     follows it; it flags the write under wmu, and does not hold wmu over
//     it, because a failed write closes the connection and calls OnClose.
//     While a part-written reply waits in gnet's task queue, the loop's
//     replies queue behind it too.

// writeReply sends a reply frame (header and body in frame, then bulk) and
// then releases frame, the request's buffers (req) and the handler's
// release function.
func (s *Server) writeReply(sc *serverConn, frame *bytes.Buffer, bulk []byte, req *inFrame, release func()) {
	iov := [2][]byte{frame.Bytes(), bulk}
	rest := iov[:]
	if len(bulk) == 0 {
		rest = iov[:1]
	}
	sc.wmu.Lock()
	if sc.closed {
		sc.wmu.Unlock()
		releaseReply(frame, req, release)
		return
	}
	if sc.queued == 0 && !sc.backlog && !sc.loopWriting {
		n, err := writeNonblock(sc.fd, rest)
		if err != nil {
			sc.wmu.Unlock()
			s.log.Debug("rpc: write reply", "peer", sc.peer, "err", err)
			s.onLoop(sc.c.Close)
			releaseReply(frame, req, release)
			return
		}
		if rest = advance(rest, n); len(rest) == 0 {
			sc.wmu.Unlock()
			releaseReply(frame, req, release)
			return
		}
	}
	// A copy of what is left, so that iov (which the closure would
	// otherwise hold) stays on the stack.
	left := append([][]byte(nil), rest...)
	d := &replyDone{s: s, sc: sc, frame: frame, req: req, release: release}
	sc.queued++
	s.unsent.Store(d, struct{}{})
	if !s.onLoop(func() error { return sc.c.AsyncWritev(left, d.callback) }) {
		// Part of the frame may be out; the stream is lost either way.
		sc.queued--
		sc.wmu.Unlock()
		s.onLoop(sc.c.Close)
		d.run()
		return
	}
	sc.wmu.Unlock()
}

// writeNonblock writes iov to the non-blocking socket fd once and returns
// how many bytes it took; a full socket buffer is not an error.
func writeNonblock(fd int, iov [][]byte) (int, error) {
	for {
		n, err := unix.Writev(fd, iov)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}

// advance drops the first n bytes of iov.
func advance(iov [][]byte, n int) [][]byte {
	for len(iov) > 0 && n >= len(iov[0]) {
		n -= len(iov[0])
		iov = iov[1:]
	}
	if n > 0 {
		iov[0] = iov[0][n:]
	}
	return iov
}

// loopWrite writes a frame from the event loop and then returns the frame
// to its pool. It writes with gnet, which buffers what the socket does not
// take and flushes it before a close; but while a reply that a worker
// part-wrote waits in gnet's task queue, the frame must queue behind it. It
// reports whether the write was accepted.
func (s *Server) loopWrite(c gnet.Conn, sc *serverConn, frame *bytes.Buffer) bool {
	sc.wmu.Lock()
	if sc.queued > 0 {
		// Queued behind a part-written reply. A close that follows at once
		// drops it; the peer then sees the connection reset.
		sc.queued++
		d := &replyDone{s: s, sc: sc, frame: frame}
		s.unsent.Store(d, struct{}{})
		err := c.AsyncWritev([][]byte{frame.Bytes()}, d.callback)
		if err != nil {
			sc.queued--
		}
		sc.wmu.Unlock()
		if err != nil {
			d.run()
		}
		return err == nil
	}
	sc.loopWriting = true
	sc.wmu.Unlock()
	_, err := c.Write(frame.Bytes())
	putFrame(frame)
	sc.wmu.Lock()
	sc.loopWriting = false
	if !sc.closed {
		sc.backlog = c.OutboundBuffered() > 0
	}
	sc.wmu.Unlock()
	return err == nil
}

// markClosed stops writes to the connection's descriptor; OnClose calls it
// before gnet closes the descriptor.
func (sc *serverConn) markClosed() {
	sc.wmu.Lock()
	sc.closed = true
	parked := sc.parked
	sc.parked = nil
	sc.wmu.Unlock()
	for d := range parked {
		close(d.gone)
	}
}

// park notes a deferred request, whose Gone closes with the connection.
func (sc *serverConn) park(d *Deferred) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	if sc.closed {
		close(d.gone)
		return
	}
	if sc.parked == nil {
		sc.parked = map[*Deferred]struct{}{}
	}
	sc.parked[d] = struct{}{}
}

// unpark forgets a deferred request that was answered.
func (sc *serverConn) unpark(d *Deferred) {
	sc.wmu.Lock()
	delete(sc.parked, d)
	sc.wmu.Unlock()
}

// replyDone releases a reply's buffers once it has been written or
// dropped. It runs exactly once even if gnet both fails the write and calls
// back.
type replyDone struct {
	s       *Server
	sc      *serverConn
	once    sync.Once
	frame   *bytes.Buffer
	req     *inFrame
	release func()
}

// callback is the gnet AsyncCallback of a reply queued on the loop: it
// lets workers write directly again once gnet holds nothing more of the
// connection's output.
func (d *replyDone) callback(c gnet.Conn, _ error) error {
	sc := d.sc
	sc.wmu.Lock()
	sc.queued--
	if !sc.closed {
		sc.backlog = c.OutboundBuffered() > 0
	}
	sc.wmu.Unlock()
	d.run()
	return nil
}

// run releases the buffers.
func (d *replyDone) run() {
	d.once.Do(func() {
		d.s.unsent.Delete(d)
		releaseReply(d.frame, d.req, d.release)
	})
}

// releaseReply returns a written or dropped reply's frame and its request's
// buffers (req may be nil) to their pools and calls the handler's release
// function, if any.
func releaseReply(frame *bytes.Buffer, req *inFrame, release func()) {
	putFrame(frame)
	if req != nil {
		req.release()
	}
	if release != nil {
		release()
	}
}
