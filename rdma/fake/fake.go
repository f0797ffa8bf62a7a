// Package fake implements the rdma verbs interface in process, for tests:
// nodes on one Fabric connect through a fake rdma_cm, register memory (real
// anonymous mappings outside the Go heap, unmapped on Close, so a use after
// deregistration faults) and move bytes with SEND/RECV and one-sided RDMA
// READ and WRITE, checked against keys, ranges and access rights.
//
// It is adversarial where verbs allow it and faithful where they promise:
// work requests execute asynchronously after random delays and completions
// are reported late and out of order, but a queue pair's work requests take
// effect in the order posted, a message lands in the receive posted first,
// and an RDMA WRITE is in place before a SEND posted after it is received.
// A refused key, a receive too short for its message, or an injected fault
// (Options.FailRate, Fabric.Break, QueuePair.Break) drops both queue pairs
// of a connection into the error state, and their outstanding work flushes.
// Posting beyond a queue pair's limits (send and receive depth, outstanding
// RDMA READs) is refused, so a caller that ignores them fails here.
//
// It is not a model of performance: one lock serializes the fabric.
package fake

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/stratafs/strata/rdma"
)

// Options make a fabric adversarial.
type Options struct {
	// Seed seeds the fabric's random choices; 0 picks one.
	Seed uint64
	// MaxDelay bounds the random delay before each work request executes
	// and, separately, before each completion is reported.
	MaxDelay time.Duration
	// FailRate is the chance that a work request, as it is about to
	// execute, drops its connection into the error state instead.
	FailRate float64
	// Hook, if set, is called before each work request executes, without
	// the fabric's lock; it may block to hold the work request (and every
	// one after it on the same queue pair). Release what it holds before
	// closing the fabric.
	Hook func(WorkRequest)
	// MemlockLimit bounds the bytes each node may register; registering
	// past it fails as a low RLIMIT_MEMLOCK does. 0: no bound.
	MemlockLimit int64
	// MaxReads is the device's limit on outstanding RDMA READs per queue
	// pair; 0 means 16.
	MaxReads int
	// Devices names the devices each node reports; nil means "fake0".
	Devices []string
}

// WorkRequest describes a work request about to execute, for Options.Hook.
type WorkRequest struct {
	Node string      // the node that posted it
	Op   rdma.Opcode // OpSend, OpRead or OpWrite
	ID   uint64      // the id it was posted with
	Len  int         // bytes it moves
	QP   *QueuePair  // the queue pair it was posted on
	Peer rdma.Remote // the peer's memory for OpRead and OpWrite
}

// Fabric connects the nodes of one test.
type Fabric struct {
	opts Options

	mu        sync.Mutex
	rng       *rand.Rand
	listeners map[string]*listener
	qps       map[*QueuePair]struct{}
	nextPort  int
	nextKey   uint32
	nodes     int
	closed    bool
	workers   sync.WaitGroup // the queue pairs' executors
}

// New returns an empty fabric.
func New(opts Options) *Fabric {
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	if opts.MaxReads <= 0 {
		opts.MaxReads = 16
	}
	if opts.Devices == nil {
		opts.Devices = []string{"fake0"}
	}
	return &Fabric{
		opts:      opts,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		listeners: make(map[string]*listener),
		qps:       make(map[*QueuePair]struct{}),
		nextPort:  20000,
		nextKey:   0x1000,
	}
}

// Node returns a new node of the fabric, with one protection domain.
func (f *Fabric) Node(name string) *Node {
	f.mu.Lock()
	f.nodes++
	n := &Node{fab: f, name: name, id: f.nodes, memlock: f.opts.MemlockLimit}
	f.mu.Unlock()
	n.dom = &domain{node: n, regions: make(map[uint32]*region)}
	return n
}

// Break drops every connected queue pair into the error state, as a fabric
// outage would.
func (f *Fabric) Break() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for qp := range f.qps {
		qp.failLocked()
	}
}

// Close closes every listener and queue pair and waits for the queue pairs'
// executors to stop.
func (f *Fabric) Close() {
	f.mu.Lock()
	f.closed = true
	for _, l := range f.listeners {
		l.closeLocked()
	}
	for qp := range f.qps {
		qp.closeLocked()
	}
	f.mu.Unlock()
	f.workers.Wait()
}

// delayLocked returns a random delay up to MaxDelay; f.mu is held.
func (f *Fabric) delayLocked() time.Duration {
	if f.opts.MaxDelay <= 0 {
		return 0
	}
	return time.Duration(f.rng.Int64N(int64(f.opts.MaxDelay) + 1))
}

// Node is one host of a fabric. It implements rdma.Verbs.
type Node struct {
	fab     *Fabric
	name    string
	id      int
	dom     *domain
	memlock int64 // guarded by the fabric's lock
}

var _ rdma.Verbs = (*Node)(nil)

