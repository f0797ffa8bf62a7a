package rdma

import (
	"context"
	"errors"
	"fmt"
)

// The verbs interface is the narrow part of libibverbs and librdmacm that
// Strata's rpc layer needs: reliable-connected queue pairs set up through
// rdma_cm, memory registered once and reused, two-sided SEND/RECV for
// messages, one-sided RDMA READ/WRITE for bulk, and completions waited for
// on a completion channel. Two implementations exist: the cgo one over the
// real libraries (Native, build tag rdma) and an in-process, adversarial one
// for tests (package rdma/fake). Everything above this interface is plain Go
// and runs in CI against the fake; package rdma/verbstest checks that both
// implementations behave alike.

// Verbs opens RDMA connections on one node.
type Verbs interface {
	// Devices returns the names of the node's RDMA devices. A node without
	// any (or a kernel without RDMA support) returns nil and no error.
	Devices() ([]string, error)
	// Listen accepts connections through rdma_cm on addr ("ip:port"; port
	// 0 picks a free one).
	Listen(addr string, cfg Config) (Listener, error)
	// Dial connects to a listener at addr; ctx bounds address and route
	// resolution and the connection handshake.
	Dial(ctx context.Context, addr string, cfg Config) (QueuePair, error)
}

// Listener accepts RDMA connections.
type Listener interface {
	// Addr returns the address the listener is bound to ("ip:port").
	Addr() string
	// Accept waits for the next connection. It fails with ErrClosed once
	// the listener is closed, and with ctx's error when ctx ends first.
	Accept(ctx context.Context) (QueuePair, error)
	// Close stops listening; connections already accepted are unaffected.
	Close() error
}

// Domain is a protection domain on one device: a region registered in it
// can be used by every queue pair of that device. Queue pairs on the same
// device share one domain, so buffers are registered once per device, not
// once per connection.
type Domain interface {
	// Register allocates size bytes outside the Go heap and registers them
	// with the device for access. A lock limit too low for it
	// (RLIMIT_MEMLOCK) fails with an error wrapping ErrMemlock.
	Register(size int, access Access) (Region, error)
}

// Region is registered memory.
type Region interface {
	// Bytes returns the region's memory. It is not Go heap memory and is
	// unmapped by Close: no slice of it may be used afterwards.
	Bytes() []byte
	// Remote describes the whole region for a peer's RDMA READ or WRITE.
	Remote() Remote
	// Close deregisters and frees the region. No work request may still
	// refer to it.
	Close() error
}

// QueuePair is one reliable-connected (RC) queue pair with its completion
// queue. Posting is safe from several goroutines; Poll is called by one.
type QueuePair interface {
	// Domain returns the protection domain of the queue pair's device.
	Domain() Domain
	// Limits returns the depths the queue pair was created with.
	Limits() Limits
	// Info describes the connection.
	Info() Info
	// PostRecv posts r[off:off+n] to receive one message.
	PostRecv(id uint64, r Region, off, n int) error
	// PostSend sends r[off:off+n] as one message into the peer's next
	// posted receive.
	PostSend(id uint64, r Region, off, n int) error
	// PostRead copies from the peer's registered memory at from into
	// r[off:off+n] (an RDMA READ); n must not exceed from.Len.
	PostRead(id uint64, r Region, off, n int, from Remote) error
	// PostWrite copies r[off:off+n] into the peer's registered memory at
	// to (an RDMA WRITE); n must not exceed to.Len.
	PostWrite(id uint64, r Region, off, n int, to Remote) error
	// Poll waits until at least one completion is available and copies up
	// to len(into) of them; it never spins. After Disconnect (or once the
	// peer disconnects, or an error moves the queue pair to the error
	// state) every outstanding work request completes, those that never
	// ran with StatusFlushed, and Poll then fails with ErrDrained: from
	// then on no work request of the queue pair touches memory any more.
	// Poll fails with ctx's error when ctx ends first.
	Poll(ctx context.Context, into []Completion) (int, error)
	// Disconnect moves the queue pair to the error state and tells the
	// peer; outstanding work requests flush. It does not wait.
	Disconnect() error
	// Close destroys the queue pair. Call it after Poll has returned for
	// the last time; work requests not yet completed then never complete,
	// and none of them touches memory after Close returns.
	Close() error
}

// Access says what a region lets the peers of its domain do.
type Access uint8

