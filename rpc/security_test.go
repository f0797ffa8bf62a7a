package rpc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawConn dials addr without the rpc client, for tests that misbehave.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	return nc
}

// readFrame reads one frame (header and body; bulk is skipped).
func readFrame(r io.Reader) (header, []byte, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, err
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		return header{}, nil, err
	}
	body := make([]byte, h.bodyLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return header{}, nil, err
	}
	_, err = io.CopyN(io.Discard, r, int64(h.bulkLen))
	return h, body, err
}

// rawFrame encodes a request frame with a msgpack body.
func rawFrame(t *testing.T, op uint16, id uint64, body any) []byte {
	t.Helper()
	f, err := encodeFrame(header{op: op, id: id}, body)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(f.Bytes())
}

// expectClosed reads from nc until the server closes it, failing if that
// takes longer than the connection's deadline. Frames read on the way are
// returned.
func expectClosed(t *testing.T, nc net.Conn) []header {
	t.Helper()
	var got []header
	for {
		h, _, err := readFrame(nc)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("server did not close the connection")
			}
			return got
		}
		got = append(got, h)
	}
}

// checkServing proves the server still answers a well-behaved client.
func checkServing(t *testing.T, s *Server) {
	t.Helper()
	c := newTestClient(t, ClientConfig{})
	var resp echoResp
	if err := c.Call(context.Background(), s.Addr(), opEcho, &echoReq{Text: "ok"}, &resp); err != nil || resp.Text != "ok" {
		t.Fatalf("server stopped serving: %v", err)
	}
}

func TestWrongSecretRefused(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	c := newTestClient(t, ClientConfig{Secret: []byte("not the secret")})
	err := c.Call(context.Background(), s.Addr(), opEcho, &echoReq{}, nil)
	if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("err = %v, want EACCES", err)
	}
	want := "rpc: " + s.Addr() + ": authentication failed: wrong cluster secret"
	if err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if s.Stats().Requests != 0 {
		t.Fatalf("a request was served without authentication")
	}

	none := newTestClient(t, ClientConfig{Secret: []byte{}})
	if err := none.Ping(context.Background(), s.Addr()); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("client without secret: %v, want EACCES", err)
	}
}

func TestImpostorServerRefused(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: []byte("impostor"), Logger: quietLogger()})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	// The client proves its secret first; a server that does not know it
	// refuses, and the client reports the refusal.
	c := newTestClient(t, ClientConfig{})
	if err := c.Ping(context.Background(), s.Addr()); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("err = %v, want EACCES", err)
	}

	// A fake server that accepts any client MAC is caught by the client.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_, _ = nc.Write(rawFrame(t, OpHello, 0, &challengeMsg{Nonce: newNonce()}))
		h, _, err := readFrame(nc)
		if err != nil {
			return
		}
		f, _ := encodeFrame(header{flags: flagReply, op: OpHello, id: h.id}, &welcomeMsg{MAC: make([]byte, 32)})
		_, _ = nc.Write(f.Bytes())
		_, _ = io.Copy(io.Discard, nc)
	}()
	err = c.Ping(context.Background(), ln.Addr().String())
	if !errors.Is(err, syscall.EACCES) || !strings.Contains(err.Error(), "server did not prove the cluster secret") {
		t.Fatalf("err = %v, want EACCES from the server proof check", err)
	}
}

func TestUnauthenticatedRequestRefused(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	nc := rawConn(t, s.Addr())
	h, _, err := readFrame(nc)
	if err != nil || h.op != OpHello || h.isReply() {
		t.Fatalf("challenge: %+v %v", h, err)
	}
	if _, err := nc.Write(rawFrame(t, opEcho, 7, &echoReq{Text: "sneaky"})); err != nil {
		t.Fatal(err)
	}
	got := expectClosed(t, nc)
	if len(got) != 1 || got[0].id != 7 || syscall.Errno(got[0].status) != syscall.EACCES {
		t.Fatalf("replies = %+v, want one EACCES for id 7", got)
	}
	// A ping is a request like any other before authentication.
	nc = rawConn(t, s.Addr())
	_, _ = nc.Write(rawFrame(t, OpPing, 1, nil))
	expectClosed(t, nc)
	if s.Stats().Requests != 0 {
		t.Fatalf("a request was served without authentication")
	}
	checkServing(t, s)
}

