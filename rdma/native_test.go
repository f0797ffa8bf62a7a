package rdma_test

import (
	"net"
	"testing"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/verbstest"
)

// TestNativeConformance runs the verbs suite over the cgo verbs and a real
// device, connecting the node to itself through the device's address. It
// skips, saying why, where there is no device or no cgo verbs.
func TestNativeConformance(t *testing.T) {
	if !rdma.NativeBuilt() {
		t.Skip("built without the rdma tag: the cgo verbs are not compiled in (go test -tags rdma)")
	}
	devs, err := rdma.Native().Devices()
	if err != nil {
		t.Fatalf("devices: %v", err)
	}
	if len(devs) == 0 {
		t.Skip("no RDMA device: ibv_devices lists none (ibv_get_device_list found no device, or the kernel has no RDMA support)")
	}
	ip := deviceIP(devs)
	if ip == nil {
		t.Skipf("RDMA devices %q, but no IP address on an interface bound to one: rdma_cm needs one", devs)
	}
	t.Logf("RDMA devices %q; testing through %v", devs, ip)
	verbstest.Run(t, func(t *testing.T) verbstest.Env {
		return verbstest.Env{
			Server:     rdma.Native(),
			Client:     rdma.Native(),
			ListenAddr: net.JoinHostPort(ip.String(), "0"),
			Config:     rdma.Config{GIDIndex: -1},
		}
	})
}

// deviceIP returns an IP address of an interface bound to one of devs.
func deviceIP(devs []string) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if _, ok := rdma.DeviceForIP(ipn.IP); ok {
			return ipn.IP
		}
	}
	return nil
}
