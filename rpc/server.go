package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/stratafs/strata/rdma"
)

// Request is one incoming call. Body and Bulk are valid until the handler
// returns. (They are in fact recycled only once the reply has been written,
// so a reply may carry a slice of the request, as an echo does.)
type Request struct {
	Op   uint16
	Body []byte // msgpack metadata
	Bulk []byte // bulk payload, possibly empty
	Peer string // remote address

	in       *inFrame
	s        *Server
	sc       *serverConn
	deferred *Deferred
}

// ErrDeferred is what a handler returns after Request.Defer: the reply
// comes later, through the Deferred.
var ErrDeferred = errors.New("rpc: reply deferred")

// Defer lets a handler answer after it returns, from any goroutine: it
// returns ErrDeferred, and whoever holds the Deferred calls Reply once.
// Meanwhile the request holds no worker, so a server can keep many long
// polls waiting (the metadata lease callbacks) at the cost of a buffer
// each. The request counts as in flight until the reply.
func (r *Request) Defer() *Deferred {
	if r.deferred == nil {
		r.deferred = &Deferred{r: r, s: r.s, gone: make(chan struct{})}
		if r.sc != nil {
			r.sc.park(r.deferred)
		}
	}
	return r.deferred
}

// Deferred is a request whose handler returned ErrDeferred.
type Deferred struct {
	r    *Request
	s    *Server
	once sync.Once
	gone chan struct{}
}

// Gone is closed when the request's connection closes before the reply:
// its client is gone, or will send again on a new connection.
func (d *Deferred) Gone() <-chan struct{} { return d.gone }

// Reply sends the deferred reply (or err); calls after the first do
// nothing.
func (d *Deferred) Reply(rep *Reply, err error) {
	d.once.Do(func() {
		if d.s == nil { // a Request built outside a server (tests)
			return
		}
		d.r.sc.unpark(d)
		d.s.finish(d.r.sc, d.r.in, rep, err)
	})
}

// BulkBuffer returns an n-byte buffer for the reply's bulk, valid until the
// reply has been sent. A handler that fills it (or a prefix of it) and
// returns that as Reply.Bulk saves a copy: on an RDMA connection it is
// registered memory the reply's bulk is written to the client from, on TCP
// a pooled buffer. A second call returns a plain new slice.
func (r *Request) BulkBuffer(n int) []byte {
	in := r.in
	if in == nil || n <= 0 || in.replyBuf != nil {
		return make([]byte, max(n, 0))
	}
	if in.rdma != nil {
		if b := in.rdma.bulkBuffer(n); b != nil {
			in.replyBuf = b
			return b
		}
		return make([]byte, n)
	}
	in.replyBuf = getBuf(n)
	return in.replyBuf
}

// Decode unmarshals the request body into v. An empty body leaves v as it is.
func (r *Request) Decode(v any) error {
	if err := decodeBody(r.Body, v); err != nil {
		return &Error{Errno: syscall.EINVAL, Msg: fmt.Sprintf("rpc: op %d: decode request: %v", r.Op, err), cause: err}
	}
	return nil
}

// Reply is a handler's answer. Body is marshalled with msgpack; Bulk is sent
// as the bulk payload; Release, if set, is called once Bulk has been written
// (so pooled buffers can be reused). Release is called exactly once, also
// when the reply could not be sent; it may run on a network event loop and
// must not block.
type Reply struct {
	Body    any
	Bulk    []byte
	Release func()
}

// Handler serves one opcode. The context is cancelled when the server stops.
type Handler func(ctx context.Context, req *Request) (*Reply, error)

// ServerConfig configures a Server.
type ServerConfig struct {
	Addr    string       // listen address, e.g. "127.0.0.1:0"
	Secret  []byte       // cluster secret
	Workers int          // handler goroutines; 0 picks a default
	MaxBulk int          // largest bulk payload accepted; 0 means 16 MiB
	Logger  *slog.Logger // nil: slog.Default()

	// Transport is auto, tcp or rdma (see TransportAuto); empty: the
	// STRATA_TRANSPORT environment variable, else auto. Under auto and
	// rdma the server also listens through rdma_cm on its address and
	// offers RDMA to every client that authenticates.
	Transport string
	// RDMA selects the device, port and GID and sizes queue pairs; the
	// zero value reads rdma.ConfigFromEnv.
	RDMA rdma.Config
	// Verbs is the RDMA implementation; nil: rdma.Native().
	Verbs rdma.Verbs
}

