package fake

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/stratafs/strata/rdma"
)

// qpState is where a queue pair is in its life.
type qpState uint8

const (
	stateIdle      qpState = iota // created, waiting for Accept
	stateConnected                // moving data
	stateError                    // disconnected or failed: work flushes
	stateClosed                   // destroyed
)

// workRequest is a posted send-queue work request.
type workRequest struct {
	id     uint64
	op     rdma.Opcode
	region rdma.Region
	off, n int
	remote rdma.Remote
}

// recvRequest is a posted receive.
type recvRequest struct {
	id     uint64
	region rdma.Region
	off, n int
}

// completion is a completion not yet reported, visible from at.
type completion struct {
	c  rdma.Completion
	at time.Time
}

// QueuePair is a fake RC queue pair. It implements rdma.QueuePair.
type QueuePair struct {
	node *Node
	lim  rdma.Limits
	info rdma.Info

	// Guarded by the fabric's lock.
	peer        *QueuePair
	state       qpState
	sq          []*workRequest // posted, not yet executed, in order
	rq          []*recvRequest // posted receives, in order
	sends       int            // send-queue work requests not yet completed
	reads       int            // RDMA READs not yet completed
	outstanding int            // work requests whose completion is not yet queued
	cq          []completion
	notify      chan struct{} // wakes Poll; capacity 1
	kick        chan struct{} // wakes the executor; capacity 1
	done        chan struct{} // closed when the queue pair is destroyed
}

var _ rdma.QueuePair = (*QueuePair)(nil)

// newQueuePair returns an idle queue pair of node n.
func newQueuePair(n *Node, cfg rdma.Config, local, remote string) *QueuePair {
	depth := cfg.Depth()
	reads := n.fab.opts.MaxReads
	if cfg.MaxReads > 0 {
		reads = min(reads, cfg.MaxReads)
	}
	port := 1
	if cfg.Port > 0 {
		port = cfg.Port
	}
	return &QueuePair{
		node:   n,
		lim:    rdma.Limits{SendDepth: 3 * depth, RecvDepth: depth, MaxReads: reads},
		info:   rdma.Info{Device: n.fab.opts.Devices[0], Port: port, GID: "fe80::" + strconv.Itoa(n.id), Local: local, Remote: remote},
		notify: make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// connectLocked starts the queue pair's executor; f.mu is held.
func (qp *QueuePair) connectLocked() {
	f := qp.node.fab
	if f.closed {
		qp.state = stateError
		return
	}
	qp.state = stateConnected
	f.qps[qp] = struct{}{}
	f.workers.Add(1)
	go qp.execute()
}

// Domain returns the node's protection domain.
func (qp *QueuePair) Domain() rdma.Domain { return qp.node.dom }

// Limits returns the queue pair's depths.
func (qp *QueuePair) Limits() rdma.Limits { return qp.lim }

// Info describes the connection.
func (qp *QueuePair) Info() rdma.Info { return qp.info }

// Break drops the connection into the error state, as a cable pull would.
func (qp *QueuePair) Break() {
	f := qp.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	qp.failLocked()
}

// PostRecv posts a receive.
func (qp *QueuePair) PostRecv(id uint64, r rdma.Region, off, n int) error {
	f := qp.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := qp.postableLocked(); err != nil {
		return err
	}
	if _, err := qp.node.dom.localLocked(r, off, n); err != nil {
		return fmt.Errorf("rdma: post receive: %w", err)
	}
	if len(qp.rq) >= qp.lim.RecvDepth {
		return fmt.Errorf("rdma: post receive: %w (%d posted)", rdma.ErrQueueFull, len(qp.rq))
	}
	qp.outstanding++
	rr := &recvRequest{id: id, region: r, off: off, n: n}
	if qp.state != stateConnected {
		qp.completeLocked(rdma.Completion{ID: id, Status: rdma.StatusFlushed})
		return nil
	}
	qp.rq = append(qp.rq, rr)
	if qp.peer != nil {
		qp.peer.kickExecutor() // a SEND may be waiting for this receive
	}
	return nil
}

// PostSend posts a SEND.
func (qp *QueuePair) PostSend(id uint64, r rdma.Region, off, n int) error {
	return qp.post(&workRequest{id: id, op: rdma.OpSend, region: r, off: off, n: n})
}

// PostRead posts an RDMA READ.
func (qp *QueuePair) PostRead(id uint64, r rdma.Region, off, n int, from rdma.Remote) error {
	return qp.post(&workRequest{id: id, op: rdma.OpRead, region: r, off: off, n: n, remote: from})
}

// PostWrite posts an RDMA WRITE.
func (qp *QueuePair) PostWrite(id uint64, r rdma.Region, off, n int, to rdma.Remote) error {
	return qp.post(&workRequest{id: id, op: rdma.OpWrite, region: r, off: off, n: n, remote: to})
}

// post queues a send-queue work request, within the queue pair's limits. On
// a queue pair in the error state it is accepted and flushed, as verbs do.
func (qp *QueuePair) post(w *workRequest) error {
	f := qp.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := qp.postableLocked(); err != nil {
		return err
	}
	if _, err := qp.node.dom.localLocked(w.region, w.off, w.n); err != nil {
		return fmt.Errorf("rdma: post %s: %w", w.op, err)
	}
	if qp.sends >= qp.lim.SendDepth {
		return fmt.Errorf("rdma: post %s: %w (%d outstanding)", w.op, rdma.ErrQueueFull, qp.sends)
	}
	if w.op == rdma.OpRead && qp.reads >= qp.lim.MaxReads {
		return fmt.Errorf("rdma: post read: %w (%d reads outstanding)", rdma.ErrQueueFull, qp.reads)
	}
	qp.sends++
	if w.op == rdma.OpRead {
		qp.reads++
	}
	qp.outstanding++
	if qp.state != stateConnected {
		qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusFlushed})
		return nil
	}
	qp.sq = append(qp.sq, w)
	qp.kickExecutor()
	return nil
}

