package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stratafs/strata/rpc"
)

// TestOSSIdleConnections: an OSS holding 10,000 idle, authenticated client
// connections stays under 200 MiB resident (issue 9's memory target).
func TestOSSIdleConnections(t *testing.T) {
	const conns = 10_000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < conns+1000 {
		t.Skipf("open file limit %d is too low for %d connections", lim.Cur, conns)
	}
	c := startCluster(t, t.TempDir(), 1)
	pid := childPID(t, c, "strata oss")
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(string(bytes.TrimRight(cmd, "\x00")), "\x00")
	addr := ""
	for i, a := range args {
		if a == "--listen" && i+1 < len(args) {
			addr = args[i+1]
		}
	}
	if addr == "" {
		t.Fatalf("no --listen in the OSS's command line %q", args)
	}
	secret, err := os.ReadFile(filepath.Join(c.dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	before := rss(t, pid)
	ctx := context.Background()
	clients := make([]*rpc.Client, 0, conns)
	defer func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}()
	for range conns {
		cl := rpc.NewClient(rpc.ClientConfig{Secret: bytes.TrimSpace(secret), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := cl.Ping(ctx, addr); err != nil {
			t.Fatalf("connection %d: %v", len(clients), err)
		}
		clients = append(clients, cl)
	}
	after := rss(t, pid)
	t.Logf("OSS resident memory: %d MiB before, %d MiB with %d idle connections", before>>20, after>>20, conns)
	if after > 200<<20 {
		t.Fatalf("OSS resident memory %d MiB with %d idle connections, want < 200 MiB", after>>20, conns)
	}
}

// rss returns a process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
