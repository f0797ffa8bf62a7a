//go:build rdma && cgo

package rdma

/*
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// strata_create_qp creates a completion queue on a completion channel and
// an RC queue pair on id; every send work request is signalled.
static int strata_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, int send_depth, int recv_depth,
		struct ibv_comp_channel **ch, struct ibv_cq **cq) {
	*ch = ibv_create_comp_channel(id->verbs);
	if (!*ch) return errno;
	*cq = ibv_create_cq(id->verbs, send_depth + recv_depth, NULL, *ch, 0);
	if (!*cq) {
		int e = errno;
		ibv_destroy_comp_channel(*ch);
		return e;
	}
	struct ibv_qp_init_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.send_cq = *cq;
	attr.recv_cq = *cq;
	attr.qp_type = IBV_QPT_RC;
	attr.sq_sig_all = 1;
	attr.cap.max_send_wr = send_depth;
	attr.cap.max_recv_wr = recv_depth;
	attr.cap.max_send_sge = 1;
	attr.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, pd, &attr)) {
		int e = errno;
		ibv_destroy_cq(*cq);
		ibv_destroy_comp_channel(*ch);
		return e;
	}
	return 0;
}

// strata_qp_limits reads back the depths the queue pair got.
static int strata_qp_limits(struct ibv_qp *qp, int *send, int *recv, int *reads) {
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	memset(&attr, 0, sizeof attr);
	memset(&init, 0, sizeof init);
	int r = ibv_query_qp(qp, &attr, IBV_QP_CAP | IBV_QP_MAX_QP_RD_ATOMIC, &init);
	if (r) return r;
	*send = init.cap.max_send_wr;
	*recv = init.cap.max_recv_wr;
	*reads = attr.max_rd_atomic;
	return 0;
}

static int strata_post_recv(struct ibv_qp *qp, uint64_t id, void *addr, uint32_t len, uint32_t lkey) {
	struct ibv_sge sge = {.addr = (uintptr_t)addr, .length = len, .lkey = lkey};
	struct ibv_recv_wr wr, *bad;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	return ibv_post_recv(qp, &wr, &bad);
}

static int strata_post_send(struct ibv_qp *qp, uint64_t id, int opcode, void *addr, uint32_t len, uint32_t lkey,
		uint64_t raddr, uint32_t rkey) {
	struct ibv_sge sge = {.addr = (uintptr_t)addr, .length = len, .lkey = lkey};
	struct ibv_send_wr wr, *bad;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = opcode;
	wr.send_flags = IBV_SEND_SIGNALED;
	if (opcode != IBV_WR_SEND) {
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = rkey;
	}
	return ibv_post_send(qp, &wr, &bad);
}

// strata_to_error moves a queue pair to the error state: its work flushes.
static int strata_to_error(struct ibv_qp *qp) {
	struct ibv_qp_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.qp_state = IBV_QPS_ERR;
	return ibv_modify_qp(qp, &attr, IBV_QP_STATE);
}

// strata_get_cq_event takes a completion channel's event without blocking:
// 0, or an errno (EAGAIN: none).
static int strata_get_cq_event(struct ibv_comp_channel *ch) {
	struct ibv_cq *cq;
	void *ctx;
	return ibv_get_cq_event(ch, &cq, &ctx) ? errno : 0;
}

// strata_poll copies up to n completions into the parallel arrays.
static int strata_poll(struct ibv_cq *cq, struct ibv_wc *wc, int n,
		uint64_t *ids, int *status, int *opcode, uint32_t *len, uint32_t *vendor) {
	int got = ibv_poll_cq(cq, n, wc);
	for (int i = 0; i < got; i++) {
		ids[i] = wc[i].wr_id;
		status[i] = wc[i].status;
		opcode[i] = wc[i].opcode;
		len[i] = wc[i].byte_len;
		vendor[i] = wc[i].vendor_err;
	}
	return got;
}

*/
import "C"

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollBatch is how many completions one Poll takes from the queue at most.
const pollBatch = 32

