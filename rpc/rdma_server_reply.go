package rpc

import (
	"bytes"
	"fmt"

	"github.com/stratafs/strata/rdma"
)

// The reply path of an RDMA connection: workers hand replies over, and
// pump posts them (and the requests' RDMA READs) as the send queue, the
// READ limit and the send slots allow.

// reply sends a handler's reply over RDMA: its bulk is written into the
// client's sink first, from registered memory (copied there unless the
// handler built it in the request's buffer or Request.BulkBuffer), then
// the reply follows as a message. A reply too large for a message, or whose
// bulk cannot be put in registered memory, goes over the session's TCP
// connection instead. It runs on a worker and never blocks on the network.
func (q *rdmaRequest) reply(s *Server, sc *serverConn, frame *bytes.Buffer, bulk []byte, in *inFrame, release func()) {
	if frame.Len() > rdmaInline {
		s.writeReply(sc, frame, bulk, in, release)
		return
	}
	rep := &rdmaReply{req: q, frame: frame, release: release}
	if n := len(bulk); n > 0 && n <= int(q.sink.Len) {
		switch {
		case q.buf != nil && inRegion(bulk, q.buf, &rep.off):
			rep.region = q.buf.Region()
		case q.replyBuf != nil && inRegion(bulk, q.replyBuf, &rep.off):
			rep.region = q.replyBuf.Region()
		default:
			cb, err := q.rc.pool.Get(n)
			if err != nil {
				s.log.Warn("rpc: no registered memory for a reply; sending it over TCP", "peer", q.rc.peer, "err", err)
				s.writeReply(sc, frame, bulk, in, release)
				return
			}
			copy(cb.Bytes(), bulk)
			rep.copied, rep.region = cb, cb.Region()
		}
		rep.bulk = bulk
	}
	q.rc.submit(rep)
}

// inRegion reports whether b lies in buf's region, setting *off to where.
func inRegion(b []byte, buf *rdma.Buffer, off *int) bool {
	o, ok := within(b, buf.Region().Bytes())
	*off = o
	return ok
}

// bulkBuffer returns n bytes of registered memory for a reply's bulk, or
// nil if none can be had.
func (q *rdmaRequest) bulkBuffer(n int) []byte {
	if q.replyBuf != nil || n > int(q.sink.Len) {
		return nil
	}
	b, err := q.rc.pool.Get(n)
	if err != nil {
		return nil
	}
	q.replyBuf = b
	return b.Bytes()
}

// releaseBuffers returns the request's registered buffers; inFrame.release
// calls it once the reply is sent or dropped, or the request is.
func (q *rdmaRequest) releaseBuffers() {
	q.rc.pool.Put(q.buf)
	q.rc.pool.Put(q.replyBuf)
	q.buf, q.replyBuf = nil, nil
}

// done releases a reply's buffers and the request's.
func (rep *rdmaReply) done() {
	putFrame(rep.frame)
	if rep.copied != nil {
		rep.req.rc.pool.Put(rep.copied)
	}
	if rep.req != nil {
		rep.req.in.release()
	}
	if rep.release != nil {
		rep.release()
	}
}

// submit queues a reply for posting.
func (rc *rdmaServerConn) submit(rep *rdmaReply) {
	rc.mu.Lock()
	if rc.broken {
		rc.mu.Unlock()
		rep.done()
		return
	}
	rc.replies = append(rc.replies, rep)
	rc.mu.Unlock()
	rc.pump()
}

// pump posts the waiting READs and replies that the send queue, the READ
// limit and the free send slots have room for, in order.
func (rc *rdmaServerConn) pump() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for !rc.broken && len(rc.reads) > 0 && rc.readsFree > 0 && rc.sqFree > 0 {
		q := rc.reads[0]
		rc.reads = rc.reads[1:]
		id := rc.newOpLocked(q)
		if err := rc.qp.PostRead(id, q.buf.Region(), 0, int(q.in.h.bulkLen), q.source); err != nil {
			delete(rc.ops, id)
			rc.sqFree++
			q.in.release()
			rc.failLocked(fmt.Sprintf("post RDMA READ: %v", err))
			return
		}
		rc.readsFree--
	}
	for !rc.broken && len(rc.replies) > 0 && len(rc.sendSlots) > 0 {
		rep := rc.replies[0]
		need := 1
		if rep.bulk != nil {
			need = 2
		}
		if rc.sqFree < need {
			return
		}
		rc.replies = rc.replies[1:]
		rep.slot = rc.sendSlots[len(rc.sendSlots)-1]
		rc.sendSlots = rc.sendSlots[:len(rc.sendSlots)-1]
		if err := rc.postReplyLocked(rep); err != nil {
			rc.failLocked(err.Error())
			return
		}
	}
}

// newOpLocked records posted work and takes send-queue room for it; rc.mu
// is held.
func (rc *rdmaServerConn) newOpLocked(op any) uint64 {
	rc.nextOp++
	id := wrSend | rc.nextOp
	rc.ops[id] = op
	rc.sqFree--
	return id
}

// postReplyLocked posts a reply's RDMA WRITE, if it has bulk, and its
// SEND; rc.mu is held. A post that fails leaves the reply to finish.
func (rc *rdmaServerConn) postReplyLocked(rep *rdmaReply) error {
	off := rep.slot * rdmaInline
	fb := rep.frame.Bytes()
	copy(rc.ring.Bytes()[off:], fb)
	if rep.bulk != nil {
		id := rc.newOpLocked(rep)
		rep.pending++
		if err := rc.qp.PostWrite(id, rep.region, rep.off, len(rep.bulk), rep.req.sink); err != nil {
			return fmt.Errorf("post RDMA WRITE: %w", err)
		}
	}
	id := rc.newOpLocked(rep)
	rep.pending++
	if err := rc.qp.PostSend(id, rc.ring, off, len(fb)); err != nil {
		return fmt.Errorf("post reply: %w", err)
	}
	return nil
}