const (
	// defaultIdleTimeout closes a connection that carried no frame and has no
	// request in flight for this long; clients ping well within it.
	defaultIdleTimeout = 2 * time.Minute
	// defaultTick is how often connections are checked against deadlines.
	defaultTick = time.Second
	// readBufferCap is gnet's per-read buffer: room for many small requests
	// at once; a large bulk is read past it, straight into the request's
	// buffer (see readBulk).
	readBufferCap = 64 << 10
	// writeBufferCap is gnet's static per-write buffer size, large enough
	// for a 1 MiB bulk frame in one system call.
	writeBufferCap = 1 << 20
)

// ServerStats is a snapshot of a server's counters.
type ServerStats struct {
	Conns    int64  // connections open now
	InFlight int64  // handlers running or queued now
	Requests uint64 // requests handed to handlers since Start
	Errors   uint64 // requests answered with an error status since Start
	Refused  uint64 // connections refused (authentication, malformed frames)

	// RDMAConns of the Conns move their requests over RDMA; the others
	// over TCP.
	RDMAConns int64
	// RDMARequests of the Requests came over RDMA.
	RDMARequests uint64
}

// Server serves registered handlers over TCP with gnet. Frames are parsed on
// gnet's event loops; handlers run on a bounded pool of long-lived worker
// goroutines, because they block on disks and the KV store, and a worker
// writes its reply to the socket itself (see writeReply).
type Server struct {
	log         *slog.Logger
	addrWant    string
	secret      []byte
	maxBulk     int
	handlers    atomic.Pointer[map[uint16]Handler]
	handleMu    sync.Mutex // serializes Handle's copy-on-write
	work        chan job   // hands a request to an idle worker
	maxWorkers  int32
	workers     atomic.Int32 // workers started
	idleTimeout time.Duration
	authTimeout time.Duration
	tick        time.Duration

	ctx      context.Context // handlers' context, cancelled by Stop
	cancel   context.CancelFunc
	stopping chan struct{} // closed when Stop begins

	transport    string
	transportErr error // a transport setting that cannot work; Start fails
	verbs        rdma.Verbs
	rdmaCfg      rdma.Config
	rdma         *rdmaServer // set by Start before serving, when RDMA is on

	loopMu     sync.RWMutex   // guards queueing work on the event loops
	loopClosed bool           // set by Stop before the engine shuts down
	handling   sync.WaitGroup // the workers
	stopOnce   sync.Once
	unsent     sync.Map // *replyDone of replies queued on a loop, not yet written

	mu        sync.Mutex
	started   bool
	addr      string
	eng       gnet.Engine
	runDone   chan struct{} // closed when gnet.Run returns
	stopCtx   func() bool   // unregisters the Start context's AfterFunc
	lnFD      int           // a duplicate of the listening socket, or -1
	conns     map[*serverConn]struct{}
	connCount atomic.Int64
	inFlight  atomic.Int64
	requests  atomic.Uint64
	errs      atomic.Uint64
	refused   atomic.Uint64
}

