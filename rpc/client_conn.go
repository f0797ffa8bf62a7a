package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// claimGrace is how long a caller whose deadline passed waits for a reply
// the reader has already begun to receive before it gives the connection up.
const claimGrace = time.Second

// call is one request waiting for its reply. Calls are pooled: exactly one
// party signals done (the reader that claimed the call, fail, or expire,
// each after taking it out of pending), and the caller receives that one
// signal before it puts the call back.
type call struct {
	in      []byte        // where the reply's bulk goes
	expires int64         // unix nanoseconds of the default deadline; 0: the caller's context rules
	done    chan struct{} // receives one signal once the fields below are set

	status uint32
	body   []byte // pooled; the caller returns it with putBuf
	bulkN  int
	err    error
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// getCall returns a reset call.
func getCall() *call { return callPool.Get().(*call) }

// putCall returns a call whose signal, if any, has been received.
func putCall(c *call) {
	*c = call{done: c.done}
	callPool.Put(c)
}

// finish signals the call's caller.
func (c *call) finish() { c.done <- struct{}{} }

// errExpired marks a call that the housekeeper failed at its default
// deadline; the caller turns it into a timeout error.
var errExpired = errors.New("rpc: call expired")

// clientConn is one authenticated connection. Writers serialize on wmu; one
// reader goroutine routes replies to waiting calls by request id.
type clientConn struct {
	addr    string
	nc      net.Conn
	maxBulk int             // the server's request bulk limit; 0 if it did not say
	rd      *rdmaClientConn // set before use when calls travel over RDMA
	nextID  atomic.Uint64
	lastUse atomic.Int64 // unix nanoseconds of the last frame in or out
	broken  atomic.Bool

	wmu    sync.Mutex  // serializes frame writes; guards iov and iovBuf
	iov    net.Buffers // the frame being written, in iovBuf: kept so a write allocates nothing
	iovBuf [2][]byte

	mu        sync.Mutex
	pending   map[uint64]*call
	receiving *call  // the call whose reply the reader is reading
	err       *Error // why the connection broke
	rdmaLive  bool   // rd serves calls and has not finished
}

// newClientConn wraps an authenticated connection; the caller starts
// readLoop.
func newClientConn(addr string, nc net.Conn, maxBulk int) *clientConn {
	cc := &clientConn{addr: addr, nc: nc, maxBulk: maxBulk, pending: make(map[uint64]*call)}
	cc.lastUse.Store(time.Now().UnixNano())
	return cc
}

// healthy reports whether the connection can take new calls.
func (cc *clientConn) healthy() bool { return !cc.broken.Load() }

// idleSince reports whether the connection has seen no traffic since t and
// has no call in flight.
func (cc *clientConn) idleSince(t time.Time) bool {
	if cc.lastUse.Load() > t.UnixNano() {
		return false
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.pending) == 0
}

// fail breaks the connection: it closes the socket and fails every pending
// call with err (or with the first error the connection broke with). While
// an RDMA queue pair serves the connection, its calls are failed once it
// has flushed, by rdmaClientConn.finish, which knows which of them never
// left.
func (cc *clientConn) fail(err *Error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
	}
	err = cc.err
	var pending map[uint64]*call
	if !cc.rdmaLive {
		pending = cc.pending
		cc.pending = nil
	}
	cc.mu.Unlock()
	cc.broken.Store(true)
	_ = cc.nc.Close()
	if cc.rd != nil {
		cc.rd.disconnect(err)
	}
	for _, c := range pending {
		c.err = err
		c.finish()
	}
}

// expire fails the calls whose default deadline passed before now, and
// breaks the connection if the reply the reader is receiving belongs to a
// call past it by claimGrace.
func (cc *clientConn) expire(now time.Time) {
	t := now.UnixNano()
	var expired []*call
	cc.mu.Lock()
	for id, c := range cc.pending {
		if c.expires != 0 && t > c.expires {
			delete(cc.pending, id)
			expired = append(expired, c)
		}
	}
	r := cc.receiving
	stalled := r != nil && r.expires != 0 && t > r.expires+int64(claimGrace)
	cc.mu.Unlock()
	for _, c := range expired {
		c.err = errExpired
		c.finish()
	}
	if stalled {
		cc.fail(localError(syscall.ETIMEDOUT, context.DeadlineExceeded, "rpc: %s: reply stalled", cc.addr))
	}
}

// errWrite marks a request that was not completely written, so it cannot
// have been served and may be sent again on another connection.
var errWrite = errors.New("rpc: request not sent")

