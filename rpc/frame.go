package rpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"syscall"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// The frame header, 32 bytes, big endian:
//
//	offset size field
//	0      4    magic "STRA"
//	4      1    version (1)
//	5      1    flags (bit 0: reply)
//	6      2    opcode
//	8      8    request id
//	16     4    status (errno; 0 on success and in requests)
//	20     4    body length (msgpack metadata)
//	24     4    bulk length (payload after the body)
//	28     4    reserved (0)
const (
	headerSize = 32

	frameMagic   uint32 = 'S'<<24 | 'T'<<16 | 'R'<<8 | 'A'
	frameVersion uint8  = 1

	flagReply uint8 = 1 << 0

	// MaxBody is the largest metadata body a frame may carry.
	MaxBody = 4 << 20
	// DefaultMaxBulk is the largest bulk payload a server accepts unless
	// ServerConfig.MaxBulk says otherwise.
	DefaultMaxBulk = 16 << 20
	// maxReplyBulk bounds the bulk length a client believes in a reply
	// header; anything larger is a corrupt stream.
	maxReplyBulk = 1 << 30
)

// Reserved opcodes. Opcodes below FirstUserOp belong to the rpc package.
const (
	// OpHello carries the authentication handshake.
	OpHello uint16 = 1
	// OpPing is answered by the server itself with an empty reply.
	OpPing uint16 = 2
	// FirstUserOp is the smallest opcode a Handler may be registered for.
	FirstUserOp uint16 = 16
)

var (
	errShortHeader = errors.New("rpc: truncated frame header")
	errBadMagic    = errors.New("rpc: bad frame magic")
)

// header is a decoded frame header.
type header struct {
	version uint8
	flags   uint8
	op      uint16
	id      uint64
	status  uint32
	bodyLen uint32
	bulkLen uint32
}

// isReply reports whether the frame answers a request.
func (h *header) isReply() bool { return h.flags&flagReply != 0 }

// encode writes the header into b[:headerSize] with the current version.
func (h *header) encode(b []byte) {
	_ = b[headerSize-1]
	binary.BigEndian.PutUint32(b[0:], frameMagic)
	b[4] = frameVersion
	b[5] = h.flags
	binary.BigEndian.PutUint16(b[6:], h.op)
	binary.BigEndian.PutUint64(b[8:], h.id)
	binary.BigEndian.PutUint32(b[16:], h.status)
	binary.BigEndian.PutUint32(b[20:], h.bodyLen)
	binary.BigEndian.PutUint32(b[24:], h.bulkLen)
	binary.BigEndian.PutUint32(b[28:], 0)
}

