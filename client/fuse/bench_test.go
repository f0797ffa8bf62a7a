package fuse

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
)

// benchmarkMount writes (or reads back) a 256 MiB file through a mount in
// 1 MiB system calls, over four OSTs with 1 MiB stripes, as dd bs=1M does.
// The file is rewritten before each timed read, so reads are cold: the new
// data version makes the kernel drop cached pages at open.
func benchmarkMount(b *testing.B, opts Options, read bool) {
	const size, block = 256 << 20, 1 << 20
	requireFUSE(b)
	cl := testcluster.Start(b, testcluster.Options{OSSes: 2, OSTsPerOSS: 2, StripeCount: 4, StripeSize: 1 << 20})
	c := cl.Client(b, client.Config{})
	mnt := b.TempDir()
	server, err := Mount(c, mnt, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { server.Unmount() })
	name := filepath.Join(mnt, "bench")
	buf := random(7, block)
	write := func() {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < size; off += block {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if !read {
			write()
			continue
		}
		b.StopTimer()
		write()
		b.StartTimer()
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := io.ReadFull(f, buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

func BenchmarkMountWriteDirectIO(b *testing.B)  { benchmarkMount(b, Options{}, false) }
func BenchmarkMountReadDirectIO(b *testing.B)   { benchmarkMount(b, Options{}, true) }
func BenchmarkMountWritePageCache(b *testing.B) { benchmarkMount(b, Options{PageCache: true}, false) }
func BenchmarkMountReadPageCache(b *testing.B)  { benchmarkMount(b, Options{PageCache: true}, true) }