// NewServer returns a server; register handlers before Start.
func NewServer(cfg ServerConfig) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	workers := cfg.Workers
	if workers <= 0 {
		// Handlers block on disks, the KV store and lock waits; a generous
		// bound keeps a few slow requests from starving the rest.
		workers = max(256, 32*runtime.GOMAXPROCS(0))
	}
	maxBulk := cfg.MaxBulk
	if maxBulk <= 0 {
		maxBulk = DefaultMaxBulk
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:         log,
		addrWant:    cfg.Addr,
		secret:      append([]byte(nil), cfg.Secret...),
		maxBulk:     min(maxBulk, maxReplyBulk),
		work:        make(chan job),
		maxWorkers:  int32(workers),
		idleTimeout: defaultIdleTimeout,
		authTimeout: authDeadline,
		tick:        defaultTick,
		ctx:         ctx,
		cancel:      cancel,
		stopping:    make(chan struct{}),
		conns:       make(map[*serverConn]struct{}),
		lnFD:        -1,
	}
	s.handlers.Store(&map[uint16]Handler{})
	s.transport, s.transportErr = resolveTransport(cfg.Transport)
	if s.transportErr == nil {
		s.verbs, s.rdmaCfg, s.transportErr = resolveRDMA(cfg.Verbs, cfg.RDMA)
	}
	return s
}

// Handle registers h for op. Opcodes below FirstUserOp are reserved and
// registering one panics, as does a nil handler: both are programming errors.
func (s *Server) Handle(op uint16, h Handler) {
	if op < FirstUserOp {
		panic(fmt.Sprintf("rpc: opcode %d is reserved", op))
	}
	if h == nil {
		panic(fmt.Sprintf("rpc: nil handler for opcode %d", op))
	}
	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	old := *s.handlers.Load()
	m := make(map[uint16]Handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[op] = h
	s.handlers.Store(&m)
}

// handler returns the handler registered for op, or nil.
func (s *Server) handler(op uint16) Handler { return (*s.handlers.Load())[op] }

// Start listens and serves in the background until Stop or ctx ends. It
// returns once the listener is up.
func (s *Server) Start(ctx context.Context) error {
	if len(s.secret) == 0 {
		return errors.New("rpc: server has no cluster secret")
	}
	if s.transportErr != nil {
		return s.transportErr
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("rpc: server already started")
	}
	select {
	case <-s.stopping:
		s.mu.Unlock()
		return errors.New("rpc: server stopped")
	default:
	}
	if err := s.startRDMA(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.started = true
	s.runDone = make(chan struct{})
	s.mu.Unlock()

	booted := make(chan error, 1)
	loop := &eventHandler{s: s, booted: booted}
	var runErr error
	go func() {
		defer close(s.runDone)
		runErr = gnet.Run(loop, "tcp://"+s.addrWant,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(eventLoops()),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(readBufferCap),
			gnet.WithWriteBufferCap(writeBufferCap),
			gnet.WithTicker(true),
			gnet.WithLogger(gnetLogger{s}),
		)
	}()
	select {
	case err := <-booted:
		if err != nil {
			s.Stop()
			return fmt.Errorf("rpc: listen %s: %w", s.addrWant, err)
		}
	case <-s.runDone:
		s.rdma.stop()
		s.rdma.closePools()
		return fmt.Errorf("rpc: listen %s: %w", s.addrWant, runErr)
	}
	stop := context.AfterFunc(ctx, s.Stop)
	s.mu.Lock()
	s.stopCtx = stop
	s.mu.Unlock()
	s.log.Debug("rpc: serving", "addr", s.Addr())
	return nil
}

// Addr returns the address the server listens on (useful with port 0).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and every connection, cancels the handlers'
// context and waits for the handlers to return. It is safe to call more than
// once and from several goroutines.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.mu.Lock()
		started, eng, runDone, stopCtx, lnFD := s.started, s.eng, s.runDone, s.stopCtx, s.lnFD
		s.lnFD = -1
		s.mu.Unlock()
		if stopCtx != nil {
			stopCtx()
		}
		s.loopMu.Lock()
		s.loopClosed = true
		s.loopMu.Unlock()
		if started {
			s.stopEngine(eng, runDone, lnFD)
		}
		s.cancel()
		s.rdma.stop()
		s.handling.Wait()
		// gnet drops the writes still queued when its loops exit, without
		// calling back; release their buffers here.
		s.unsent.Range(func(k, _ any) bool {
			k.(*replyDone).run()
			return true
		})
		s.rdma.closePools()
	})
}

