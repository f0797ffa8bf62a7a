package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/hsm"
	"github.com/stratafs/strata/proto"
)

// TestHsmRestoreWaiters runs the library against a real MDS, OSSes and an
// in-process copytool: a restore waiter honours its interrupt while no
// copytool runs, a reader that opened the file before its release reads
// the right bytes after it (ESTALE, refetch, restore), and a truncate of a
// released file restores it first.
func TestHsmRestoreWaiters(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 1, StripeCount: 2, StripeSize: 64 << 10})
	c := cl.Client(t, client.Config{ReadAhead: -1})
	data := random(7, 1<<20+123)
	f, err := c.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stat("/f")
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	backend, err := hsm.Open("posix:"+filepath.Join(t.TempDir(), "archive"), hsm.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	agent := cl.Client(t, client.Config{})
	ct, err := hsm.NewCopytool(hsm.CopytoolConfig{Client: agent, Backend: backend, Archives: []uint32{1}, Name: "t", ChunkSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// runCopytool runs the copytool until the function it returns is
	// called (or the test ends).
	runCopytool := func() func() {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ct.Run(ctx) }()
		stopped := false
		halt := func() {
			if !stopped {
				stopped = true
				stop()
				if err := <-done; err != nil {
					t.Errorf("copytool: %v", err)
				}
			}
		}
		t.Cleanup(halt)
		return halt
	}
	stopCopytool := runCopytool()
	bg := context.Background()
	if _, err := c.HsmRequest(bg, proto.Cred{}, proto.HsmRequestReq{Ino: ino, Action: proto.HsmArchive, Wait: true}); err != nil {
		t.Fatal(err)
	}
	stopCopytool()

	old, err := c.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := c.HsmRequest(bg, proto.Cred{}, proto.HsmRequestReq{Ino: ino, Action: proto.HsmRelease}); err != nil {
		t.Fatal(err)
	}
	g, err := c.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.Released() {
		t.Fatal("a file opened after its release does not say so")
	}
	// Nobody restores: an interrupted waiter gives up within a slice.
	intr := make(chan struct{})
	close(intr)
	began := time.Now()
	err = g.Restore(client.WithInterrupt(bg, intr))
	if !errors.Is(err, syscall.EINTR) || time.Since(began) > 2*proto.HsmWaitSlice*time.Millisecond {
		t.Fatalf("interrupted restore wait: %v after %v", err, time.Since(began))
	}

	runCopytool()
	buf := make([]byte, len(data))
	if n, err := old.ReadAt(buf, 0); n != len(data) || err != nil && n != len(data) {
		t.Fatalf("read with the layout from before the release: %d, %v", n, err)
	}
	if !bytes.Equal(buf, data) {
		t.Fatal("a reader holding the old layout read wrong bytes")
	}
	// Released again, then truncated to a smaller size: restored first.
	if _, err := c.HsmRequest(bg, proto.Cred{}, proto.HsmRequestReq{Ino: ino, Action: proto.HsmRelease}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Setattr(bg, proto.Cred{}, ino, proto.SetattrReq{Valid: proto.SetSize, Size: 1000}); err != nil {
		t.Fatal(err)
	}
	h, err := c.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	small := make([]byte, 2000)
	n, _ := h.ReadAt(small, 0)
	if n != 1000 || !bytes.Equal(small[:n], data[:1000]) {
		t.Fatalf("after a truncate of the released file: %d bytes, want its first 1000", n)
	}
	hs, err := c.HsmState(bg, ino)
	if err != nil || hs.Flags != proto.HsmExists|proto.HsmArchived|proto.HsmDirty {
		t.Fatalf("state after the truncate: %+v, %v", hs, err)
	}
}