// nativeQP is an RC queue pair over rdma_cm, with a completion queue on a
// completion channel. Poll waits in poll(2) on the completion channel, the
// connection's rdma_cm channel and an eventfd, never spinning.
type nativeQP struct {
	cmCh   *C.struct_rdma_event_channel
	id     *C.struct_rdma_cm_id
	compCh *C.struct_ibv_comp_channel
	cq     *C.struct_ibv_cq
	dom    *nativeDomain
	wake   int // eventfd: Disconnect, Close and ctx wake Poll
	lim    Limits
	info   Info

	outstanding  atomic.Int64 // work requests posted, not yet completed
	disconnected atomic.Bool
	closed       atomic.Bool

	postMu  sync.RWMutex // read-held by posts; Close takes it to destroy
	pollMu  sync.Mutex   // held by Poll; Close waits for it
	armed   bool         // the completion queue will raise an event
	unacked C.uint       // completion events not yet acknowledged
	wc      *C.struct_ibv_wc
	once    sync.Once
}

var _ QueuePair = (*nativeQP)(nil)

// setup creates the domain, completion queue and queue pair on the
// resolved id and returns the RDMA READ depths to connect or accept with:
// as initiator at most maxInitiator, as responder at most maxResponder
// (the peer's offer on the passive side; 0 for no bound).
func (q *nativeQP) setup(cfg Config, maxInitiator, maxResponder int) (initiator, responder int, err error) {
	if cfg.Device != "" {
		if dev := deviceName(q.id); dev != cfg.Device {
			return 0, 0, fmt.Errorf("address resolves to device %s, not %s", dev, cfg.Device)
		}
	}
	if q.dom, err = domainFor(q.id.verbs); err != nil {
		return 0, 0, err
	}
	// A request takes an RDMA READ, a reply an RDMA WRITE and a SEND: the
	// send queue is three times as deep as the receive queue.
	depth := cfg.Depth()
	if e := C.strata_create_qp(q.id, q.dom.pd, C.int(3*depth), C.int(depth), &q.compCh, &q.cq); e != 0 {
		return 0, 0, fmt.Errorf("create queue pair: %w", syscall.Errno(e))
	}
	if err := unix.SetNonblock(int(q.compCh.fd), true); err != nil {
		return 0, 0, fmt.Errorf("completion channel: %w", err)
	}
	if initiator, responder, err = deviceReads(q.id); err != nil {
		return 0, 0, err
	}
	if cfg.MaxReads > 0 {
		initiator = min(initiator, cfg.MaxReads)
	}
	if maxInitiator > 0 {
		initiator = min(initiator, maxInitiator)
	}
	if maxResponder > 0 {
		responder = min(responder, maxResponder)
	}
	q.lim = Limits{SendDepth: 3 * depth, RecvDepth: depth, MaxReads: max(1, initiator)}
	if q.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		q.wake = -1
		return 0, 0, fmt.Errorf("eventfd: %w", err)
	}
	q.wc = (*C.struct_ibv_wc)(C.calloc(pollBatch, C.sizeof_struct_ibv_wc))
	return max(1, initiator), max(1, responder), nil
}

// finishSetup records the limits and the description of a connected queue
// pair.
func (q *nativeQP) finishSetup() {
	var send, recv, reads C.int
	if C.strata_qp_limits(q.id.qp, &send, &recv, &reads) == 0 && send > 0 && recv > 0 && reads > 0 {
		// A device may round the depths up; the completion queue was
		// sized for what was asked, so never use more than that.
		q.lim = Limits{
			SendDepth: min(q.lim.SendDepth, int(send)),
			RecvDepth: min(q.lim.RecvDepth, int(recv)),
			MaxReads:  min(q.lim.MaxReads, int(reads)),
		}
	}
	q.info = Info{
		Device: deviceName(q.id),
		Port:   int(q.id.port_num),
		GID:    sourceGID(q.id).String(),
		Local:  addrString(C.rdma_get_local_addr(q.id)),
		Remote: addrString(C.rdma_get_peer_addr(q.id)),
	}
}

// Domain returns the device's protection domain.
func (q *nativeQP) Domain() Domain { return q.dom }

// Limits returns the queue pair's depths.
func (q *nativeQP) Limits() Limits { return q.lim }

// Info describes the connection.
func (q *nativeQP) Info() Info { return q.info }