// stopEngine shuts gnet down and waits for gnet.Run to return.
//
// Stopping the engine directly races gnet's acceptor against its event
// loops: a connection accepted while the loops exit is never registered nor
// closed, and its client hangs. Shutting the listening socket down instead
// makes the acceptor fail and stop the engine itself, after it has handed
// every accepted connection to a loop (which closes it, seeing s.stopping).
func (s *Server) stopEngine(eng gnet.Engine, runDone chan struct{}, lnFD int) {
	if lnFD >= 0 {
		defer syscall.Close(lnFD)
		if err := syscall.Shutdown(lnFD, syscall.SHUT_RD); err == nil {
			timer := time.NewTimer(time.Second)
			defer timer.Stop()
			select {
			case <-runDone:
				return
			case <-timer.C:
			}
		}
	}
	// Engine.Stop polls every 500 ms for the engine to finish; waiting for
	// gnet.Run to return is both exact and faster.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_ = eng.Stop(done)
	<-runDone
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Conns:    s.connCount.Load(),
		InFlight: s.inFlight.Load(),
		Requests: s.requests.Load(),
		Errors:   s.errs.Load(),
		Refused:  s.refused.Load(),
	}
	s.mu.Lock()
	r := s.rdma
	s.mu.Unlock()
	if r != nil {
		st.RDMAConns = r.bound.Load()
		st.RDMARequests = r.requests.Load()
	}
	return st
}

// job is one complete request for a worker.
type job struct {
	sc *serverConn
	in *inFrame
}

// eventLoops is how many gnet event loops to run: one per two Ps. A loop
// idling in epoll_wait keeps its P (the Go scheduler sees a system call)
// until sysmon takes it back some 20 µs or more later, so a loop per P
// leaves the handlers, and in-process clients, no P to wake up on.
func eventLoops() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// hand gives a complete request to an idle worker, starting a new one while
// fewer than maxWorkers run. With every worker busy it waits for one (the
// loop stops reading meanwhile, which pushes back on clients through TCP),
// unless the server stops; it reports whether a worker took the request.
func (s *Server) hand(j job) bool {
	select {
	case s.work <- j:
		return true
	default:
	}
	if s.workers.Add(1) <= s.maxWorkers {
		s.handling.Add(1)
		go s.worker(j)
		return true
	}
	s.workers.Add(-1)
	select {
	case s.work <- j:
		return true
	case <-s.stopping:
		return false
	}
}

// worker serves requests until the server stops. Workers live as long as
// the server, so a request costs neither a goroutine start nor the growth
// of a fresh goroutine's stack.
func (s *Server) worker(j job) {
	defer s.handling.Done()
	for {
		s.serve(j.sc, j.in)
		select {
		case j = <-s.work:
		case <-s.stopping:
			return
		}
	}
}

// serve runs one request's handler and sends the reply. The request's
// buffers are recycled once the reply has been written, so a handler may
// answer with a slice of the request.
func (s *Server) serve(sc *serverConn, in *inFrame) {
	s.requests.Add(1)
	s.inFlight.Add(1)
	sc.inFlight.Add(1)

	in.req = Request{Op: in.h.op, Body: in.body, Bulk: in.bulk, Peer: sc.peer, in: in, s: s, sc: sc}
	req := &in.req
	rep, err := s.invoke(in.handler, req)
	if d := req.deferred; d != nil && errors.Is(err, ErrDeferred) {
		return
	}
	if d := req.deferred; d != nil {
		d.once.Do(func() { sc.unpark(d) }) // answered now: a later Reply does nothing
	}
	s.finish(sc, in, rep, err)
}

// finish sends a request's reply and ends its accounting.
func (s *Server) finish(sc *serverConn, in *inFrame, rep *Reply, err error) {
	defer s.inFlight.Add(-1)
	defer sc.inFlight.Add(-1)
	op, id := in.h.op, in.h.id
	var release func()
	if rep != nil {
		release = rep.Release
	}
	frame, bulk, err := s.encodeReply(op, id, rep, err)
	if err != nil {
		s.log.Error("rpc: encode error reply", "op", op, "peer", sc.peer, "err", err)
		s.onLoop(sc.c.Close)
		in.release()
		if release != nil {
			release()
		}
		return
	}
	sc.lastActive.Store(time.Now().UnixNano())
	if in.rdma != nil {
		in.rdma.reply(s, sc, frame, bulk, in, release)
		return
	}
	s.writeReply(sc, frame, bulk, in, release)
}

