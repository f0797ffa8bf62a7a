package rpc

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
)

// benchTransport is one transport BenchmarkTransport measures.
type benchTransport struct {
	name   string
	listen string // the server's TCP address; "" for one on an RDMA device
	// setup returns the server's and the client's verbs and the transport
	// to force, or skips.
	setup func(b *testing.B) (server, client rdma.Verbs, transport string)
}

// transportsToBench returns tcp, rdma-fake (the in-process fake: the cost
// of the protocol above verbs, no network) and rdma-verbs (the cgo verbs
// over the node's first RDMA device, looping back through it; skipped
// without a device or without the rdma build tag).
func transportsToBench() []benchTransport {
	return []benchTransport{
		{
			name:   "tcp",
			listen: "127.0.0.1:0",
			setup: func(*testing.B) (rdma.Verbs, rdma.Verbs, string) {
				return rdma.None(), rdma.None(), TransportTCP
			},
		},
		{
			name:   "rdma-fake",
			listen: "127.0.0.1:0",
			setup: func(b *testing.B) (rdma.Verbs, rdma.Verbs, string) {
				f := fake.New(fake.Options{Seed: 1})
				b.Cleanup(f.Close)
				return f.Node("server"), f.Node("client"), TransportRDMA
			},
		},
		{
			name: "rdma-verbs",
			setup: func(b *testing.B) (rdma.Verbs, rdma.Verbs, string) {
				if !rdma.NativeBuilt() {
					b.Skip("built without the rdma tag (go test -tags rdma)")
				}
				if devs, _ := rdma.Native().Devices(); len(devs) == 0 {
					b.Skip("no RDMA device")
				}
				return rdma.Native(), rdma.Native(), TransportRDMA
			},
		},
	}
}

// rdmaDeviceAddr returns "ip:0" for an IP bound to an RDMA device, or "".
func rdmaDeviceAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			if _, ok := rdma.DeviceForIP(ipn.IP); ok {
				return net.JoinHostPort(ipn.IP.String(), "0")
			}
		}
	}
	return ""
}

// BenchmarkTransport measures each transport with 4 KiB, 64 KiB and 1 MiB
// writes (bulk in the request) and reads (bulk in the reply): "lat" is one
// caller's round trip (ns/op, µs/call), "bw" eight callers' throughput
// (MB/s), as a client striping over OSTs keeps several in flight.
func BenchmarkTransport(b *testing.B) {
	for _, tr := range transportsToBench() {
		b.Run(tr.name, func(b *testing.B) {
			serverVerbs, clientVerbs, transport := tr.setup(b)
			listen := tr.listen
			if listen == "" {
				if listen = rdmaDeviceAddr(); listen == "" {
					b.Skip("no IP address on an interface bound to an RDMA device")
				}
			}
			s := startBenchServer(b, ServerConfig{Addr: listen, Transport: transport, Verbs: serverVerbs, RDMA: noGID})
			c := NewClient(ClientConfig{Secret: testSecret, Logger: quietLogger(), Transport: transport, Verbs: clientVerbs, RDMA: noGID})
			b.Cleanup(func() { _ = c.Close() })
			if err := c.Ping(context.Background(), s.Addr()); err != nil {
				b.Fatal(err)
			}
			if got := c.Transport(s.Addr()); got != transport {
				b.Fatalf("client uses %q, want %q", got, transport)
			}
			for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
				for _, op := range []uint16{opBenchWrite, opBenchRead} {
					dir := map[uint16]string{opBenchWrite: "write", opBenchRead: "read"}[op]
					name := fmt.Sprintf("%s/%s", dir, sizeName(size))
					b.Run(name+"/lat", func(b *testing.B) { benchLatency(b, c, s.Addr(), op, size) })
					b.Run(name+"/bw", func(b *testing.B) { benchBandwidth(b, c, s.Addr(), op, size) })
				}
			}
		})
	}
}

// sizeName writes a transfer size in KiB or MiB.
func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// benchCall makes one call moving size bytes in the direction of op.
func benchCall(c *Client, addr string, op uint16, size int, out, in []byte, resp *benchResp) error {
	req := &benchReq{Len: size}
	var err error
	if op == opBenchWrite {
		_, err = c.CallBulk(context.Background(), addr, op, req, out[:size], resp, nil)
	} else {
		_, err = c.CallBulk(context.Background(), addr, op, req, nil, resp, in[:size])
	}
	if err == nil && resp.N != size {
		err = fmt.Errorf("moved %d bytes, want %d", resp.N, size)
	}
	return err
}

// benchLatency makes calls one after the other.
func benchLatency(b *testing.B, c *Client, addr string, op uint16, size int) {
	out, in := pattern(size, 2), make([]byte, size)
	var resp benchResp
	b.SetBytes(int64(size))
	start := time.Now()
	for b.Loop() {
		if err := benchCall(c, addr, op, size, out, in, &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/call")
}

// benchBandwidth makes calls from eight callers at once.
func benchBandwidth(b *testing.B, c *Client, addr string, op uint16, size int) {
	b.SetBytes(int64(size))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		out, in := pattern(size, 2), make([]byte, size)
		var resp benchResp
		for pb.Next() {
			if err := benchCall(c, addr, op, size, out, in, &resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
