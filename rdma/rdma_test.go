package rdma

import (
	"net"
	"testing"
)

// This kernel has no RDMA, so these tests pin the no-device path: it must
// answer "none" without error or panic. On a host with RDMA devices they
// still hold, since loopback is never bound to one.

func TestDevicesNoPanic(t *testing.T) {
	devs := Devices()
	t.Logf("RDMA devices: %q", devs)
	for _, d := range devs {
		if d == "" {
			t.Errorf("Devices() = %q: empty name", devs)
		}
	}
}

func TestDeviceForIPLoopback(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		if dev, ok := DeviceForIP(ip); ok || dev != "" {
			t.Errorf("DeviceForIP(%v) = %q, %v; want \"\", false", ip, dev, ok)
		}
	}
}

func TestDeviceForIPUnowned(t *testing.T) {
	for _, ip := range []net.IP{nil, net.IPv4(203, 0, 113, 254), net.ParseIP("2001:db8::1")} {
		if dev, ok := DeviceForIP(ip); ok || dev != "" {
			t.Errorf("DeviceForIP(%v) = %q, %v; want \"\", false", ip, dev, ok)
		}
	}
}

func TestDeviceForIPLocalAddresses(t *testing.T) {
	// Every local address goes through the lookup; with no RDMA device
	// none may resolve.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	noDevices := len(Devices()) == 0
	for _, a := range addrs {
		ipn, isNet := a.(*net.IPNet)
		if !isNet {
			continue
		}
		dev, ok := DeviceForIP(ipn.IP)
		t.Logf("%v: %q %v", ipn.IP, dev, ok)
		if noDevices && ok {
			t.Errorf("DeviceForIP(%v) = %q with no RDMA devices on the node", ipn.IP, dev)
		}
	}
}
