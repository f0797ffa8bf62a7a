package rdma

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

// DefaultQueueDepth is how many messages a connection has in flight each way
// unless Config.QueueDepth says otherwise.
const DefaultQueueDepth = 32

// Config selects the device, port and GID of RDMA connections and sizes
// their queue pairs. The zero value lets rdma_cm pick the device for each
// address; use ConfigFromEnv or set GIDIndex to -1 when filling one by hand
// with a Device but no GID choice.
type Config struct {
	// Device is the RDMA device connections must use (mlx5_0). Empty:
	// whichever rdma_cm resolves for the address. A connection resolved
	// onto another device fails.
	Device string
	// Port is the device port GIDIndex refers to; 0 means 1.
	Port int
	// GIDIndex, with Device set and not negative, selects the RoCE GID
	// table entry (/sys/class/infiniband/DEV/ports/PORT/gids/INDEX) whose
	// IP address connections bind to, and so the GID (and RoCE version)
	// they send from.
	GIDIndex int
	// SourceAddr is the local IP connections bind to; on RoCE it selects
	// the GID. It overrides GIDIndex.
	SourceAddr string
	// TOS is the IP type of service of RoCE packets (their traffic class);
	// 0 leaves the default.
	TOS int
	// QueueDepth is how many messages a connection has in flight each way:
	// queue pairs get a receive queue this deep and a send queue three
	// times as deep (a request's RDMA READ, a reply's WRITE and SEND). 0
	// means DefaultQueueDepth.
	QueueDepth int
	// MaxReads caps the RDMA READs a side has outstanding; 0 takes what
	// the device and the peer allow.
	MaxReads int
}

// ConfigFromEnv reads a Config from STRATA_RDMA_DEVICE, STRATA_RDMA_PORT,
// STRATA_RDMA_GID_INDEX, STRATA_RDMA_SOURCE, STRATA_RDMA_TOS,
// STRATA_RDMA_QUEUE_DEPTH and STRATA_RDMA_MAX_READS, so daemons that know
// nothing of RDMA can be pointed at a device.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Device:     os.Getenv("STRATA_RDMA_DEVICE"),
		SourceAddr: os.Getenv("STRATA_RDMA_SOURCE"),
		GIDIndex:   -1,
	}
	for _, v := range []struct {
		name string
		to   *int
	}{
		{"STRATA_RDMA_PORT", &cfg.Port},
		{"STRATA_RDMA_GID_INDEX", &cfg.GIDIndex},
		{"STRATA_RDMA_TOS", &cfg.TOS},
		{"STRATA_RDMA_QUEUE_DEPTH", &cfg.QueueDepth},
		{"STRATA_RDMA_MAX_READS", &cfg.MaxReads},
	} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return Config{}, fmt.Errorf("rdma: %s=%q: not a number", v.name, s)
		}
		*v.to = n
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the settings' ranges.
func (c Config) Validate() error {
	switch {
	case c.Port < 0 || c.Port > 255:
		return fmt.Errorf("rdma: port %d out of range", c.Port)
	case c.TOS < 0 || c.TOS > 255:
		return fmt.Errorf("rdma: type of service %d out of range", c.TOS)
	case c.QueueDepth < 0 || c.QueueDepth > 4096:
		return fmt.Errorf("rdma: queue depth %d out of range (1-4096)", c.QueueDepth)
	case c.MaxReads < 0:
		return fmt.Errorf("rdma: max reads %d is negative", c.MaxReads)
	case c.SourceAddr != "" && net.ParseIP(c.SourceAddr) == nil:
		return fmt.Errorf("rdma: source address %q is not an IP address", c.SourceAddr)
	}
	return nil
}

// Depth returns the queue depth to use.
func (c Config) Depth() int {
	if c.QueueDepth <= 0 {
		return DefaultQueueDepth
	}
	return c.QueueDepth
}

// Source returns the local IP connections bind to, or nil to let rdma_cm
// choose: SourceAddr, else the address of GID GIDIndex on Device's Port.
func (c Config) Source() (net.IP, error) {
	if c.SourceAddr != "" {
		ip := net.ParseIP(c.SourceAddr)
		if ip == nil {
			return nil, fmt.Errorf("rdma: source address %q is not an IP address", c.SourceAddr)
		}
		return ip, nil
	}
	if c.Device == "" || c.GIDIndex < 0 {
		return nil, nil
	}
	port := c.Port
	if port == 0 {
		port = 1
	}
	gid, err := ReadGID(c.Device, port, c.GIDIndex)
	if err != nil {
		return nil, err
	}
	if gid.IP == nil {
		return nil, fmt.Errorf("rdma: %s port %d GID %d (%s, %s) carries no IP address; set a source address instead",
			c.Device, port, c.GIDIndex, gid.GID, gid.Type)
	}
	return gid.IP, nil
}
