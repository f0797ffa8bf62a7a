package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/rdma"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Secret       []byte
	ConnsPerAddr int           // connections per server address; 0 picks a default
	DialTimeout  time.Duration // 0: 5s
	CallTimeout  time.Duration // default per-call deadline when ctx has none; 0: 60s
	Logger       *slog.Logger

	// Transport is auto, tcp or rdma (see TransportAuto); empty: the
	// STRATA_TRANSPORT environment variable, else auto. The client picks
	// per server address: RDMA where the server offers it and it can be
	// reached, TCP otherwise (unless rdma forces it).
	Transport string
	// RDMA selects the device, port and GID and sizes queue pairs; the
	// zero value reads rdma.ConfigFromEnv.
	RDMA rdma.Config
	// Verbs is the RDMA implementation; nil: rdma.Native().
	Verbs rdma.Verbs
	// RDMADialTimeout bounds an attempt to connect over RDMA before auto
	// settles for TCP; 0: 2s.
	RDMADialTimeout time.Duration
}

const (
	defaultConnsPerAddr = 2
	defaultDialTimeout  = 5 * time.Second
	defaultCallTimeout  = 60 * time.Second
	// pingInterval is how long a connection may sit idle before the client
	// pings it, well within the server's idle timeout.
	pingInterval = 30 * time.Second
	// minSweep and maxSweep bound how often calls are checked against the
	// default deadline, so it is kept within an eighth or maxSweep.
	minSweep = 5 * time.Millisecond
	maxSweep = 250 * time.Millisecond
)

// Client calls servers; it keeps a pool of authenticated connections per
// address, redials broken ones and is safe for concurrent use.
type Client struct {
	secret       []byte
	connsPerAddr int
	dialTimeout  time.Duration
	callTimeout  time.Duration
	log          *slog.Logger

	ctx    context.Context // cancelled by Close; ends dials and the housekeeper
	cancel context.CancelFunc
	owned  sync.WaitGroup // readers, dialers and the housekeeper

	mu           sync.Mutex
	closed       bool
	housekeeping bool // the housekeeper runs
	pools        map[string]*addrPool

	transport       string
	transportErr    error // a transport setting that cannot work; calls fail
	verbs           rdma.Verbs
	rdmaCfg         rdma.Config
	rdmaDialTimeout time.Duration
	rdmaOnce        sync.Once // asks the verbs for devices
	hasRDMA         bool
	rdmaMu          sync.Mutex
	rdmaPools       map[rdma.Domain]*rdma.Pool
	rdmaFailed      map[string]time.Time // addresses auto uses TCP for, until
	rdmaMemWarned   atomic.Bool
	tcpCalls        atomic.Uint64
	rdmaCalls       atomic.Uint64
	rdmaFallbacks   atomic.Uint64
}

// addrPool is the set of connections to one address.
type addrPool struct {
	next  atomic.Uint64
	slots []*connSlot
}

// connSlot holds one connection of a pool, or the dial that will fill it.
type connSlot struct {
	mu   sync.Mutex
	cc   *clientConn
	dial *dialing
}

// dialing is a dial in progress; callers wait on done.
type dialing struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// NewClient returns a client.
func NewClient(cfg ClientConfig) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		secret:       append([]byte(nil), cfg.Secret...),
		connsPerAddr: cfg.ConnsPerAddr,
		dialTimeout:  cfg.DialTimeout,
		callTimeout:  cfg.CallTimeout,
		log:          cfg.Logger,
		ctx:          ctx,
		cancel:       cancel,
		pools:        make(map[string]*addrPool),
	}
	if c.connsPerAddr <= 0 {
		c.connsPerAddr = defaultConnsPerAddr
	}
	if c.dialTimeout <= 0 {
		c.dialTimeout = defaultDialTimeout
	}
	if c.callTimeout <= 0 {
		c.callTimeout = defaultCallTimeout
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.rdmaDialTimeout = cfg.RDMADialTimeout
	if c.rdmaDialTimeout <= 0 {
		c.rdmaDialTimeout = defaultRDMADialTimeout
	}
	c.rdmaPools = make(map[rdma.Domain]*rdma.Pool)
	c.rdmaFailed = make(map[string]time.Time)
	c.transport, c.transportErr = resolveTransport(cfg.Transport)
	if c.transportErr == nil {
		c.verbs, c.rdmaCfg, c.transportErr = resolveRDMA(cfg.Verbs, cfg.RDMA)
	}
	return c
}

