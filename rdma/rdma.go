// Package rdma is Strata's RDMA layer: device discovery and a narrow verbs
// interface that the rpc package moves messages and bulk data over.
//
// Discovery (Devices, DeviceForIP, Discover, ReadGID) goes through sysfs and
// netlink (rdmamap): which RDMA devices exist, their ports and link state,
// which device is bound to the interface owning an IP address, and which IP
// a RoCE GID stands for. Without a device, or on a kernel without RDMA
// support, every function reports that none exists rather than failing.
//
// The verbs interface (Verbs, QueuePair, Domain, Region; see verbs.go) is
// implemented over libibverbs and librdmacm by Native, compiled with the
// build tag rdma (and cgo); without the tag Native reports no devices and
// callers use TCP. Package rdma/fake implements the same interface in
// process, adversarially, for tests, and package rdma/verbstest checks both
// against one suite. Pool keeps registered buffers for reuse.
//
// It is not an RPC layer: message framing, buffer lifetimes across requests
// and the fallback to TCP are the rpc package's.
package rdma

import (
	"net"

	"github.com/Mellanox/rdmamap"
)

// Devices returns the names of the RDMA devices on this node (mlx5_0, ...),
// or nil when there are none or the kernel has no RDMA support.
func Devices() []string {
	return rdmamap.GetRdmaDeviceList()
}

// DeviceForIP returns the RDMA device bound to the network interface that
// owns ip, and whether there is one. Any failure to enumerate interfaces or
// to resolve a device counts as no device.
func DeviceForIP(ip net.IP) (device string, ok bool) {
	if ip == nil {
		return "", false
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", false
	}
	for _, ifc := range ifaces {
		if !ownsIP(ifc, ip) {
			continue
		}
		dev, err := rdmamap.GetRdmaDeviceForNetdevice(ifc.Name)
		if err == nil && dev != "" {
			return dev, true
		}
	}
	return "", false
}

// ownsIP reports whether ip is one of the interface's addresses.
func ownsIP(ifc net.Interface, ip net.IP) bool {
	addrs, err := ifc.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		var have net.IP
		switch a := a.(type) {
		case *net.IPNet:
			have = a.IP
		case *net.IPAddr:
			have = a.IP
		}
		if have.Equal(ip) {
			return true
		}
	}
	return false
}
