// Package rpc is Strata's one request/response protocol, used for every hop
// (client to MDS, client to OSS, OSS to MDS, MDS to OSS).
//
// A frame is a fixed 32-byte binary header (magic, version, flags, opcode,
// request id, status, metadata length, bulk length; see frame.go), a
// metadata body (msgpack, at most MaxBody bytes) and an optional bulk
// payload (at most the server's MaxBulk). Many requests may be in flight per
// connection; replies match requests by id and may come back in any order.
// Servers run on gnet v2 event loops and execute handlers on a bounded pool of
// worker goroutines, never on the loop; a worker writes its reply to the
// socket itself when nothing of the connection's output waits in gnet. Clients use plain net.Conn connections,
// pooled per address; a reply's bulk is read straight into the caller's
// buffer and a request's bulk is written with writev, neither copied.
//
// Transports (transport.go, rdma_proto.go): every connection is set up and
// authenticated over TCP. Where the server has an RDMA device (package
// rdma) it offers its rdma_cm address in the handshake, and a client with
// a device binds a queue pair to the session: requests and replies then
// travel as RDMA messages and bulk moves one-sided, the server reading a
// request's bulk from the client's registered buffer and writing a reply's
// into it. Handlers and callers see the same []byte bulk either way;
// ClientConfig.Transport, ServerConfig.Transport and STRATA_TRANSPORT force
// tcp or rdma, and auto falls back to TCP wherever RDMA does not work.
//
// Every connection starts with a challenge-response HMAC over the cluster
// secret, proved in both directions (auth.go); a peer that cannot prove the
// secret is refused and no request of its is served. Opcodes below
// FirstUserOp belong to this package: OpHello carries the handshake,
// OpRDMABind ties a queue pair to an authenticated session, and OpPing is
// answered by the server itself.
//
// Errors: a handler error that wraps a syscall.Errno travels as that errno in
// the frame status with the error text; any other error travels as EIO. The
// caller gets an *Error, and errors.Is(err, syscall.ENOENT) works on it.
// Local failures are *Error values too: ETIMEDOUT for a call past its
// deadline, EINTR for a cancelled one, ECONNREFUSED or EHOSTUNREACH for a
// failed dial, ECONNRESET for a connection that broke under the call.
//
// It is not a general RPC framework: there is no service discovery, retry
// policy or streaming; callers decide what to retry.
package rpc
