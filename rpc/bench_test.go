package rpc

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

const (
	opBenchWrite uint16 = 200
	opBenchRead  uint16 = 201
	opBenchSmall uint16 = 202
)

type benchReq struct {
	Off int64 `msgpack:"o"`
	Len int   `msgpack:"l"`
}

type benchResp struct {
	N int `msgpack:"n"`
}

// benchMeta is a metadata-sized message (about 100 bytes encoded), like a
// lookup request or an attribute reply.
type benchMeta struct {
	Parent uint64   `msgpack:"p"`
	Name   string   `msgpack:"n"`
	Uid    uint32   `msgpack:"u"`
	Gid    uint32   `msgpack:"g"`
	Groups []uint32 `msgpack:"G"`
	Times  [3]int64 `msgpack:"t"`
}

// benchServer serves a write op (bulk in, small reply) and a read op (small
// request, bulk out of a shared buffer), like an OSS.
func benchServer(b *testing.B) *Server {
	return startBenchServer(b, ServerConfig{Addr: "127.0.0.1:0"})
}

// startBenchServer starts benchServer's handlers under cfg; the secret and
// logger are filled in.
func startBenchServer(b *testing.B, cfg ServerConfig) *Server {
	cfg.Secret, cfg.Logger = testSecret, quietLogger()
	s := NewServer(cfg)
	data := pattern(1<<20, 1)
	s.Handle(opBenchWrite, func(_ context.Context, req *Request) (*Reply, error) {
		return &Reply{Body: &benchResp{N: len(req.Bulk)}}, nil
	})
	s.Handle(opBenchRead, func(_ context.Context, req *Request) (*Reply, error) {
		var r benchReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		return &Reply{Body: &benchResp{N: r.Len}, Bulk: data[:r.Len]}, nil
	})
	s.Handle(opBenchSmall, func(_ context.Context, req *Request) (*Reply, error) {
		r := new(benchMeta)
		if err := req.Decode(r); err != nil {
			return nil, err
		}
		return &Reply{Body: r}, nil
	})
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Stop)
	return s
}

func benchBulk(b *testing.B, op uint16, size int) {
	s := benchServer(b)
	c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger()})
	b.Cleanup(func() { _ = c.Close() })
	addr := s.Addr()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	// Many requests in flight, as a client striping over OSTs has.
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		out := pattern(size, 2)
		in := make([]byte, size)
		req := &benchReq{Len: size}
		var resp benchResp
		for pb.Next() {
			var err error
			if op == opBenchWrite {
				_, err = c.CallBulk(ctx, addr, op, req, out, &resp, nil)
			} else {
				_, err = c.CallBulk(ctx, addr, op, req, nil, &resp, in)
			}
			if err != nil || resp.N != size {
				b.Fatalf("call: %v (n=%d)", err, resp.N)
			}
		}
	})
}

// BenchmarkCallBulkWrite4K sends 4 KiB bulk requests from parallel callers
// over the default two connections.
func BenchmarkCallBulkWrite4K(b *testing.B) { benchBulk(b, opBenchWrite, 4<<10) }

// BenchmarkCallBulkWrite1M sends 1 MiB bulk requests from parallel callers.
func BenchmarkCallBulkWrite1M(b *testing.B) { benchBulk(b, opBenchWrite, 1<<20) }

// BenchmarkCallBulkRead4K receives 4 KiB bulk replies into caller buffers.
func BenchmarkCallBulkRead4K(b *testing.B) { benchBulk(b, opBenchRead, 4<<10) }

// BenchmarkCallBulkRead1M receives 1 MiB bulk replies into caller buffers.
func BenchmarkCallBulkRead1M(b *testing.B) { benchBulk(b, opBenchRead, 1<<20) }

// BenchmarkCallSerial4K is one caller doing 4 KiB write round trips, the
// latency of a single synchronous request.
func BenchmarkCallSerial4K(b *testing.B) {
	s := benchServer(b)
	c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger()})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	out := pattern(4<<10, 2)
	var resp benchResp
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CallBulk(ctx, s.Addr(), opBenchWrite, &benchReq{}, out, &resp, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallSerialSmall is one caller doing round trips with a ~100-byte
// body each way and no bulk: the latency of a metadata call.
func BenchmarkCallSerialSmall(b *testing.B) {
	s := benchServer(b)
	c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger()})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	addr := s.Addr()
	req := &benchMeta{Parent: 1, Name: strings.Repeat("f", 40), Uid: 1000, Gid: 1000,
		Groups: []uint32{4, 24, 27}, Times: [3]int64{1 << 60, 1 << 60, 1 << 60}}
	var resp benchMeta
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Call(ctx, addr, opBenchSmall, req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetConnEcho is the floor the serial benchmarks compare with: a
// 128-byte request and reply over a plain loopback net.Conn, echoed by a
// goroutine on the server side.
func BenchmarkNetConnEcho(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		buf := make([]byte, 128)
		for {
			if _, err := io.ReadFull(nc, buf); err != nil {
				return
			}
			if _, err := nc.Write(buf); err != nil {
				return
			}
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = nc.Close() })
	buf := make([]byte, 128)
	for b.Loop() {
		if _, err := nc.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			b.Fatal(err)
		}
	}
}