// onLoop runs fn, which queues work on a gnet event loop, unless the server
// is stopping. gnet wakes a loop by writing to its eventfd, even after the
// loop has closed it; by then the descriptor number may belong to another
// file, so nothing may be queued once the engine starts shutting down. It
// reports whether fn ran and succeeded.
func (s *Server) onLoop(fn func() error) bool {
	s.loopMu.RLock()
	defer s.loopMu.RUnlock()
	return !s.loopClosed && fn() == nil
}

// encodeReply encodes the reply frame for a handler's result; a handler
// error, or a reply that cannot be encoded, becomes an error reply. It fails
// only when not even an error reply can be encoded.
func (s *Server) encodeReply(op uint16, id uint64, rep *Reply, herr error) (*bytes.Buffer, []byte, error) {
	if herr == nil {
		var (
			body any
			bulk []byte
		)
		if rep != nil {
			body, bulk = rep.Body, rep.Bulk
		}
		frame, err := encodeFrame(header{flags: flagReply, op: op, id: id}, body)
		switch {
		case err != nil:
			herr = err
		case len(bulk) > maxReplyBulk:
			putFrame(frame)
			herr = &Error{Errno: syscall.EMSGSIZE, Msg: fmt.Sprintf("rpc: op %d: reply bulk of %d bytes is too large", op, len(bulk))}
		default:
			setBulkLen(frame.Bytes(), len(bulk))
			return frame, bulk, nil
		}
	}
	s.errs.Add(1)
	frame, err := encodeErrorFrame(op, id, herr)
	return frame, nil, err
}

// invoke calls h, turning a panic into an EIO error so one bad request
// cannot take the server down.
func (s *Server) invoke(h Handler, req *Request) (rep *Reply, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("rpc: handler panicked", "op", req.Op, "peer", req.Peer, "panic", r, "stack", string(debug.Stack()))
			rep, err = nil, &Error{Errno: syscall.EIO, Msg: fmt.Sprintf("rpc: op %d: internal server error", req.Op)}
		}
	}()
	return h(s.ctx, req)
}

// encodeErrorFrame encodes an error reply: the errno as status and the error
// text as a msgpack string body.
func encodeErrorFrame(op uint16, id uint64, err error) (*bytes.Buffer, error) {
	return encodeFrame(header{flags: flagReply, op: op, id: id, status: uint32(errnoOf(err))}, err.Error())
}

// localAddr returns the address of a listening socket.
func localAddr(fd int) (string, error) {
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return "", err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	case *syscall.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	}
	return "", fmt.Errorf("rpc: unexpected listener address %T", sa)
}

// gnetLogger sends gnet's own log lines to the server's logger; gnet's
// routine chatter goes to debug, and so do the errors gnet reports while the
// server stops (stopEngine makes its acceptor fail on purpose).
type gnetLogger struct{ s *Server }

// logf logs one gnet line at level, or at debug while the server stops.
func (l gnetLogger) logf(level slog.Level, format string, args ...any) {
	select {
	case <-l.s.stopping:
		level = slog.LevelDebug
	default:
	}
	l.s.log.Log(context.Background(), level, "gnet: "+fmt.Sprintf(format, args...))
}

// Debugf logs gnet's debug chatter at debug level.
func (l gnetLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }

// Infof logs gnet's informational lines at debug level.
func (l gnetLogger) Infof(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }

// Warnf logs gnet's warnings.
func (l gnetLogger) Warnf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }

// Errorf logs gnet's errors.
func (l gnetLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }

// Fatalf logs gnet's fatal errors; gnet itself decides what happens next.
func (l gnetLogger) Fatalf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