// send registers a call and writes its frame (header and body in frame, the
// bulk payload in out, sent with writev and not copied). expires, if not
// zero, is the deadline the housekeeper enforces. A failed write breaks the
// connection and returns an error wrapping errWrite.
func (cc *clientConn) send(frame, out, in []byte, deadline time.Time, expires int64) (*call, uint64, error) {
	c := getCall()
	c.in, c.expires = in, expires
	id := cc.nextID.Add(1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		putCall(c)
		return nil, 0, &Error{Errno: err.Errno, Msg: err.Msg, cause: errWrite}
	}
	cc.pending[id] = c
	cc.mu.Unlock()

	binary.BigEndian.PutUint64(frame[8:], id)
	cc.wmu.Lock()
	cc.iov = append(cc.iovBuf[:0], frame)
	if len(out) > 0 {
		cc.iov = append(cc.iov, out)
	}
	err := cc.nc.SetWriteDeadline(deadline)
	if err == nil {
		_, err = cc.iov.WriteTo(cc.nc)
	}
	cc.iov = nil
	clear(cc.iovBuf[:]) // the caller's buffers are its own again
	cc.wmu.Unlock()
	if err != nil {
		e := connError(cc.addr, err)
		e.cause = errWrite
		cc.fail(e)
		return nil, 0, e
	}
	cc.lastUse.Store(time.Now().UnixNano())
	return c, id, nil
}

// ping writes a ping frame nobody waits for; its reply is discarded as a
// late one. It keeps an idle connection from being closed by the server.
func (cc *clientConn) ping() {
	var hb [headerSize]byte
	h := header{op: OpPing, id: cc.nextID.Add(1)}
	h.encode(hb[:])
	cc.wmu.Lock()
	err := cc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err == nil {
		_, err = cc.nc.Write(hb[:])
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(connError(cc.addr, err))
		return
	}
	cc.lastUse.Store(time.Now().UnixNano())
}

// abandon forgets a call whose caller gave up. It reports false when the
// reader has already claimed the call and is receiving its reply.
func (cc *clientConn) abandon(id uint64) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.pending[id]; ok {
		delete(cc.pending, id)
		return true
	}
	return false
}

// claim removes and returns the call waiting for id, or nil when none is
// (the caller gave up, or the id is a ping's), and marks it as the one
// being received.
func (cc *clientConn) claim(id uint64) *call {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := cc.pending[id]
	delete(cc.pending, id)
	cc.receiving = c
	return c
}

// received signals the caller of the call the reader has finished
// receiving, if any.
func (cc *clientConn) received(c *call) {
	if c == nil {
		return
	}
	cc.mu.Lock()
	cc.receiving = nil
	cc.mu.Unlock()
	c.finish()
}

// readBufferSize is the reader's buffer: a reply's header and body, and
// often several small replies, come in with one system call. A large bulk
// is read past it, straight into the caller's buffer.
const readBufferSize = 16 << 10

// readLoop reads replies until the connection breaks, reading each reply's
// bulk straight into its caller's buffer.
func (cc *clientConn) readLoop() {
	r := bufio.NewReaderSize(cc.nc, readBufferSize)
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(r, hb[:]); err != nil {
			cc.fail(connError(cc.addr, err))
			return
		}
		h, err := decodeHeader(hb[:])
		if err == nil && (!h.isReply() || h.version != frameVersion || h.bodyLen > MaxBody || h.bulkLen > maxReplyBulk) {
			err = errors.New("rpc: malformed reply header")
		}
		if err != nil {
			cc.fail(localError(syscall.EPROTO, err, "rpc: %s: protocol error: %v", cc.addr, err))
			return
		}
		cc.lastUse.Store(time.Now().UnixNano())
		c := cc.claim(h.id)
		if err := cc.readReply(r, h, c); err != nil {
			e := connError(cc.addr, err)
			if c != nil {
				c.err = e
				cc.received(c)
			}
			cc.fail(e)
			return
		}
		cc.received(c)
		if cc.rd != nil {
			cc.rd.repliedOverTCP(h.id)
		}
	}
}

// readReply reads the body and bulk of the reply h into c, or discards them
// when no call waits (a late reply). A bulk that does not fit c.in is
// drained and reported as EMSGSIZE on the call.
func (cc *clientConn) readReply(r *bufio.Reader, h header, c *call) error {
	var body []byte
	if h.bodyLen > 0 {
		body = getBuf(int(h.bodyLen))
		if _, err := io.ReadFull(r, body); err != nil {
			putBuf(body)
			return err
		}
	}
	if c == nil {
		putBuf(body)
		_, err := r.Discard(int(h.bulkLen))
		return err
	}
	c.status, c.body = h.status, body
	n := int(h.bulkLen)
	if n == 0 {
		return nil
	}
	if h.status != 0 || n > len(c.in) {
		if h.status == 0 {
			c.err = localError(syscall.EMSGSIZE, nil, "rpc: %s: reply bulk of %d bytes does not fit the %d-byte buffer", cc.addr, n, len(c.in))
		}
		_, err := r.Discard(n)
		return err
	}
	if _, err := io.ReadFull(r, c.in[:n]); err != nil {
		return err
	}
	c.bulkN = n
	return nil
}

// connError describes a connection that broke under a call.
func connError(addr string, err error) *Error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return localError(syscall.ETIMEDOUT, err, "rpc: %s: connection timed out", addr)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return localError(syscall.ECONNRESET, err, "rpc: %s: connection closed by server", addr)
	}
	return localError(syscall.ECONNRESET, err, "rpc: %s: connection lost: %v", addr, err)
}

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout())
}