// Access bits. Local access (receiving into a region, reading a peer's
// memory into it) is always granted.
const (
	AccessRemoteRead Access = 1 << iota
	AccessRemoteWrite
)

// Remote names registered memory of a peer: what an RDMA request carries
// over the wire (address, length and rkey).
type Remote struct {
	Addr uint64
	Key  uint32
	Len  uint32
}

// Slice returns the n bytes at off within r.
func (r Remote) Slice(off, n int) Remote {
	return Remote{Addr: r.Addr + uint64(off), Key: r.Key, Len: uint32(n)}
}

// Limits are the depths of a queue pair.
type Limits struct {
	SendDepth int // work requests outstanding on the send queue at most
	RecvDepth int // receives posted at most
	MaxReads  int // RDMA READs this side may have outstanding at most
}

// Info describes a connected queue pair.
type Info struct {
	Device string // the local RDMA device
	Port   int    // its port
	GID    string // the local GID the connection uses
	Local  string // local address ("ip:port")
	Remote string // the peer's address
}

// Opcode is the kind of a completed work request.
type Opcode uint8

// Opcodes. A completion's opcode is only meaningful when its status is
// StatusOK: verbs do not report it for failed work requests, so callers
// identify work requests by their ids.
const (
	OpUnknown Opcode = iota
	OpSend
	OpRecv
	OpRead
	OpWrite
)

var opNames = [...]string{"unknown", "send", "recv", "read", "write"}

// String returns the opcode's name.
func (o Opcode) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("opcode(%d)", o)
}

// Status is the outcome of a work request.
type Status uint8

// Completion statuses.
const (
	// StatusOK: the work request completed.
	StatusOK Status = iota
	// StatusFlushed: the work request never ran, because its queue pair
	// left the connected state first.
	StatusFlushed
	// StatusRemoteAccess: the peer refused an RDMA READ or WRITE (unknown
	// or deregistered key, range outside the region, access not granted).
	StatusRemoteAccess
	// StatusLocalLength: a received message did not fit the receive.
	StatusLocalLength
	// StatusRemoteInvalid: the peer could not take a message (its receive
	// was too short).
	StatusRemoteInvalid
	// StatusTransport: the peer did not answer within the retry limits.
	StatusTransport
	// StatusOther: any other failure; Completion.Vendor may say more.
	StatusOther
)

var statusNames = [...]string{
	"success", "flushed", "remote access error", "local length error",
	"remote invalid request", "transport retries exceeded", "error",
}

// String returns the status's description.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", s)
}

// Completion reports one finished work request.
type Completion struct {
	ID     uint64 // the id it was posted with
	Op     Opcode // valid only with StatusOK
	Status Status
	Len    int    // bytes received, for a receive
	Vendor uint32 // the device's own error code, for failures
}

// Err returns nil for a successful completion and a *CompletionError
// otherwise.
func (c Completion) Err() error {
	if c.Status == StatusOK {
		return nil
	}
	return &CompletionError{ID: c.ID, Status: c.Status, Vendor: c.Vendor}
}

// CompletionError is a failed work request.
type CompletionError struct {
	ID     uint64
	Status Status
	Vendor uint32
}

func (e *CompletionError) Error() string {
	if e.Vendor != 0 {
		return fmt.Sprintf("rdma: work request %#x: %s (vendor error %#x)", e.ID, e.Status, e.Vendor)
	}
	return fmt.Sprintf("rdma: work request %#x: %s", e.ID, e.Status)
}

// Errors common to the implementations.
var (
	// ErrNoDevice: the node has no RDMA device (or this binary was built
	// without the rdma tag).
	ErrNoDevice = errors.New("rdma: no RDMA device")
	// ErrDrained: the queue pair is disconnected and every work request
	// posted to it has completed.
	ErrDrained = errors.New("rdma: queue pair disconnected and drained")
	// ErrClosed: the listener or queue pair is closed.
	ErrClosed = errors.New("rdma: closed")
	// ErrQueueFull: a post exceeded the queue pair's limits.
	ErrQueueFull = errors.New("rdma: queue full")
	// ErrNotConnected: a post on a queue pair that left the connected state.
	ErrNotConnected = errors.New("rdma: queue pair not connected")
	// ErrMemlock: registering memory failed for the lock limit.
	ErrMemlock = errors.New("rdma: cannot lock memory for registration")
)