// Call sends req to addr under op and decodes the reply body into resp
// (which may be nil).
func (c *Client) Call(ctx context.Context, addr string, op uint16, req, resp any) error {
	_, err := c.CallBulk(ctx, addr, op, req, nil, resp, nil)
	return err
}

// Ping asks the server at addr to answer an empty frame; it proves the
// server is up and shares the cluster secret.
func (c *Client) Ping(ctx context.Context, addr string) error {
	return c.Call(ctx, addr, OpPing, nil, nil)
}

// CallBulk is Call with bulk data: out is sent as the request's bulk
// payload, and the reply's bulk payload is read directly into in. It returns
// the reply's bulk length; a reply bulk longer than in is an error (EMSGSIZE).
func (c *Client) CallBulk(ctx context.Context, addr string, op uint16, req any, out []byte, resp any, in []byte) (int, error) {
	if len(c.secret) == 0 {
		return 0, localError(syscall.EACCES, nil, "rpc: %s: client has no cluster secret", addr)
	}
	if c.transportErr != nil {
		return 0, localError(syscall.EINVAL, c.transportErr, "rpc: %s: %v", addr, c.transportErr)
	}
	if len(out) > maxReplyBulk {
		return 0, localError(syscall.EMSGSIZE, nil, "rpc: %s: op %d: bulk of %d bytes is too large", addr, op, len(out))
	}
	if err := ctx.Err(); err != nil {
		return 0, ctxError(err, addr, op)
	}
	// Without a deadline in ctx the call gets the default one, which the
	// housekeeper enforces: a context with a timer per call would cost
	// more than the rest of a small call's work on this side.
	deadline, ctxDeadline := ctx.Deadline()
	if !ctxDeadline {
		deadline = time.Now().Add(c.callTimeout)
	}

	frame, err := encodeFrame(header{op: op}, req)
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return 0, rerr
		}
		return 0, localError(syscall.EINVAL, err, "rpc: %s: op %d: %v", addr, op, err)
	}
	defer putFrame(frame)
	setBulkLen(frame.Bytes(), len(out))

	// A request that was not completely written cannot have been served, so
	// it is sent once more on a fresh connection: a pooled connection may
	// have broken while idle. So is one whose RDMA message never left, and
	// one the server refused unserved over RDMA goes again over TCP.
	overTCP := false
	for attempt := 0; ; attempt++ {
		cc, err := c.conn(ctx, addr, deadline)
		if err != nil {
			return 0, err
		}
		if cc.maxBulk > 0 && len(out) > cc.maxBulk {
			return 0, localError(syscall.EMSGSIZE, nil, "rpc: %s: op %d: bulk of %d bytes exceeds the server's %d-byte limit", addr, op, len(out), cc.maxBulk)
		}
		var expires int64 // zero: ctx's deadline ends the wait
		if !ctxDeadline {
			expires = deadline.UnixNano()
		}
		var cl *call
		var id uint64
		if cc.rd != nil && !overTCP {
			cl, id, err = cc.rd.send(ctx, frame.Bytes(), out, in, deadline, expires)
		} else {
			c.tcpCalls.Add(1)
			cl, id, err = cc.send(frame.Bytes(), out, in, deadline, expires)
		}
		if err != nil {
			if attempt == 0 && errors.Is(err, errWrite) && ctx.Err() == nil {
				continue
			}
			return 0, err
		}
		n, err := c.wait(ctx, cc, cl, id, op, resp)
		if err != nil && attempt == 0 && ctx.Err() == nil {
			if errors.Is(err, errRetryTCP) {
				overTCP = true
				continue
			}
			if errors.Is(err, errUnsent) {
				continue
			}
		}
		return n, err
	}
}

