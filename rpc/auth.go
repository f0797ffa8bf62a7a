package rpc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// The handshake proves the cluster secret in both directions without
// sending it:
//
//	server -> client  op 1 request   challengeMsg{Ns}
//	client -> server  op 1 request   helloMsg{Nc, HMAC(secret, "strata-auth-client" || Ns || Nc)}
//	server -> client  op 1 reply     welcomeMsg{HMAC(secret, "strata-auth-server" || Nc || Ns)}
//
// A server that cannot verify the client's MAC answers EACCES with
// authFailedText and closes; a client that cannot verify the server's MAC
// refuses the connection, so neither side talks to an impostor. Fresh nonces
// on both sides keep a recorded exchange from being replayed.
const (
	nonceSize    = 32
	authDeadline = 5 * time.Second
	// maxHandshakeBody bounds the bodies of handshake frames, which are read
	// before the peer is trusted.
	maxHandshakeBody = 4 << 10

	clientLabel = "strata-auth-client"
	serverLabel = "strata-auth-server"

	authFailedText   = "rpc: authentication failed: wrong cluster secret"
	authRequiredText = "rpc: authentication required"
)

// challengeMsg is the server's opening frame.
type challengeMsg struct {
	Nonce []byte `msgpack:"n"`
}

// helloMsg is the client's answer to the challenge.
type helloMsg struct {
	Nonce []byte `msgpack:"n"`
	MAC   []byte `msgpack:"mac"`
}

// welcomeMsg is the server's proof, the reply to helloMsg. It also tells the
// client the largest request bulk the server accepts, so an oversized
// request fails on the client instead of costing the connection.
type welcomeMsg struct {
	MAC     []byte `msgpack:"mac"`
	MaxBulk int    `msgpack:"mb"`
	// RDMA is the server's rdma_cm address when it offers RDMA (see
	// rdma_proto.go); absent otherwise, so a TCP-only welcome is unchanged.
	RDMA string `msgpack:"rdma,omitempty"`

	// The session's nonces, kept by the client to bind a queue pair.
	clientNonce, serverNonce []byte
}

// newNonce returns nonceSize random bytes.
func newNonce() []byte {
	b := make([]byte, nonceSize)
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(b)
	return b
}

// authMAC computes HMAC-SHA256(secret, label || first || second).
func authMAC(secret []byte, label string, first, second []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(first)
	m.Write(second)
	return m.Sum(nil)
}

// clientMAC is the client's proof over the server's and its own nonce.
func clientMAC(secret, ns, nc []byte) []byte { return authMAC(secret, clientLabel, ns, nc) }

// serverMAC is the server's proof over the client's and its own nonce.
func serverMAC(secret, nc, ns []byte) []byte { return authMAC(secret, serverLabel, nc, ns) }

// clientHandshake runs the client side of the handshake on a fresh
// connection before its reader starts, and returns the server's welcome.
// Every failure is an *Error naming addr.
func clientHandshake(nc net.Conn, addr string, secret []byte, deadline time.Time) (*welcomeMsg, error) {
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, localError(syscall.EIO, err, "rpc: %s: %v", addr, err)
	}
	h, body, err := readHandshakeFrame(nc, addr)
	if err != nil {
		return nil, err
	}
	if h.status != 0 {
		return nil, handshakeRefused(addr, h, body)
	}
	var ch challengeMsg
	if h.op != OpHello || h.isReply() || decodeBody(body, &ch) != nil || len(ch.Nonce) != nonceSize {
		return nil, localError(syscall.EPROTO, nil, "rpc: %s: handshake: unexpected opening frame (op %d)", addr, h.op)
	}

	nonce := newNonce()
	frame, err := encodeFrame(header{op: OpHello}, &helloMsg{Nonce: nonce, MAC: clientMAC(secret, ch.Nonce, nonce)})
	if err != nil {
		return nil, localError(syscall.EIO, err, "rpc: %s: handshake: %v", addr, err)
	}
	_, err = nc.Write(frame.Bytes())
	putFrame(frame)
	if err != nil {
		return nil, connError(addr, err)
	}

	h, body, err = readHandshakeFrame(nc, addr)
	if err != nil {
		return nil, err
	}
	if h.status != 0 {
		return nil, handshakeRefused(addr, h, body)
	}
	var w welcomeMsg
	if h.op != OpHello || !h.isReply() || decodeBody(body, &w) != nil {
		return nil, localError(syscall.EPROTO, nil, "rpc: %s: handshake: unexpected reply (op %d)", addr, h.op)
	}
	if !hmac.Equal(w.MAC, serverMAC(secret, nonce, ch.Nonce)) {
		return nil, localError(syscall.EACCES, nil, "rpc: %s: authentication failed: server did not prove the cluster secret", addr)
	}
	w.clientNonce, w.serverNonce = nonce, ch.Nonce
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, localError(syscall.EIO, err, "rpc: %s: %v", addr, err)
	}
	return &w, nil
}

// handshakeRefused turns the server's error reply during the handshake into
// an *Error that names addr.
func handshakeRefused(addr string, h header, body []byte) error {
	text := strings.TrimPrefix(errorText(body), "rpc: ")
	return &Error{Errno: syscall.Errno(h.status), Msg: fmt.Sprintf("rpc: %s: %s", addr, text)}
}

// readHandshakeFrame reads one small frame during the handshake.
func readHandshakeFrame(r io.Reader, addr string) (header, []byte, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, handshakeIOError(addr, err)
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		return header{}, nil, localError(syscall.EPROTO, err, "rpc: %s: handshake: %v (not a Strata server?)", addr, err)
	}
	if h.version != frameVersion || h.bodyLen > maxHandshakeBody || h.bulkLen != 0 {
		return header{}, nil, localError(syscall.EPROTO, nil, "rpc: %s: handshake: malformed frame (version %d, body %d, bulk %d)", addr, h.version, h.bodyLen, h.bulkLen)
	}
	body := make([]byte, h.bodyLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return header{}, nil, handshakeIOError(addr, err)
	}
	return h, body, nil
}

// handshakeIOError describes a connection that failed during the handshake.
func handshakeIOError(addr string, err error) error {
	if isTimeout(err) {
		return localError(syscall.ETIMEDOUT, err, "rpc: %s: handshake timed out", addr)
	}
	return localError(syscall.ECONNRESET, err, "rpc: %s: connection closed during handshake: %v", addr, err)
}