// Devices returns the fabric's device names.
func (n *Node) Devices() ([]string, error) {
	return append([]string(nil), n.fab.opts.Devices...), nil
}

// Domain returns the node's protection domain.
func (n *Node) Domain() rdma.Domain { return n.dom }

// SetMemlockLimit bounds the bytes the node may register from now on, as
// Options.MemlockLimit does for every node; 0 removes the bound.
func (n *Node) SetMemlockLimit(bytes int64) {
	n.fab.mu.Lock()
	defer n.fab.mu.Unlock()
	n.memlock = bytes
}

// Registered returns the bytes the node has registered now.
func (n *Node) Registered() int64 {
	n.fab.mu.Lock()
	defer n.fab.mu.Unlock()
	return n.dom.registered
}

// Listen accepts connections on addr; port 0 picks a free one.
func (n *Node) Listen(addr string, cfg rdma.Config) (rdma.Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("rdma: listen %s: %w", addr, err)
	}
	f := n.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("rdma: listen %s: %w", addr, rdma.ErrClosed)
	}
	if port == "0" {
		f.nextPort++
		port = strconv.Itoa(f.nextPort)
	}
	addr = net.JoinHostPort(host, port)
	if _, busy := f.listeners[addr]; busy {
		return nil, fmt.Errorf("rdma: listen %s: address in use", addr)
	}
	l := &listener{node: n, addr: addr, cfg: cfg, wake: make(chan struct{})}
	f.listeners[addr] = l
	return l, nil
}

// Dial connects to the listener at addr. It waits until the listener
// accepts, or ctx ends.
func (n *Node) Dial(ctx context.Context, addr string, cfg rdma.Config) (rdma.QueuePair, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := n.fab
	f.mu.Lock()
	l := f.listeners[addr]
	if l == nil || f.closed {
		f.mu.Unlock()
		return nil, fmt.Errorf("rdma: connect %s: connection refused", addr)
	}
	f.nextPort++
	local := net.JoinHostPort(n.name, strconv.Itoa(f.nextPort))
	req := &connRequest{
		client: newQueuePair(n, cfg, local, addr),
		done:   make(chan struct{}),
	}
	l.pending = append(l.pending, req)
	l.wakeLocked()
	f.mu.Unlock()

	select {
	case <-req.done:
	case <-ctx.Done():
		f.mu.Lock()
		if !req.accepted && !req.refused {
			req.refused = true
			l.removeLocked(req)
			f.mu.Unlock()
			return nil, fmt.Errorf("rdma: connect %s: %w", addr, ctx.Err())
		}
		f.mu.Unlock()
	}
	if req.refused {
		return nil, fmt.Errorf("rdma: connect %s: connection refused", addr)
	}
	return req.client, nil
}

// connRequest is a Dial waiting for Accept.
type connRequest struct {
	client   *QueuePair
	done     chan struct{} // closed once accepted or refused
	accepted bool
	refused  bool
}

// listener is a fake rdma_cm listener.
type listener struct {
	node    *Node
	addr    string
	cfg     rdma.Config
	pending []*connRequest
	wake    chan struct{} // closed and replaced when pending grows or on close
	closed  bool
}

var _ rdma.Listener = (*listener)(nil)

// Addr returns the listener's address.
func (l *listener) Addr() string { return l.addr }

// Accept connects the next waiting Dial.
func (l *listener) Accept(ctx context.Context) (rdma.QueuePair, error) {
	f := l.node.fab
	for {
		f.mu.Lock()
		if l.closed {
			f.mu.Unlock()
			return nil, rdma.ErrClosed
		}
		if len(l.pending) > 0 {
			req := l.pending[0]
			l.pending = l.pending[1:]
			server := newQueuePair(l.node, l.cfg, l.addr, req.client.info.Local)
			server.peer, req.client.peer = req.client, server
			server.connectLocked()
			req.client.connectLocked()
			req.accepted = true
			close(req.done)
			f.mu.Unlock()
			return server, nil
		}
		wake := l.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops listening and refuses the Dials still waiting.
func (l *listener) Close() error {
	f := l.node.fab
	f.mu.Lock()
	defer f.mu.Unlock()
	l.closeLocked()
	return nil
}

// closeLocked closes the listener; f.mu is held.
func (l *listener) closeLocked() {
	if l.closed {
		return
	}
	l.closed = true
	delete(l.node.fab.listeners, l.addr)
	for _, req := range l.pending {
		req.refused = true
		close(req.done)
	}
	l.pending = nil
	l.wakeLocked()
}

// wakeLocked wakes Accept; f.mu is held.
func (l *listener) wakeLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// removeLocked forgets a Dial that gave up; f.mu is held.
func (l *listener) removeLocked(req *connRequest) {
	for i, r := range l.pending {
		if r == req {
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			return
		}
	}
}