// decodeHeader parses b[:headerSize]. It fails only when the bytes cannot be
// a frame header at all (too short, wrong magic); a header that decodes but
// breaks the rules is reported by check, so the request id is still known.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errShortHeader
	}
	if binary.BigEndian.Uint32(b[0:]) != frameMagic {
		return header{}, errBadMagic
	}
	return header{
		version: b[4],
		flags:   b[5],
		op:      binary.BigEndian.Uint16(b[6:]),
		id:      binary.BigEndian.Uint64(b[8:]),
		status:  binary.BigEndian.Uint32(b[16:]),
		bodyLen: binary.BigEndian.Uint32(b[20:]),
		bulkLen: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// check validates the version and the lengths of a decoded header against
// the limits; the error it returns carries the errno to reply with.
func (h *header) check(maxBulk int) *Error {
	if h.version != frameVersion {
		return &Error{Errno: syscall.EPROTO, Msg: fmt.Sprintf("rpc: unsupported protocol version %d (want %d)", h.version, frameVersion)}
	}
	if h.bodyLen > MaxBody {
		return &Error{Errno: syscall.EMSGSIZE, Msg: fmt.Sprintf("rpc: body of %d bytes exceeds the %d-byte limit", h.bodyLen, MaxBody)}
	}
	if uint64(h.bulkLen) > uint64(maxBulk) {
		return &Error{Errno: syscall.EMSGSIZE, Msg: fmt.Sprintf("rpc: bulk of %d bytes exceeds the %d-byte limit", h.bulkLen, maxBulk)}
	}
	return nil
}

// frameLen is the length of the whole frame the header announces.
func (h *header) frameLen() int { return headerSize + int(h.bodyLen) + int(h.bulkLen) }

// Buffers for frame payloads come from a sync.Pool per power-of-two size
// class, so a server receiving 1 MiB writes does not allocate per request.
// A pool holds a pointer to a buffer's first byte, which an interface holds
// without allocating (a *[]byte made at each put would cost an allocation
// per request); the class gives the length back.
const (
	minClassShift = 9  // 512 B
	maxClassShift = 25 // 32 MiB
)

var bufPools [maxClassShift + 1]sync.Pool

// sizeClass returns the shift of the smallest class holding n bytes.
func sizeClass(n int) int {
	if n <= 1<<minClassShift {
		return minClassShift
	}
	return bits.Len(uint(n - 1))
}

// getBuf returns a buffer of length n, pooled when n fits a size class, and
// nil for n == 0.
func getBuf(n int) []byte {
	if n == 0 {
		return nil
	}
	c := sizeClass(n)
	if c > maxClassShift {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*byte); ok {
		return unsafe.Slice(p, 1<<c)[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBuf returns a buffer obtained from getBuf to its pool.
func putBuf(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	shift := bits.TrailingZeros(uint(c))
	if shift < minClassShift || shift > maxClassShift {
		return
	}
	bufPools[shift].Put(unsafe.SliceData(b))
}

// framePool holds the buffers that frames (header and body) are encoded into.
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame is the largest encoded frame buffer kept for reuse.
const maxPooledFrame = 256 << 10

// encodeFrame encodes h and body (msgpack, nothing when nil) into a pooled
// buffer; h.bodyLen is set from the encoding and h.bulkLen is left to the
// caller. Release the buffer with putFrame once written.
func encodeFrame(h header, body any) (*bytes.Buffer, error) {
	buf := framePool.Get().(*bytes.Buffer)
	buf.Reset()
	var zero [headerSize]byte
	buf.Write(zero[:])
	if body != nil {
		enc := msgpack.GetEncoder()
		enc.Reset(buf)
		err := enc.Encode(body)
		msgpack.PutEncoder(enc)
		if err != nil {
			putFrame(buf)
			return nil, fmt.Errorf("rpc: encode op %d body: %w", h.op, err)
		}
	}
	n := buf.Len() - headerSize
	if n > MaxBody {
		putFrame(buf)
		return nil, &Error{Errno: syscall.EMSGSIZE, Msg: fmt.Sprintf("rpc: op %d body of %d bytes exceeds the %d-byte limit", h.op, n, MaxBody)}
	}
	h.bodyLen = uint32(n)
	h.encode(buf.Bytes())
	return buf, nil
}

// putFrame returns an encoded frame buffer to its pool.
func putFrame(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledFrame {
		return
	}
	framePool.Put(buf)
}

// setBulkLen patches the bulk length of an encoded frame.
func setBulkLen(frame []byte, n int) {
	binary.BigEndian.PutUint32(frame[24:], uint32(n))
}

// bodyDecoder is a msgpack decoder with the reader it decodes from, pooled
// together: msgpack.Unmarshal allocates a bytes.Reader per call.
type bodyDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var bodyDecoders = sync.Pool{New: func() any { return &bodyDecoder{dec: msgpack.NewDecoder(nil)} }}

// decodeBody unmarshals a msgpack body into v, as msgpack.Unmarshal does;
// an empty body leaves v as it is, and a nil v ignores the body.
func decodeBody(body []byte, v any) error {
	if v == nil || len(body) == 0 {
		return nil
	}
	d := bodyDecoders.Get().(*bodyDecoder)
	d.r.Reset(body)
	d.dec.Reset(&d.r)
	err := d.dec.Decode(v)
	d.r.Reset(nil)
	d.dec.Reset(nil)
	bodyDecoders.Put(d)
	return err
}

// errorText decodes the error text of an error reply; a body that is not a
// msgpack string is shown as is.
func errorText(body []byte) string {
	var s string
	if err := msgpack.Unmarshal(body, &s); err != nil {
		return string(body)
	}
	return s
}
