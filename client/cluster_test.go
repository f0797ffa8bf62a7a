package client_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
)

// These tests run the library against a real MDS and real OSSes started in
// the test process.

func random(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func TestClusterStripedIO(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2})
	c := cl.Client(t, client.Config{})
	spec := layout.DefaultSpec(4, 64<<10)
	f, err := c.CreateStriped("/striped", 0o644, spec)
	if err != nil {
		t.Fatal(err)
	}
	data := random(1, 3<<20+4321)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	lay := f.Layout()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	osts := map[uint32]bool{}
	for _, o := range lay.Components[0].Objects {
		osts[o.OST] = true
	}
	if len(osts) != 4 {
		t.Errorf("layout uses OSTs %v, want 4 distinct", osts)
	}
	st, err := c.Stat("/striped")
	if err != nil || st.Size != uint64(len(data)) {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	g, err := c.OpenFile("/striped", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got, err := io.ReadAll(g)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want %d equal bytes", len(got), err, len(data))
	}
}

func TestClusterHolesTruncateAndCloseToOpen(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 3, StripeCount: 3, StripeSize: 64 << 10})
	writer := cl.Client(t, client.Config{})
	reader := cl.Client(t, client.Config{})

	f, err := writer.OpenFile("/sparse", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tail := random(2, 1000)
	if _, err := f.WriteAt(tail, 5<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The other client opens after the close and sees size and data.
	g, err := reader.OpenFile("/sparse", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g.Size() != 5<<20+1000 {
		t.Errorf("reader sees size %d", g.Size())
	}
	buf := make([]byte, 2000)
	n, err := g.ReadAt(buf, 5<<20-1000)
	if n != 2000 || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(buf[:1000], make([]byte, 1000)) || !bytes.Equal(buf[1000:], tail) {
		t.Error("hole does not read as zeros, or the tail differs")
	}
	g.Close()

	// Truncate through one client; the other sees it on its next open.
	f, err = writer.OpenFile("/sparse", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := reader.Stat("/sparse")
	if err != nil || st.Size != 100 {
		t.Fatalf("after truncate: %+v, %v", st, err)
	}
	if err := reader.Remove("/sparse"); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Stat("/sparse"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after remove: %v", err)
	}
}

func TestClusterFsyncAndStrict(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 1, StripeCount: 2, StripeSize: 64 << 10})
	a := cl.Client(t, client.Config{Consistency: client.Strict})
	b := cl.Client(t, client.Config{Consistency: client.Strict})
	f, err := a.OpenFile("/shared", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := b.OpenFile("/shared", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	data := random(3, 200<<10)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(data))
	if n, err := g.ReadAt(buf, 0); n != len(buf) || !bytes.Equal(buf, data) {
		t.Fatalf("strict reader read %d bytes (%v) of a write not yet closed", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// benchmarkSequential writes (and optionally reads back) size bytes through
// the library in 1 MiB calls over 4 OSTs with 1 MiB stripes.
func benchmarkSequential(b *testing.B, read bool) {
	const size, block = 256 << 20, 1 << 20
	cl := testcluster.Start(b, testcluster.Options{OSSes: 2, OSTsPerOSS: 2, StripeCount: 4, StripeSize: 1 << 20})
	c := cl.Client(b, client.Config{})
	buf := random(4, block)
	write := func(name string) {
		f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += block {
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if read {
		write("/bench")
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if !read {
			write("/bench")
			continue
		}
		f, err := c.OpenFile("/bench", os.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += block {
			if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

func BenchmarkSequentialWrite(b *testing.B) { benchmarkSequential(b, false) }
func BenchmarkSequentialRead(b *testing.B)  { benchmarkSequential(b, true) }

// TestTruncateUnreportedWrites: bytes cut by ftruncate must stay cut when
// the file grows again, also on a new file whose writes reached the OSTs
// but whose size the MDS has not heard of yet (no close or fsync). The MDS
// once skipped the object punches then, as for a file never written, and
// the old bytes came back after the next extension.
func TestTruncateUnreportedWrites(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 1})
	c := cl.Client(t, client.Config{})
	f, err := c.CreateStriped("/cut", 0o644, layout.DefaultSpec(2, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(random(7, 768<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(128 << 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(768 << 10); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 640<<10)
	if _, err := f.ReadAt(got, 128<<10); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(got, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("byte %d is %#x after truncating to 128 KiB and extending again, want 0", 128<<10+i, got[i])
	}
}