// postableLocked fails a post on a queue pair that was never connected or
// is destroyed; f.mu is held.
func (qp *QueuePair) postableLocked() error {
	switch qp.state {
	case stateIdle:
		return rdma.ErrNotConnected
	case stateClosed:
		return rdma.ErrClosed
	}
	return nil
}

// kickExecutor wakes the executor without blocking.
func (qp *QueuePair) kickExecutor() {
	select {
	case qp.kick <- struct{}{}:
	default:
	}
}

// execute runs the send queue in order until the queue pair is destroyed:
// each work request waits a random delay and the hook, then takes effect.
func (qp *QueuePair) execute() {
	f := qp.node.fab
	defer f.workers.Done()
	for {
		f.mu.Lock()
		var w *workRequest
		if qp.state == stateConnected && len(qp.sq) > 0 {
			w = qp.sq[0]
		}
		delay := f.delayLocked()
		f.mu.Unlock()
		if w == nil {
			select {
			case <-qp.kick:
				continue
			case <-qp.done:
				return
			}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-qp.done:
				t.Stop()
				return
			}
		}
		if hook := f.opts.Hook; hook != nil {
			hook(WorkRequest{Node: qp.node.name, Op: w.op, ID: w.id, Len: w.n, QP: qp, Peer: w.remote})
		}
		f.mu.Lock()
		if qp.state != stateConnected || len(qp.sq) == 0 || qp.sq[0] != w {
			f.mu.Unlock() // flushed meanwhile
			continue
		}
		waiting := qp.executeLocked(w)
		f.mu.Unlock()
		if waiting {
			// Receiver not ready: wait for its next receive, as RC
			// hardware retries on RNR without end (rnr_retry 7).
			select {
			case <-qp.kick:
			case <-qp.done:
				return
			}
		}
	}
}

// executeLocked carries out the work request at the head of the send queue
// and reports whether it must wait for the peer to post a receive; f.mu is
// held.
func (qp *QueuePair) executeLocked(w *workRequest) (waiting bool) {
	f := qp.node.fab
	if f.opts.FailRate > 0 && f.rng.Float64() < f.opts.FailRate {
		qp.failLocked()
		return false
	}
	peer := qp.peer
	if peer == nil || peer.state != stateConnected {
		qp.sq = qp.sq[1:]
		qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusTransport})
		qp.failLocked()
		return false
	}
	local, err := qp.node.dom.localLocked(w.region, w.off, w.n)
	if err != nil {
		qp.sq = qp.sq[1:]
		qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusOther})
		qp.failLocked()
		return false
	}
	switch w.op {
	case rdma.OpSend:
		if len(peer.rq) == 0 {
			return true
		}
		rr := peer.rq[0]
		peer.rq = peer.rq[1:]
		qp.sq = qp.sq[1:]
		dst, err := peer.node.dom.localLocked(rr.region, rr.off, rr.n)
		switch {
		case err != nil:
			peer.completeLocked(rdma.Completion{ID: rr.id, Status: rdma.StatusOther})
			qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusRemoteInvalid})
			qp.failLocked()
		case len(local) > len(dst):
			peer.completeLocked(rdma.Completion{ID: rr.id, Status: rdma.StatusLocalLength})
			qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusRemoteInvalid})
			qp.failLocked()
		default:
			copy(dst, local)
			peer.completeLocked(rdma.Completion{ID: rr.id, Op: rdma.OpRecv, Len: len(local)})
			qp.finishLocked(w, rdma.Completion{ID: w.id, Op: rdma.OpSend})
		}
	case rdma.OpWrite, rdma.OpRead:
		qp.sq = qp.sq[1:]
		want := rdma.AccessRemoteWrite
		if w.op == rdma.OpRead {
			want = rdma.AccessRemoteRead
		}
		remote, ok := peer.node.dom.lookupLocked(w.remote, w.n, want)
		if !ok {
			qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusRemoteAccess})
			qp.failLocked()
			return false
		}
		if w.op == rdma.OpWrite {
			copy(remote, local)
		} else {
			copy(local, remote)
		}
		qp.finishLocked(w, rdma.Completion{ID: w.id, Op: w.op})
	}
	return false
}