// PostRecv posts a receive.
func (q *nativeQP) PostRecv(id uint64, r Region, off, n int) error {
	addr, lkey, err := localRange(r, off, n)
	if err != nil {
		return err
	}
	q.postMu.RLock()
	defer q.postMu.RUnlock()
	if q.closed.Load() {
		return ErrClosed
	}
	q.outstanding.Add(1)
	if e := C.strata_post_recv(q.id.qp, C.uint64_t(id), addr, C.uint32_t(n), lkey); e != 0 {
		q.outstanding.Add(-1)
		return postError("receive", syscall.Errno(e))
	}
	return nil
}

// PostSend posts a SEND.
func (q *nativeQP) PostSend(id uint64, r Region, off, n int) error {
	return q.post(id, C.IBV_WR_SEND, r, off, n, Remote{})
}

// PostRead posts an RDMA READ.
func (q *nativeQP) PostRead(id uint64, r Region, off, n int, from Remote) error {
	if n > int(from.Len) {
		return fmt.Errorf("rdma: read of %d bytes from a %d-byte remote range", n, from.Len)
	}
	return q.post(id, C.IBV_WR_RDMA_READ, r, off, n, from)
}

// PostWrite posts an RDMA WRITE.
func (q *nativeQP) PostWrite(id uint64, r Region, off, n int, to Remote) error {
	if n > int(to.Len) {
		return fmt.Errorf("rdma: write of %d bytes to a %d-byte remote range", n, to.Len)
	}
	return q.post(id, C.IBV_WR_RDMA_WRITE, r, off, n, to)
}

// post posts a send-queue work request.
func (q *nativeQP) post(id uint64, opcode C.int, r Region, off, n int, rem Remote) error {
	addr, lkey, err := localRange(r, off, n)
	if err != nil {
		return err
	}
	q.postMu.RLock()
	defer q.postMu.RUnlock()
	if q.closed.Load() {
		return ErrClosed
	}
	q.outstanding.Add(1)
	if e := C.strata_post_send(q.id.qp, C.uint64_t(id), opcode, addr, C.uint32_t(n), lkey, C.uint64_t(rem.Addr), C.uint32_t(rem.Key)); e != 0 {
		q.outstanding.Add(-1)
		return postError("send", syscall.Errno(e))
	}
	return nil
}

// postError describes a refused post; ENOMEM is a full queue.
func postError(what string, errno syscall.Errno) error {
	if errno == syscall.ENOMEM {
		return fmt.Errorf("rdma: post %s: %w", what, ErrQueueFull)
	}
	return fmt.Errorf("rdma: post %s: %w", what, errno)
}

// Poll returns completions, waiting on the completion channel for one.
func (q *nativeQP) Poll(ctx context.Context, into []Completion) (int, error) {
	if len(into) == 0 {
		return 0, nil
	}
	q.pollMu.Lock()
	defer q.pollMu.Unlock()
	var (
		ids    [pollBatch]C.uint64_t
		status [pollBatch]C.int
		opcode [pollBatch]C.int
		length [pollBatch]C.uint32_t
		vendor [pollBatch]C.uint32_t
	)
	for {
		if q.closed.Load() {
			return 0, ErrClosed
		}
		want := min(len(into), pollBatch)
		got := int(C.strata_poll(q.cq, q.wc, C.int(want), &ids[0], &status[0], &opcode[0], &length[0], &vendor[0]))
		if got < 0 {
			return 0, fmt.Errorf("rdma: poll completion queue: %d", got)
		}
		if got > 0 {
			for i := range got {
				into[i] = completion(uint64(ids[i]), int(status[i]), int(opcode[i]), int(length[i]), uint32(vendor[i]))
			}
			q.outstanding.Add(-int64(got))
			return got, nil
		}
		if err := q.cmEvents(); err != nil {
			return 0, err
		}
		if q.disconnected.Load() && q.outstanding.Load() <= 0 {
			return 0, ErrDrained
		}
		if !q.armed {
			if e := C.ibv_req_notify_cq(q.cq, 0); e != 0 {
				return 0, fmt.Errorf("rdma: arm completion queue: %w", syscall.Errno(e))
			}
			q.armed = true
			continue // a completion may have come before the arming
		}
		// The wake eventfd serves both Disconnect/Close and ctx's end.
		ready, err := waitFDsWith(ctx, q.wake, int(q.compCh.fd), int(q.cmCh.fd))
		if err != nil {
			return 0, err
		}
		if ready[0] {
			if e := C.strata_get_cq_event(q.compCh); e == 0 {
				q.armed = false
				if q.unacked++; q.unacked >= 64 {
					C.ibv_ack_cq_events(q.cq, q.unacked)
					q.unacked = 0
				}
			}
		}
		if !ready[0] && !ready[1] {
			var buf [8]byte
			_, _ = unix.Read(q.wake, buf[:])
		}
	}
}