// wait waits for the reply to call id and decodes it.
func (c *Client) wait(ctx context.Context, cc *clientConn, cl *call, id uint64, op uint16, resp any) (int, error) {
	select {
	case <-cl.done:
	case <-ctx.Done():
		if cc.abandon(id) {
			putCall(cl)
			return 0, ctxError(ctx.Err(), cc.addr, op)
		}
		// The reader is receiving this reply, possibly into the caller's
		// buffer: it must finish before the call returns.
		timer := time.NewTimer(claimGrace)
		select {
		case <-cl.done:
		case <-timer.C:
			cc.fail(localError(syscall.ETIMEDOUT, ctx.Err(), "rpc: %s: reply stalled", cc.addr))
			<-cl.done
		}
		timer.Stop()
	}
	status, body, bulkN, err := cl.status, cl.body, cl.bulkN, cl.err
	putCall(cl)
	defer putBuf(body)
	switch {
	case err == errExpired:
		return 0, ctxError(context.DeadlineExceeded, cc.addr, op)
	case err != nil:
		return 0, err
	case status != 0:
		return 0, &Error{Errno: syscall.Errno(status), Msg: errorText(body)}
	}
	if err := decodeBody(body, resp); err != nil {
		return 0, localError(syscall.EPROTO, err, "rpc: %s: op %d: decode reply: %v", cc.addr, op, err)
	}
	return bulkN, nil
}

// Close closes every connection; calls in flight fail. It waits for the
// client's goroutines to exit.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	pools := c.pools
	c.pools = nil
	c.mu.Unlock()

	c.cancel()
	closed := c.closedError("")
	for _, p := range pools {
		for _, s := range p.slots {
			s.mu.Lock()
			cc := s.cc
			s.cc = nil
			s.mu.Unlock()
			if cc != nil {
				cc.fail(closed)
			}
		}
	}
	c.owned.Wait()
	c.rdmaMu.Lock()
	for _, p := range c.rdmaPools {
		_ = p.Close()
	}
	c.rdmaPools = map[rdma.Domain]*rdma.Pool{}
	c.rdmaMu.Unlock()
	return nil
}

// closedError is the error of a call on a closed client.
func (c *Client) closedError(addr string) *Error {
	if addr == "" {
		return localError(syscall.ESHUTDOWN, net.ErrClosed, "rpc: client closed")
	}
	return localError(syscall.ESHUTDOWN, net.ErrClosed, "rpc: %s: client closed", addr)
}

// spawn runs fn on a goroutine the client owns, unless the client is closed.
func (c *Client) spawn(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.owned.Add(1)
	go func() {
		defer c.owned.Done()
		fn()
	}()
	return true
}

// pool returns the connection pool for addr, creating it on first use.
func (c *Client) pool(addr string) (*addrPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, c.closedError(addr)
	}
	p := c.pools[addr]
	if p == nil {
		p = &addrPool{slots: make([]*connSlot, c.connsPerAddr)}
		for i := range p.slots {
			p.slots[i] = &connSlot{}
		}
		c.pools[addr] = p
	}
	if !c.housekeeping {
		c.housekeeping = true
		c.owned.Add(1)
		go func() {
			defer c.owned.Done()
			c.housekeep()
		}()
	}
	return p, nil
}

