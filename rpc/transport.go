package rpc

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/rdma"
)

// Transports. Every connection starts on TCP and authenticates there; with
// RDMA its requests and replies then travel as RDMA SEND/RECV messages and
// bulk data moves one-sided (see rdma_proto.go), while the TCP connection
// stays open as the session's lifeline and for the frames too large for an
// RDMA message.
const (
	// TransportAuto uses RDMA where both sides have a device and the
	// client reaches the server's rdma_cm address, TCP otherwise.
	TransportAuto = "auto"
	// TransportTCP never uses RDMA.
	TransportTCP = "tcp"
	// TransportRDMA requires RDMA: a server without a device does not
	// start, and a client does not connect without it.
	TransportRDMA = "rdma"
)

// TransportEnv is the environment variable that picks the transport when a
// config leaves it empty.
const TransportEnv = "STRATA_TRANSPORT"

const (
	// defaultRDMADialTimeout bounds a client's attempt to connect over
	// RDMA, so that auto falls back to TCP quickly where RDMA is offered
	// but does not work.
	defaultRDMADialTimeout = 2 * time.Second
	// rdmaRetryAfter is how long auto sticks to TCP for an address after
	// an RDMA attempt to it failed.
	rdmaRetryAfter = time.Minute
	// rdmaDrainTimeout bounds the wait for a broken queue pair to flush;
	// past it the queue pair is destroyed regardless.
	rdmaDrainTimeout = 5 * time.Second
)

// resolveTransport returns the transport a config asks for: want, or the
// environment's, or auto.
func resolveTransport(want string) (string, error) {
	if want == "" {
		want = os.Getenv(TransportEnv)
	}
	switch t := strings.ToLower(strings.TrimSpace(want)); t {
	case "", TransportAuto:
		return TransportAuto, nil
	case TransportTCP, TransportRDMA:
		return t, nil
	}
	return "", fmt.Errorf("rpc: transport %q: want auto, tcp or rdma", want)
}

// resolveRDMA returns the verbs and RDMA settings a config asks for: the
// given ones, or the binary's own verbs and the environment's settings.
func resolveRDMA(verbs rdma.Verbs, cfg rdma.Config) (rdma.Verbs, rdma.Config, error) {
	if verbs == nil {
		verbs = rdma.Native()
	}
	if cfg == (rdma.Config{}) {
		env, err := rdma.ConfigFromEnv()
		if err != nil {
			return verbs, cfg, err
		}
		cfg = env
	}
	return verbs, cfg, cfg.Validate()
}

// ClientStats is a snapshot of a client's counters.
type ClientStats struct {
	TCPConns      int64  // open connections whose calls travel over TCP
	RDMAConns     int64  // open connections whose calls travel over RDMA
	TCPCalls      uint64 // calls sent over TCP since NewClient
	RDMACalls     uint64 // calls sent over RDMA since NewClient
	RDMAFallbacks uint64 // connections that tried RDMA, failed, and use TCP
	RDMAMemory    int64  // bytes of memory registered for RDMA now
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() ClientStats {
	st := ClientStats{
		TCPCalls:      c.tcpCalls.Load(),
		RDMACalls:     c.rdmaCalls.Load(),
		RDMAFallbacks: c.rdmaFallbacks.Load(),
	}
	for _, cc := range c.liveConns() {
		if cc.rd != nil {
			st.RDMAConns++
		} else {
			st.TCPConns++
		}
	}
	c.rdmaMu.Lock()
	for _, p := range c.rdmaPools {
		st.RDMAMemory += p.Stats().Registered
	}
	c.rdmaMu.Unlock()
	return st
}

// Transport returns the transport of the client's connections to addr:
// "rdma" if one of them moves its calls over RDMA, "tcp" if they all use
// TCP, and "" while the client holds no connection to addr.
func (c *Client) Transport(addr string) string {
	c.mu.Lock()
	p := c.pools[addr]
	c.mu.Unlock()
	if p == nil {
		return ""
	}
	t := ""
	for _, s := range p.slots {
		s.mu.Lock()
		cc := s.cc
		s.mu.Unlock()
		if cc == nil || !cc.healthy() {
			continue
		}
		if cc.rd != nil {
			return TransportRDMA
		}
		t = TransportTCP
	}
	return t
}

// RDMAInfo describes the RDMA connection the client holds to addr (device,
// port, GID), and reports false when it holds none.
func (c *Client) RDMAInfo(addr string) (rdma.Info, bool) {
	c.mu.Lock()
	p := c.pools[addr]
	c.mu.Unlock()
	if p == nil {
		return rdma.Info{}, false
	}
	for _, s := range p.slots {
		s.mu.Lock()
		cc := s.cc
		s.mu.Unlock()
		if cc != nil && cc.healthy() && cc.rd != nil {
			return cc.rd.qp.Info(), true
		}
	}
	return rdma.Info{}, false
}

// rdmaPool returns the client's pool of registered buffers on dom.
func (c *Client) rdmaPool(dom rdma.Domain) *rdma.Pool {
	c.rdmaMu.Lock()
	defer c.rdmaMu.Unlock()
	p := c.rdmaPools[dom]
	if p == nil {
		// Servers RDMA-read a request's bulk from these buffers and
		// RDMA-write a reply's bulk into them.
		p = rdma.NewPool(dom, rdma.AccessRemoteRead|rdma.AccessRemoteWrite, 0)
		c.rdmaPools[dom] = p
	}
	return p
}

// rdmaDevices reports whether this node has an RDMA device, asking the
// verbs once.
func (c *Client) rdmaDevices() bool {
	c.rdmaOnce.Do(func() {
		devs, err := c.verbs.Devices()
		if err != nil {
			c.log.Warn("rpc: listing RDMA devices failed; using TCP", "err", err)
		}
		c.hasRDMA = len(devs) > 0
	})
	return c.hasRDMA
}

// rdmaBackoff reports whether an RDMA attempt to addr failed recently
// enough that auto should not try again yet.
func (c *Client) rdmaBackoff(addr string) bool {
	c.rdmaMu.Lock()
	defer c.rdmaMu.Unlock()
	until, ok := c.rdmaFailed[addr]
	if ok && time.Now().After(until) {
		delete(c.rdmaFailed, addr)
		return false
	}
	return ok
}

// upgrade moves a freshly authenticated connection to RDMA when the
// transport and the server's offer allow it. Under auto a failure leaves
// the connection on TCP; under rdma it is the dial's error.
func (c *Client) upgrade(cc *clientConn, w *welcomeMsg) error {
	if c.transport == TransportTCP {
		return nil
	}
	forced := c.transport == TransportRDMA
	switch {
	case w.RDMA == "":
		if forced {
			return localError(syscall.EPROTONOSUPPORT, nil, "rpc: %s: server offers no RDMA transport (transport rdma)", cc.addr)
		}
		return nil
	case !c.rdmaDevices():
		if forced {
			return localError(syscall.EPROTONOSUPPORT, rdma.ErrNoDevice, "rpc: %s: this node has no RDMA device (transport rdma)", cc.addr)
		}
		return nil
	case !forced && c.rdmaBackoff(cc.addr):
		return nil
	}
	if err := c.dialRDMA(cc, w); err != nil {
		c.rdmaFallbacks.Add(1)
		if forced {
			return err
		}
		c.log.Info("rpc: RDMA unavailable, using TCP", "addr", cc.addr, "rdma", w.RDMA, "err", err)
		c.rdmaMu.Lock()
		c.rdmaFailed[cc.addr] = time.Now().Add(rdmaRetryAfter)
		c.rdmaMu.Unlock()
	}
	return nil
}
