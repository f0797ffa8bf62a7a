package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
	"github.com/stratafs/strata/rpc"
)

// runCLI runs the strata command line with args and returns its output.
func runCLI(args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestRDMAPing(t *testing.T) {
	f := fake.New(fake.Options{Seed: 1})
	t.Cleanup(f.Close)
	secret := []byte("ping test secret")
	s := rpc.NewServer(rpc.ServerConfig{
		Addr: "127.0.0.1:0", Secret: secret, Transport: rpc.TransportAuto,
		Verbs: f.Node("server"), RDMA: rdma.Config{GIDIndex: -1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	pingVerbs = f.Node("client")
	t.Cleanup(func() { pingVerbs = nil })
	addr := s.Addr()

	out, err := runCLI("rdma", "ping", "--secret-file", secretFile, "--count", "3", "--json", addr)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	var r pingResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if r.Addr != addr || r.Transport != "rdma" || r.Device != "fake0" || r.Port != 1 || r.Count != 3 ||
		r.MinUS <= 0 || r.MinUS > r.AvgUS || r.AvgUS > r.MaxUS || r.ConnectMS <= 0 {
		t.Fatalf("ping --json = %+v", r)
	}

	out, err = runCLI("rdma", "ping", "--secret-file", secretFile, "--transport", "tcp", "-c", "2", addr)
	if err != nil || !strings.HasPrefix(out, addr+": transport tcp, connected in ") || !strings.Contains(out, "2 pings: rtt min/avg/max ") {
		t.Fatalf("ping over tcp: %q, %v", out, err)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not the secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI("rdma", "ping", "--secret-file", wrong, addr)
	if want := "strata: rdma: " + addr + ": authentication failed: wrong cluster secret"; err == nil || err.Error() != want {
		t.Fatalf("wrong secret: %v, want %q", err, want)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	_, err = runCLI("rdma", "ping", "--secret-file", secretFile, closed)
	if want := "strata: rdma: " + closed + ": cannot connect: connection refused"; err == nil || err.Error() != want {
		t.Fatalf("no server: %v, want %q", err, want)
	}
	_, err = runCLI("rdma", "ping", "--secret-file", secretFile, "--transport", "rdma", "--count", "1", closed)
	if err == nil || !strings.HasPrefix(err.Error(), "strata: rdma: "+closed+": ") {
		t.Fatalf("forced rdma, no server: %v", err)
	}
}

func TestRDMADevices(t *testing.T) {
	out, err := runCLI("rdma", "devices", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Devices []rdma.Device `json:"devices"`
		Verbs   bool          `json:"verbs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Devices == nil || doc.Verbs != rdma.NativeBuilt() {
		t.Fatalf("devices --json = %q (%v)", out, err)
	}
}
