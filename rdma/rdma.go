// Package rdma finds the RDMA devices a node could move bulk data over.
//
// For now it does discovery only, through sysfs and netlink (rdmamap): which
// RDMA devices exist, and which one is bound to the network interface that
// owns a given IP address, so a client and server can tell whether an RDMA
// path between them is possible. The verbs data path (one-sided reads and
// writes of registered buffers, over libibverbs and librdmacm via cgo) comes
// later behind the build tag rdma. Without a device, or on a kernel without
// RDMA support, every function here reports that none exists rather than
// failing, and callers use TCP.
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
