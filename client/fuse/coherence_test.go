package fuse

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
)

// What one client sees of another's work: appends, per-directory strict
// mode, sizes after fsync and close, and mappings.

func TestAppendAcrossMounts(t *testing.T) {
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2})
	// The second mount uses the page cache, where O_APPEND opens must
	// still go around it.
	mounts := []string{
		mount(t, cl.Client(t, client.Config{}), Options{}),
		mount(t, cl.Client(t, client.Config{}), Options{PageCache: true}),
	}
	if err := os.WriteFile(filepath.Join(mounts[0], "log"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	const writers, records, recSize = 8, 100, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(filepath.Join(mounts[w%2], "log"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for r := range records {
				rec := fmt.Appendf(nil, "%d:%04d:", w, r)
				rec = append(rec, bytes.Repeat([]byte{byte('a' + w)}, recSize-len(rec)-1)...)
				if _, err := f.Write(append(rec, '\n')); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, m := range mounts {
		got, err := os.ReadFile(filepath.Join(m, "log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != writers*records*recSize {
			t.Fatalf("%s: log holds %d bytes, want %d: appends overlapped", m, len(got), writers*records*recSize)
		}
		next := make([]int, writers)
		for off := 0; off < len(got); off += recSize {
			var w, r int
			if _, err := fmt.Sscanf(string(got[off:off+recSize]), "%d:%d:", &w, &r); err != nil || w >= writers || r != next[w] {
				t.Fatalf("record at %d is %q, want writer %d's record %d", off, got[off:off+12], w, next[min(w, writers-1)])
			}
			next[w]++
		}
	}
}

func getConsistency(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, xattrConsistency, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, xattrConsistency, err)
	}
	return string(buf[:n])
}

func TestStrictDirectoryByXattr(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	dir := filepath.Join(m1, "mpi")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := getConsistency(t, dir); got != "" {
		t.Errorf("a new directory's mode %q, want inherited", got)
	}
	if err := unix.Setxattr(dir, xattrConsistency, []byte("strict"), 0); err != nil {
		t.Fatal(err)
	}
	if got := getConsistency(t, filepath.Join(m2, "mpi")); got != client.Strict {
		t.Errorf("mode seen by the other mount %q, want strict", got)
	}
	buf := make([]byte, 4096)
	if n, err := unix.Listxattr(dir, buf); err != nil || strings.Contains(string(buf[:n]), "strata") {
		t.Errorf("listxattr = %q, %v: the virtual attribute shows", buf[:n], err)
	}
	if err := unix.Setxattr(dir, xattrConsistency, []byte("eventual"), 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("unknown mode: %v, want EINVAL", err)
	}

	// A file created there is strict on these close-to-open mounts: a
	// write is visible to the other mount before the writer closes.
	f, err := os.Create(filepath.Join(dir, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(filepath.Join(m2, "mpi", "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	data := random(20, 300<<10)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if n, err := g.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("reader on the other mount got %d bytes (%v) of an open strict file's write", n, err)
	}
	if st, err := os.Stat(filepath.Join(m2, "mpi", "shared")); err != nil || st.Size() != int64(len(data)) {
		t.Errorf("size on the other mount before close: %v, %v", st.Size(), err)
	}
	if got := getConsistency(t, f.Name()); got != client.Strict {
		t.Errorf("file mode %q, want strict", got)
	}
	if err := unix.Setxattr(f.Name(), xattrConsistency, []byte("strict"), 0); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("setting a file's mode: %v, want ENOTDIR", err)
	}

	// Removing the attribute makes the directory inherit again; files
	// created from then on are not strict, those before stay strict.
	if err := unix.Removexattr(dir, xattrConsistency); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "later"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := getConsistency(t, filepath.Join(dir, "later")); got != "" {
		t.Errorf("file created after the removal: mode %q, want none", got)
	}
	if got := getConsistency(t, f.Name()); got != client.Strict {
		t.Errorf("earlier file's mode %q after the removal, want strict", got)
	}
}

func TestSizeFreshAcrossMounts(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	name := "grows"
	f, err := os.Create(filepath.Join(m1, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other := filepath.Join(m2, name)
	if st, err := os.Stat(other); err != nil || st.Size() != 0 {
		t.Fatalf("stat of the new file on the other mount: %v, %v", st, err)
	}
	wantSize := func(path string, size int64, when string) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil || st.Size() != size {
			t.Errorf("%s: size %d (%v), want %d", when, st.Size(), err, size)
		}
	}
	if _, err := f.Write(random(21, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	wantSize(other, 1000, "other mount after the writer's fsync")

	// The writer's own stat shows its buffered writes before close.
	before := time.Now()
	time.Sleep(10 * time.Millisecond)
	if _, err := f.Write(random(22, 500)); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil || st.Size() != 1500 || st.ModTime().Before(before) {
		t.Errorf("writer's fstat before close: size %d mtime %v (%v), want 1500 and after %v", st.Size(), st.ModTime(), err, before)
	}
	wantSize(f.Name(), 1500, "writer's stat before close")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantSize(other, 1500, "other mount after the writer's close")
}

func TestMmapAcrossMounts(t *testing.T) {
	m1, m2 := twoMounts(t, client.Config{}, Options{})
	name := filepath.Join(m1, "mapped")
	const size = 3*4096 + 100
	want := random(23, size)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Opened with FOPEN_DIRECT_IO, the file maps at all only because the
	// mount asks for FUSE_DIRECT_IO_ALLOW_MMAP.
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap MAP_SHARED: %v", err)
	}
	copy(m, want)
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if n, err := f.ReadAt(got, 0); n != size || !bytes.Equal(got, want) {
		t.Errorf("read(2) after msync: %d bytes (%v), differing", n, err)
	}
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m2, "mapped")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("other mount after close: %d bytes (%v), want the mapped writes", len(got), err)
	}

	// MAP_PRIVATE writes reach neither the file nor the other mount.
	g, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p, err := unix.Mmap(int(g.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap MAP_PRIVATE: %v", err)
	}
	copy(p[100:], "private change")
	_ = unix.Msync(p, unix.MS_SYNC)
	if n, err := g.ReadAt(got, 0); n != size || !bytes.Equal(got, want) {
		t.Errorf("read(2) after a private mapping's write: %d bytes (%v), changed", n, err)
	}
	if err := unix.Munmap(p); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m2, "mapped")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("other mount after a private mapping's write: %d bytes (%v), changed", len(got), err)
	}
}
