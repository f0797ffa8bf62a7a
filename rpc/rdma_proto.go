package rpc

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/stratafs/strata/rdma"
)

// RPC over RDMA.
//
// A connection is set up and authenticated over TCP as always. A server
// with an RDMA device names its rdma_cm address in the welcome; the client
// connects a queue pair to it and proves, in the first message on it, that
// the queue pair belongs to the session just authenticated:
//
//	client -> server  OpRDMABind request  bindMsg{HMAC(secret, "strata-rdma-bind" || Nc || Ns)}
//	server -> client  OpRDMABind reply    bindMsg{HMAC(secret, "strata-rdma-bound" || Ns || Nc)}
//
// with the nonces of the TCP handshake. A token is good once, for the TCP
// connection that earned it; nothing but the binding is served on a queue
// pair before it, so RDMA never bypasses authentication. From then on the
// client sends its requests as RDMA messages and the server answers the
// same way; the TCP connection stays open, carries the client's keepalive
// pings and any frame too large for an RDMA message, and closing either
// side of the session closes both.
//
// A message is one SEND of at most rdmaInline bytes into a receive the
// peer posted beforehand: the frame header and metadata body as on TCP,
// never the bulk. A request has flagRDMA set and a 32-byte trailer after
// its body naming the client's registered buffer, big endian:
//
//	offset size field
//	0      8    source address  (the request's bulk; the server RDMA-READs it)
//	8      4    source rkey
//	12     4    source length   (the header's bulk length)
//	16     8    sink address    (where the server RDMA-WRITEs the reply's bulk)
//	24     4    sink rkey
//	28     4    sink length     (the most reply bulk the caller takes)
//
// Both usually point into one buffer, into which the client copies the
// caller's bulk: the one copy the client makes. The server reads the
// request's bulk into registered memory before the handler runs, and writes
// the reply's bulk into the sink before it sends the reply, whose header
// gives the bulk length: reliable connections deliver the SEND only after
// the WRITE before it is in place, so a reply in hand means its bytes are
// too. A reply bulk larger than the sink is not written, and the caller
// gets EMSGSIZE as on TCP.
//
// Flow control is by credits: the client has at most rdmaDepth requests
// outstanding per connection, the number of receives each side keeps
// posted. A request's buffer is reused only after its reply came (or its
// queue pair flushed and was destroyed), so an RDMA WRITE answering a call
// that timed out lands in memory nobody else uses.
const (
	// OpRDMABind binds a queue pair to an authenticated session.
	OpRDMABind uint16 = 3

	// flagRDMA marks a request sent as an RDMA message, with a trailer.
	flagRDMA uint8 = 1 << 1
	// flagRetryTCP marks a reply refusing an RDMA request unserved (the
	// server could not register memory for it): the client sends it again
	// over TCP.
	flagRetryTCP uint8 = 1 << 2

	// rdmaInline is the size of an RDMA message: header, body and trailer.
	rdmaInline = 4096
	// trailerSize is the length of a request's buffer descriptors.
	trailerSize = 32

	bindLabel  = "strata-rdma-bind"
	boundLabel = "strata-rdma-bound"
)

// Work request ids carry what they are for in their top bits.
const (
	wrRecv uint64 = 1 << 62
	wrSend uint64 = 2 << 62
	wrKind uint64 = 3 << 62
)

// bindMsg is the body of both OpRDMABind messages. The server's answer
// also gives its queue depth: the client keeps no more requests in flight.
type bindMsg struct {
	MAC   []byte `msgpack:"mac"`
	Depth int    `msgpack:"d,omitempty"`
}

// rdmaBindMAC is the client's proof that a queue pair belongs to the
// session with nonces nc (client) and ns (server).
func rdmaBindMAC(secret, nc, ns []byte) []byte { return authMAC(secret, bindLabel, nc, ns) }

// rdmaBoundMAC is the server's proof in answer.
func rdmaBoundMAC(secret, ns, nc []byte) []byte { return authMAC(secret, boundLabel, ns, nc) }

// descriptors are a request's trailer.
type descriptors struct {
	source, sink rdma.Remote
}

// encode writes the trailer into b[:trailerSize].
func (d *descriptors) encode(b []byte) {
	_ = b[trailerSize-1]
	binary.BigEndian.PutUint64(b[0:], d.source.Addr)
	binary.BigEndian.PutUint32(b[8:], d.source.Key)
	binary.BigEndian.PutUint32(b[12:], d.source.Len)
	binary.BigEndian.PutUint64(b[16:], d.sink.Addr)
	binary.BigEndian.PutUint32(b[24:], d.sink.Key)
	binary.BigEndian.PutUint32(b[28:], d.sink.Len)
}

// decodeDescriptors parses a trailer.
func decodeDescriptors(b []byte) descriptors {
	return descriptors{
		source: rdma.Remote{Addr: binary.BigEndian.Uint64(b[0:]), Key: binary.BigEndian.Uint32(b[8:]), Len: binary.BigEndian.Uint32(b[12:])},
		sink:   rdma.Remote{Addr: binary.BigEndian.Uint64(b[16:]), Key: binary.BigEndian.Uint32(b[24:]), Len: binary.BigEndian.Uint32(b[28:])},
	}
}

// errUnsent marks a call whose RDMA message never left (its SEND flushed,
// or could not be posted): it cannot have been served, so CallBulk sends it
// once more on a fresh connection.
var errUnsent = errors.New("rpc: request not sent")

// errRetryTCP marks a call the server refused unserved over RDMA; CallBulk
// sends it again over TCP.
var errRetryTCP = errors.New("rpc: server asked for TCP")

// within reports where b starts inside region, if it lies wholly inside it.
func within(b, region []byte) (int, bool) {
	if len(b) == 0 || len(region) == 0 {
		return 0, false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(region)))
	if start < base || start+uintptr(len(b)) > base+uintptr(len(region)) {
		return 0, false
	}
	return int(start - base), true
}
