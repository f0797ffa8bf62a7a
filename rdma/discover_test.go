package rdma

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Mellanox/rdmamap"
)

// withSysfs points discovery at the sysfs tree under testdata for one test:
// one RoCE device, mlx5_0, with an active Ethernet port 1 (a link-local GID
// 0, a RoCE v2 GID 2 for 192.168.1.5, an unset GID 5) and a down
// InfiniBand port 2.
func withSysfs(t *testing.T) {
	old := rdmamap.RdmaClassDir
	rdmamap.RdmaClassDir = filepath.Join("testdata", "sysfs", "class", "infiniband")
	t.Cleanup(func() { rdmamap.RdmaClassDir = old })
}

func TestDiscover(t *testing.T) {
	withSysfs(t)
	devs, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Name != "mlx5_0" || len(devs[0].Ports) != 2 {
		t.Fatalf("Discover() = %+v", devs)
	}
	p1, p2 := devs[0].Ports[0], devs[0].Ports[1]
	if p1.Num != 1 || !p1.Active() || p1.PhysState != "LinkUp" || p1.LinkLayer != "Ethernet" ||
		p1.Rate != "100 Gb/sec (4X EDR)" || len(p1.Netdevs) != 1 || p1.Netdevs[0] != "eth2" {
		t.Errorf("port 1 = %+v", p1)
	}
	if p2.Num != 2 || p2.Active() || p2.State != "DOWN" || p2.LinkLayer != "InfiniBand" || len(p2.Netdevs) != 0 {
		t.Errorf("port 2 = %+v", p2)
	}
}

func TestReadGID(t *testing.T) {
	withSysfs(t)
	for _, tc := range []struct {
		port, index int
		ip, typ     string // ip "" means none
		err         string
	}{
		{1, 2, "192.168.1.5", "RoCE v2", ""},
		{1, 0, "", "IB/RoCE v1", ""},
		{1, 5, "", "", "is not set"},
		{1, 7, "", "", "has no GID 7"},
		{2, 0, "", "", ""},
	} {
		e, err := ReadGID("mlx5_0", tc.port, tc.index)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("port %d GID %d: err %v, want %q", tc.port, tc.index, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("port %d GID %d: %v", tc.port, tc.index, err)
			continue
		}
		if (tc.ip == "") != (e.IP == nil) || (e.IP != nil && !e.IP.Equal(net.ParseIP(tc.ip))) || e.Type != tc.typ {
			t.Errorf("port %d GID %d = %+v, want ip %q type %q", tc.port, tc.index, e, tc.ip, tc.typ)
		}
	}
}

func TestConfigSource(t *testing.T) {
	withSysfs(t)
	for _, tc := range []struct {
		cfg  Config
		want string // "" means none
		err  string
	}{
		{Config{}, "", ""},
		{Config{Device: "mlx5_0", GIDIndex: -1}, "", ""},
		{Config{Device: "mlx5_0", GIDIndex: 2}, "192.168.1.5", ""},
		{Config{Device: "mlx5_0", Port: 1, GIDIndex: 0}, "", "carries no IP address"},
		{Config{Device: "mlx5_0", GIDIndex: 2, SourceAddr: "10.1.1.1"}, "10.1.1.1", ""},
		{Config{SourceAddr: "not-an-ip"}, "", "not an IP address"},
	} {
		ip, err := tc.cfg.Source()
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case (tc.want == "") != (ip == nil) || (ip != nil && !ip.Equal(net.ParseIP(tc.want))):
			t.Errorf("%+v: source %v, want %q", tc.cfg, ip, tc.want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("STRATA_RDMA_DEVICE", "mlx5_1")
	t.Setenv("STRATA_RDMA_GID_INDEX", "3")
	t.Setenv("STRATA_RDMA_QUEUE_DEPTH", "64")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device != "mlx5_1" || cfg.GIDIndex != 3 || cfg.Depth() != 64 || cfg.Port != 0 {
		t.Fatalf("ConfigFromEnv() = %+v", cfg)
	}
	t.Setenv("STRATA_RDMA_GID_INDEX", "")
	if cfg, _ := ConfigFromEnv(); cfg.GIDIndex != -1 {
		t.Fatalf("unset GID index read as %d, want -1", cfg.GIDIndex)
	}
	t.Setenv("STRATA_RDMA_TOS", "x")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "STRATA_RDMA_TOS") {
		t.Fatalf("bad TOS: %v", err)
	}
	t.Setenv("STRATA_RDMA_TOS", "")
	t.Setenv("STRATA_RDMA_QUEUE_DEPTH", "100000")
	if _, err := ConfigFromEnv(); err == nil {
		t.Fatal("queue depth 100000 accepted")
	}
}