// finishLocked queues the completion of a send-queue work request and
// frees its slot; f.mu is held.
func (qp *QueuePair) finishLocked(w *workRequest, c rdma.Completion) {
	qp.sends--
	if w.op == rdma.OpRead {
		qp.reads--
	}
	qp.completeLocked(c)
}

// completeLocked queues a completion, to be reported after a random delay;
// f.mu is held.
func (qp *QueuePair) completeLocked(c rdma.Completion) {
	qp.outstanding--
	if qp.state == stateClosed {
		return
	}
	if c.Status != rdma.StatusOK {
		c.Op = rdma.OpUnknown // verbs do not say what a failed request was
	}
	qp.cq = append(qp.cq, completion{c: c, at: time.Now().Add(qp.node.fab.delayLocked())})
	select {
	case qp.notify <- struct{}{}:
	default:
	}
}

// failLocked drops the connection into the error state: both queue pairs
// flush their outstanding work; f.mu is held.
func (qp *QueuePair) failLocked() {
	qp.flushLocked()
	if qp.peer != nil {
		qp.peer.flushLocked()
	}
}

// flushLocked moves one queue pair to the error state and flushes its
// queues; f.mu is held.
func (qp *QueuePair) flushLocked() {
	if qp.state != stateConnected {
		return
	}
	qp.state = stateError
	for _, w := range qp.sq {
		qp.finishLocked(w, rdma.Completion{ID: w.id, Status: rdma.StatusFlushed})
	}
	qp.sq = nil
	for _, rr := range qp.rq {
		qp.completeLocked(rdma.Completion{ID: rr.id, Status: rdma.StatusFlushed})
	}
	qp.rq = nil
	qp.kickExecutor()
	select {
	case qp.notify <- struct{}{}:
	default:
	}
}

// Poll reports completions, a random choice among those due, waiting for
// one if none is.
func (qp *QueuePair) Poll(ctx context.Context, into []rdma.Completion) (int, error) {
	f := qp.node.fab
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		if qp.state == stateClosed {
			f.mu.Unlock()
			return 0, rdma.ErrClosed
		}
		now := time.Now()
		n := 0
		var next time.Time
		for n < len(into) {
			var due []int
			for i, c := range qp.cq {
				if !c.at.After(now) {
					due = append(due, i)
				} else if next.IsZero() || c.at.Before(next) {
					next = c.at
				}
			}
			if len(due) == 0 {
				break
			}
			i := due[f.rng.IntN(len(due))]
			into[n] = qp.cq[i].c
			n++
			qp.cq = append(qp.cq[:i], qp.cq[i+1:]...)
		}
		drained := qp.state != stateConnected && qp.outstanding == 0 && len(qp.cq) == 0
		f.mu.Unlock()
		if n > 0 {
			return n, nil
		}
		if drained {
			return 0, rdma.ErrDrained
		}
		var due <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next))
			}
			due = timer.C
		}
		select {
		case <-qp.notify:
		case <-due:
		case <-qp.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Disconnect drops the connection into the error state.
func (qp *QueuePair) Disconnect() error {
	f := qp.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	if qp.state == stateClosed {
		return rdma.ErrClosed
	}
	qp.failLocked()
	return nil
}

// Close destroys the queue pair and stops its executor.
func (qp *QueuePair) Close() error {
	f := qp.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	qp.closeLocked()
	return nil
}

// closeLocked destroys the queue pair; f.mu is held.
func (qp *QueuePair) closeLocked() {
	if qp.state == stateClosed {
		return
	}
	qp.failLocked()
	qp.state = stateClosed
	qp.cq = nil
	delete(qp.node.fab.qps, qp)
	close(qp.done)
}