// completion converts a work completion.
func completion(id uint64, status, opcode, length int, vendor uint32) Completion {
	c := Completion{ID: id, Vendor: vendor}
	switch status {
	case C.IBV_WC_SUCCESS:
		c.Status, c.Vendor = StatusOK, 0
		switch opcode {
		case C.IBV_WC_SEND:
			c.Op = OpSend
		case C.IBV_WC_RECV:
			c.Op, c.Len = OpRecv, length
		case C.IBV_WC_RDMA_READ:
			c.Op = OpRead
		case C.IBV_WC_RDMA_WRITE:
			c.Op = OpWrite
		}
	case C.IBV_WC_WR_FLUSH_ERR:
		c.Status = StatusFlushed
	case C.IBV_WC_REM_ACCESS_ERR:
		c.Status = StatusRemoteAccess
	case C.IBV_WC_LOC_LEN_ERR:
		c.Status = StatusLocalLength
	case C.IBV_WC_REM_INV_REQ_ERR:
		c.Status = StatusRemoteInvalid
	case C.IBV_WC_RETRY_EXC_ERR, C.IBV_WC_RNR_RETRY_EXC_ERR:
		c.Status = StatusTransport
	default:
		c.Status = StatusOther
	}
	return c
}

// cmEvents handles the connection's rdma_cm events without blocking: a
// disconnect or device removal moves the queue pair to the error state so
// its work flushes.
func (q *nativeQP) cmEvents() error {
	for {
		ev, ok, err := takeEvent(q.cmCh)
		if err != nil || !ok {
			return err
		}
		if ev.endsConnection() {
			q.toError()
		}
	}
}

// toError moves the queue pair to the error state once.
func (q *nativeQP) toError() {
	if q.disconnected.CompareAndSwap(false, true) {
		C.strata_to_error(q.id.qp)
	}
}

// Disconnect tells the peer and moves the queue pair to the error state.
func (q *nativeQP) Disconnect() error {
	q.postMu.RLock()
	defer q.postMu.RUnlock()
	if q.closed.Load() {
		return ErrClosed
	}
	C.rdma_disconnect(q.id)
	q.toError()
	if q.wake >= 0 {
		_, _ = unix.Write(q.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
	return nil
}

// Close destroys the queue pair, its completion queue and its rdma_cm id.
func (q *nativeQP) Close() error {
	q.closed.Store(true)
	if q.wake >= 0 {
		_, _ = unix.Write(q.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
	q.pollMu.Lock()
	defer q.pollMu.Unlock()
	q.postMu.Lock()
	defer q.postMu.Unlock()
	q.destroy()
	return nil
}

// destroy frees everything the queue pair holds, once.
func (q *nativeQP) destroy() {
	q.once.Do(func() {
		if q.id != nil && q.id.qp != nil {
			C.rdma_destroy_qp(q.id)
		}
		if q.cq != nil {
			if q.unacked > 0 {
				C.ibv_ack_cq_events(q.cq, q.unacked)
			}
			C.ibv_destroy_cq(q.cq)
		}
		if q.compCh != nil {
			C.ibv_destroy_comp_channel(q.compCh)
		}
		if q.id != nil {
			C.rdma_destroy_id(q.id)
		}
		if q.cmCh != nil {
			C.rdma_destroy_event_channel(q.cmCh)
		}
		if q.wc != nil {
			C.free(unsafe.Pointer(q.wc))
		}
		if q.wake >= 0 {
			_ = unix.Close(q.wake)
		}
	})
}