// conn returns a healthy connection to addr, round robin over the pool. A
// slot without a connection is dialed; meanwhile the call uses another
// healthy connection of the pool if there is one. Waiting for a dial ends
// with ctx or at deadline.
func (c *Client) conn(ctx context.Context, addr string, deadline time.Time) (*clientConn, error) {
	p, err := c.pool(addr)
	if err != nil {
		return nil, err
	}
	n := uint64(len(p.slots))
	start := p.next.Add(1)
	s := p.slots[start%n]
	s.mu.Lock()
	if cc := s.cc; cc != nil && cc.healthy() {
		s.mu.Unlock()
		return cc, nil
	}
	s.cc = nil
	d := s.dial
	if d == nil {
		d = &dialing{done: make(chan struct{})}
		if !c.spawn(func() { c.dialSlot(s, addr, d) }) {
			s.mu.Unlock()
			return nil, c.closedError(addr)
		}
		s.dial = d
	}
	s.mu.Unlock()

	for i := uint64(1); i < n; i++ {
		o := p.slots[(start+i)%n]
		o.mu.Lock()
		cc := o.cc
		o.mu.Unlock()
		if cc != nil && cc.healthy() {
			return cc, nil
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	select {
	case <-d.done:
		return d.cc, d.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, localError(syscall.ETIMEDOUT, ctx.Err(), "rpc: %s: timed out connecting", addr)
		}
		return nil, localError(syscall.EINTR, ctx.Err(), "rpc: %s: interrupted while connecting: %v", addr, ctx.Err())
	}
}

// dialSlot dials addr for slot s and publishes the result to d.
func (c *Client) dialSlot(s *connSlot, addr string, d *dialing) {
	cc, err := c.dial(addr)
	s.mu.Lock()
	s.dial = nil
	if err == nil {
		if c.ctx.Err() != nil {
			// Close already swept the slots; nobody else would close cc.
			cc.fail(c.closedError(addr))
			cc, err = nil, c.closedError(addr)
		} else {
			s.cc = cc
		}
	}
	s.mu.Unlock()
	d.cc, d.err = cc, err
	close(d.done)
}

// dial connects to addr, authenticates and starts the connection's reader.
func (c *Client) dial(addr string) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.dialTimeout)
	defer cancel()
	dialer := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, c.closedError(addr)
		}
		return nil, localError(dialErrno(err), err, "rpc: %s: cannot connect: %v", addr, dialCause(err))
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	deadline, _ := ctx.Deadline()
	abort := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	welcome, err := clientHandshake(nc, addr, c.secret, deadline)
	if !abort() && err == nil {
		// The dial context ended while the handshake finished; the
		// connection's deadline may now be in the past.
		err = localError(syscall.ETIMEDOUT, ctx.Err(), "rpc: %s: handshake timed out", addr)
	}
	if err != nil {
		_ = nc.Close()
		if c.ctx.Err() != nil {
			return nil, c.closedError(addr)
		}
		return nil, err
	}
	cc := newClientConn(addr, nc, welcome.MaxBulk)
	if err := c.upgrade(cc, welcome); err != nil {
		_ = nc.Close()
		return nil, err
	}
	if !c.spawn(cc.readLoop) {
		cc.fail(c.closedError(addr))
		return nil, c.closedError(addr)
	}
	c.log.Debug("rpc: connected", "addr", addr)
	return cc, nil
}

// dialCause trims a dial error to its most telling part (the system call
// error when there is one).
func dialCause(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// sweepInterval is how often the housekeeper fails calls past the default
// deadline: an eighth of it, within [minSweep, maxSweep].
func (c *Client) sweepInterval() time.Duration {
	return min(max(c.callTimeout/8, minSweep), maxSweep)
}

// housekeep fails the calls that ran past their default deadline and pings
// connections idle for pingInterval, until the client closes.
func (c *Client) housekeep() {
	t := time.NewTicker(c.sweepInterval())
	defer t.Stop()
	lastPing := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		ping := now.Sub(lastPing) >= pingInterval
		if ping {
			lastPing = now
		}
		for _, cc := range c.liveConns() {
			cc.expire(now)
			if ping && cc.idleSince(now.Add(-pingInterval)) {
				cc.ping()
			}
		}
	}
}

// liveConns returns every healthy connection of the client.
func (c *Client) liveConns() []*clientConn {
	c.mu.Lock()
	pools := make([]*addrPool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.Unlock()
	var out []*clientConn
	for _, p := range pools {
		for _, s := range p.slots {
			s.mu.Lock()
			if s.cc != nil && s.cc.healthy() {
				out = append(out, s.cc)
			}
			s.mu.Unlock()
		}
	}
	return out
}