func TestAuthDeadline(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
	s.authTimeout, s.tick = 200*time.Millisecond, 50*time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	nc := rawConn(t, s.Addr())
	start := time.Now()
	got := expectClosed(t, nc)
	if len(got) != 1 || got[0].op != OpHello {
		t.Fatalf("frames = %+v, want only the challenge", got)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v, before the deadline", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := NewServer(ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
	s.idleTimeout, s.tick = 200*time.Millisecond, 50*time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c := newTestClient(t, ClientConfig{ConnsPerAddr: 1})
	if err := c.Ping(context.Background(), s.Addr()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connection not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The client notices and redials.
	time.Sleep(50 * time.Millisecond)
	if err := c.Ping(context.Background(), s.Addr()); err != nil {
		t.Fatalf("ping after idle close: %v", err)
	}
}

// authedRawConn returns a raw connection that has passed the handshake.
func authedRawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc := rawConn(t, addr)
	if _, err := clientHandshake(nc, addr, testSecret, time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	return nc
}

func TestMalformedFrames(t *testing.T) {
	s := newTestServer(t, "127.0.0.1:0")
	good := rawFrame(t, opEcho, 9, &echoReq{Text: "x"})
	withHeader := func(edit func(b []byte)) []byte {
		b := bytes.Clone(good)
		edit(b)
		return b
	}
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)

	cases := []struct {
		name   string
		frame  []byte
		status syscall.Errno // expected error reply for id 9 before the close; 0: none
	}{
		{"bad magic", withHeader(func(b []byte) { b[0] = 'X' }), 0},
		{"bad version", withHeader(func(b []byte) { b[4] = 9 }), syscall.EPROTO},
		{"huge body", withHeader(func(b []byte) { binary.BigEndian.PutUint32(b[20:], 0xffffffff) }), syscall.EMSGSIZE},
		{"huge bulk", withHeader(func(b []byte) { binary.BigEndian.PutUint32(b[24:], 1<<30) }), syscall.EMSGSIZE},
		{"reply flag", withHeader(func(b []byte) { b[5] = flagReply }), syscall.EPROTO},
		{"garbage", garbage, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, authed := range []bool{false, true} {
				var nc net.Conn
				if authed {
					nc = authedRawConn(t, s.Addr())
				} else {
					nc = rawConn(t, s.Addr())
					if _, _, err := readFrame(nc); err != nil {
						t.Fatalf("challenge: %v", err)
					}
				}
				_, _ = nc.Write(tc.frame)
				got := expectClosed(t, nc)
				switch {
				case tc.status == 0 && len(got) != 0:
					t.Errorf("authed=%v: replies %+v, want none", authed, got)
				case tc.status != 0 && (len(got) != 1 || got[0].id != 9):
					t.Errorf("authed=%v: replies %+v, want one for id 9", authed, got)
				case tc.status != 0 && authed && syscall.Errno(got[0].status) != tc.status:
					t.Errorf("authed=%v: status %v, want %v", authed, syscall.Errno(got[0].status), tc.status)
				}
			}
			checkServing(t, s)
		})
	}

	t.Run("truncated", func(t *testing.T) {
		nc := authedRawConn(t, s.Addr())
		_, _ = nc.Write(good[:10])
		_ = nc.Close()
		nc = authedRawConn(t, s.Addr())
		_, _ = nc.Write(good[:len(good)-1])
		_ = nc.Close()
		checkServing(t, s)
	})

	t.Run("pipelined", func(t *testing.T) {
		// Several frames in one write, and one frame split across writes.
		nc := authedRawConn(t, s.Addr())
		batch := append(rawFrame(t, opEcho, 1, &echoReq{Text: "a"}), rawFrame(t, OpPing, 2, nil)...)
		batch = append(batch, rawFrame(t, 999, 3, nil)...)
		_, _ = nc.Write(batch)
		split := rawFrame(t, opEcho, 4, &echoReq{Text: "b"})
		_, _ = nc.Write(split[:5])
		time.Sleep(20 * time.Millisecond)
		_, _ = nc.Write(split[5:])
		status := map[uint64]syscall.Errno{}
		for range 4 {
			h, _, err := readFrame(nc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			status[h.id] = syscall.Errno(h.status)
		}
		if status[1] != 0 || status[2] != 0 || status[3] != syscall.ENOSYS || status[4] != 0 {
			t.Fatalf("statuses = %v", status)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	var seed [headerSize]byte
	(&header{flags: flagReply, op: 200, id: 42, status: 2, bodyLen: 10, bulkLen: 4096}).encode(seed[:])
	f.Add(seed[:])
	f.Add([]byte("STRA"))
	f.Add(bytes.Repeat([]byte{0xff}, headerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		if ferr := h.check(DefaultMaxBulk); ferr != nil {
			if ferr.Errno == 0 || ferr.Msg == "" {
				t.Fatalf("check error without errno or text: %+v", ferr)
			}
			return
		}
		if h.frameLen() > headerSize+MaxBody+DefaultMaxBulk {
			t.Fatalf("accepted frame of %d bytes", h.frameLen())
		}
		// A valid header survives an encode/decode round trip.
		var out [headerSize]byte
		h.encode(out[:])
		h2, err := decodeHeader(out[:])
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v -> %+v (%v)", h, h2, err)
		}
	})
}
