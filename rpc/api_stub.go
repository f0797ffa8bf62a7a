// Package rpc is Strata's one request/response protocol, used for every hop
// (client to MDS, client to OSS, OSS to MDS, MDS to OSS).
//
// A frame is a fixed 32-byte binary header (magic, version, flags, opcode,
// request id, status, metadata length, bulk length), a metadata body
// (msgpack) and an optional bulk payload. Many requests may be in flight per
// connection; replies match requests by id. Servers run on gnet v2 event
// loops and execute handlers on a worker pool, never on the loop. Clients use
// plain net.Conn connections, pooled per address.
//
// Every connection starts with a challenge-response HMAC over the cluster
// secret; a peer that cannot prove the secret is refused and no request of
// its is served.
//
// Errors: a handler error that wraps a syscall.Errno travels as that errno in
// the frame status with the error text; any other error travels as EIO. The
// caller gets an *Error, and errors.Is(err, syscall.ENOENT) works on it.
package rpc

import (
	"context"
	"log/slog"
	"syscall"
	"time"
)

// Error is a failed call as the caller sees it.
type Error struct {
	Errno syscall.Errno // the status of the reply (or a local failure's errno)
	Msg   string        // the server's error text
}

func (e *Error) Error() string { return e.Msg }

// Is lets errors.Is match an *Error against a syscall.Errno.
func (e *Error) Is(target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && errno == e.Errno
}

// Request is one incoming call. Body and Bulk are valid until the handler
// returns.
type Request struct {
	Op   uint16
	Body []byte // msgpack metadata
	Bulk []byte // bulk payload, possibly empty
	Peer string // remote address
}

// Decode unmarshals the request body into v.
func (r *Request) Decode(v any) error { panic("rpc: not implemented") }

// Reply is a handler's answer. Body is marshalled with msgpack; Bulk is sent
// as the bulk payload; Release, if set, is called once Bulk has been written
// (so pooled buffers can be reused).
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
}

// Server serves registered handlers over TCP with gnet.
type Server struct{}

// NewServer returns a server; register handlers before Start.
func NewServer(cfg ServerConfig) *Server { panic("rpc: not implemented") }

// Handle registers h for op.
func (s *Server) Handle(op uint16, h Handler) { panic("rpc: not implemented") }

// Start listens and serves in the background until Stop or ctx ends. It
// returns once the listener is up.
func (s *Server) Start(ctx context.Context) error { panic("rpc: not implemented") }

// Addr returns the address the server listens on (useful with port 0).
func (s *Server) Addr() string { panic("rpc: not implemented") }

// Stop closes the listener and every connection and waits for handlers.
func (s *Server) Stop() { panic("rpc: not implemented") }

// ClientConfig configures a Client.
type ClientConfig struct {
	Secret       []byte
	ConnsPerAddr int           // connections per server address; 0 picks a default
	DialTimeout  time.Duration // 0: 5s
	CallTimeout  time.Duration // default per-call deadline when ctx has none; 0: 60s
	Logger       *slog.Logger
}

// Client calls servers; it keeps a pool of authenticated connections per
// address, redials broken ones and is safe for concurrent use.
type Client struct{}

// NewClient returns a client.
func NewClient(cfg ClientConfig) *Client { panic("rpc: not implemented") }

// Call sends req to addr under op and decodes the reply body into resp
// (which may be nil).
func (c *Client) Call(ctx context.Context, addr string, op uint16, req, resp any) error {
	panic("rpc: not implemented")
}

// CallBulk is Call with bulk data: out is sent as the request's bulk
// payload, and the reply's bulk payload is read directly into in. It returns
// the reply's bulk length; a reply bulk longer than in is an error (EMSGSIZE).
func (c *Client) CallBulk(ctx context.Context, addr string, op uint16, req any, out []byte, resp any, in []byte) (int, error) {
	panic("rpc: not implemented")
}

// Close closes every connection; calls in flight fail.
func (c *Client) Close() error { panic("rpc: not implemented") }
