package rdma

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/Mellanox/rdmamap"
)

// Device is an RDMA device and its ports as sysfs shows them.
type Device struct {
	Name  string `json:"name"`
	Ports []Port `json:"ports"`
}

// Port is one port of an RDMA device.
type Port struct {
	Num       int      `json:"port"`
	State     string   `json:"state"`      // ACTIVE, DOWN, INIT, ...
	PhysState string   `json:"phys_state"` // LinkUp, Disabled, Polling, ...
	LinkLayer string   `json:"link_layer"` // InfiniBand or Ethernet (RoCE)
	Rate      string   `json:"rate"`       // "100 Gb/sec (4X EDR)"
	Netdevs   []string `json:"netdevs"`    // network interfaces bound to the port's GIDs (RoCE)
}

// Active reports whether the port can carry traffic.
func (p Port) Active() bool { return p.State == "ACTIVE" }

// GIDEntry is one entry of a port's GID table.
type GIDEntry struct {
	Index  int
	GID    string // as sysfs writes it
	Type   string // "RoCE v2", "IB/RoCE v1"
	Netdev string // the interface the entry belongs to (RoCE)
	IP     net.IP // the address a RoCE GID encodes; nil for others
}

// Discover lists the node's RDMA devices with their ports, from sysfs. A
// node without RDMA support has none, which is not an error.
func Discover() ([]Device, error) {
	var devs []Device
	for _, name := range Devices() {
		d := Device{Name: name}
		for _, p := range rdmamap.GetPorts(name) {
			num, err := strconv.Atoi(p)
			if err != nil {
				continue
			}
			d.Ports = append(d.Ports, readPort(name, num))
		}
		slices.SortFunc(d.Ports, func(a, b Port) int { return a.Num - b.Num })
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.Name, b.Name) })
	return devs, nil
}

// portDir is the sysfs directory of a device's port.
func portDir(dev string, port int) string {
	return filepath.Join(rdmamap.RdmaClassDir, dev, rdmamap.RdmaPortsdir, strconv.Itoa(port))
}

// readPort reads one port's attributes; a missing attribute stays empty.
func readPort(dev string, num int) Port {
	dir := portDir(dev, num)
	p := Port{
		Num:       num,
		State:     afterColon(readAttr(filepath.Join(dir, "state"))),
		PhysState: afterColon(readAttr(filepath.Join(dir, "phys_state"))),
		LinkLayer: readAttr(filepath.Join(dir, "link_layer")),
		Rate:      readAttr(filepath.Join(dir, "rate")),
	}
	ndevs, _ := os.ReadDir(filepath.Join(dir, rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir))
	for _, e := range ndevs {
		if n := readAttr(filepath.Join(dir, rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir, e.Name())); n != "" && !slices.Contains(p.Netdevs, n) {
			p.Netdevs = append(p.Netdevs, n)
		}
	}
	slices.Sort(p.Netdevs)
	return p
}

// ReadGID reads entry index of a port's GID table.
func ReadGID(dev string, port, index int) (GIDEntry, error) {
	dir := portDir(dev, port)
	idx := strconv.Itoa(index)
	raw, err := os.ReadFile(filepath.Join(dir, "gids", idx))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return GIDEntry{}, fmt.Errorf("rdma: %s port %d has no GID %d", dev, port, index)
		}
		return GIDEntry{}, fmt.Errorf("rdma: read %s port %d GID %d: %w", dev, port, index, err)
	}
	e := GIDEntry{
		Index:  index,
		GID:    strings.TrimSpace(string(raw)),
		Type:   readAttr(filepath.Join(dir, rdmamap.RdmaGidAttrDir, "types", idx)),
		Netdev: readAttr(filepath.Join(dir, rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir, idx)),
	}
	if ip := parseGID(e.GID); ip != nil && isZeroGID(ip) {
		return GIDEntry{}, fmt.Errorf("rdma: %s port %d GID %d is not set", dev, port, index)
	} else if ip != nil && e.Netdev != "" && !ip.IsLinkLocalUnicast() {
		// A RoCE GID is the interface's IP address (IPv4 mapped into
		// IPv6); an InfiniBand or link-local one is not routable.
		e.IP = ip
		if v4 := ip.To4(); v4 != nil {
			e.IP = v4
		}
	}
	return e, nil
}

// parseGID parses sysfs's colon-separated hex GID.
func parseGID(s string) net.IP {
	hex := strings.ReplaceAll(s, ":", "")
	if len(hex) != 32 {
		return nil
	}
	ip := make(net.IP, 16)
	for i := range ip {
		b, err := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil
		}
		ip[i] = byte(b)
	}
	return ip
}

// isZeroGID reports whether a GID entry is unused.
func isZeroGID(ip net.IP) bool { return ip.Equal(net.IPv6zero) }

// readAttr returns a sysfs attribute's value, or "" if it cannot be read.
func readAttr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// afterColon turns sysfs's "4: ACTIVE" into "ACTIVE".
func afterColon(s string) string {
	if _, v, ok := strings.Cut(s, ":"); ok {
		return strings.TrimSpace(v)
	}
	return s
}
