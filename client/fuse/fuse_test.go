package fuse

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

func random(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// setstripe sets a directory's default layout through the virtual xattr.
func setstripe(t *testing.T, path string, count int32, size int64) {
	t.Helper()
	b, err := json.Marshal(layout.DefaultSpec(count, size))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(path, xattrLayout, b, 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", path, xattrLayout, err)
	}
}

// getstripe reads a file's layout through the virtual xattr.
func getstripe(t *testing.T, path string) proto.GetLayoutResp {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(path, xattrLayout, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, xattrLayout, err)
	}
	var resp proto.GetLayoutResp
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		t.Fatalf("layout JSON %q: %v", buf[:n], err)
	}
	return resp
}

func TestStripedFilesOverFourOSTs(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	dir := filepath.Join(mnt, "wide")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	setstripe(t, dir, 4, 64<<10)
	if d := getstripe(t, dir); !d.IsDir || len(d.Spec.Components) != 1 || d.Spec.Components[0].StripeCount != 4 {
		t.Fatalf("directory default layout: %+v", d)
	}
	data := random(1, 9<<20+12345)
	name := filepath.Join(dir, "data")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lay := getstripe(t, name).Layout
	if len(lay.Components) != 1 || len(lay.Components[0].Objects) != 4 {
		t.Fatalf("file layout %+v, want 4 objects", lay)
	}
	osts := map[uint32]bool{}
	for _, o := range lay.Components[0].Objects {
		osts[o.OST] = true
	}
	if len(osts) != 4 {
		t.Errorf("objects on OSTs %v, want 4 distinct", osts)
	}
	got, err := os.ReadFile(name)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want %d equal", len(got), err, len(data))
	}
	// Random reads at unaligned offsets.
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		off := r.IntN(len(data))
		buf := make([]byte, r.IntN(300<<10)+1)
		n, _ := f.ReadAt(buf, int64(off))
		if want := data[off:min(len(data), off+len(buf))]; !bytes.Equal(buf[:n], want) {
			t.Fatalf("pread(%d, %d) = %d bytes, differing", off, len(buf), n)
		}
	}
}

func TestHolesTruncateAppend(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	name := filepath.Join(mnt, "sparse")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	tail := random(2, 777)
	if _, err := f.WriteAt(tail, 7<<20); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(name) // size visible while the writer holds the file
	if err != nil || st.Size() != 7<<20+777 {
		t.Errorf("stat while writing: %v, %v", st.Size(), err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7<<20+777 || !bytes.Equal(got[:7<<20], make([]byte, 7<<20)) || !bytes.Equal(got[7<<20:], tail) {
		t.Fatal("hole does not read as zeros or the tail differs")
	}
	if err := os.Truncate(name, 1000); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(name); st.Size() != 1000 {
		t.Errorf("size after truncate %d", st.Size())
	}
	// Extending truncate makes a hole.
	if err := os.Truncate(name, 5000); err != nil {
		t.Fatal(err)
	}
	a, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two"} {
		if _, err := a.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = os.ReadFile(name)
	if err != nil || len(got) != 5006 || string(got[5000:]) != "onetwo" || !bytes.Equal(got[:1000], make([]byte, 1000)) {
		t.Fatalf("after truncate and append: %d bytes (%v), tail %q", len(got), err, got[min(len(got), 5000):])
	}
}

func TestRenameFlags(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	os.WriteFile(a, []byte("A"), 0o644)
	os.WriteFile(b, []byte("B"), 0o644)
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("RENAME_NOREPLACE onto an existing name: %v, want EEXIST", err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("RENAME_EXCHANGE: %v", err)
	}
	ga, _ := os.ReadFile(a)
	gb, _ := os.ReadFile(b)
	if string(ga) != "B" || string(gb) != "A" {
		t.Errorf("after exchange a=%q b=%q", ga, gb)
	}
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a, filepath.Join(mnt, "d", "moved")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(mnt, "d", "moved")); string(got) != "B" {
		t.Errorf("moved file holds %q", got)
	}
}

func TestAttributes(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	name := filepath.Join(mnt, "f")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(name, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("mode %o uid %d gid %d", st.Mode, st.Uid, st.Gid)
	}
	// utimensat: set atime, leave mtime (UTIME_OMIT); then mtime now.
	ts := []unix.Timespec{{Sec: 1000, Nsec: 5}, {Nsec: unix.UTIME_OMIT}}
	before := st.Mtim
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, name, ts, 0); err != nil {
		t.Fatal(err)
	}
	unix.Stat(name, &st)
	if st.Atim.Sec != 1000 || st.Atim.Nsec != 5 || st.Mtim != before {
		t.Errorf("after UTIME_OMIT: atime %v mtime %v (was %v)", st.Atim, st.Mtim, before)
	}
	ts = []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, name, ts, 0); err != nil {
		t.Fatal(err)
	}
	unix.Stat(name, &st)
	if d := time.Since(time.Unix(st.Mtim.Unix())); d < 0 || d > time.Minute || st.Atim.Sec != 1000 {
		t.Errorf("after UTIME_NOW: mtime %v atime %v", st.Mtim, st.Atim)
	}
	// An explicit mtime set while the file is open for writing survives
	// the close (cp -p, tar).
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("data"))
	mt := time.Unix(2000, 0)
	if err := os.Chtimes(name, mt, mt); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(name); !fi.ModTime().Equal(mt) {
		t.Errorf("mtime %v after close, want %v", fi.ModTime(), mt)
	}
}

func TestVirtualXattrs(t *testing.T) {
	cl, mnt := startMount(t, client.Config{}, Options{})
	name := filepath.Join(mnt, "f")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(name, xattrTargets, buf)
	if err != nil {
		t.Fatal(err)
	}
	var targets proto.TargetsResp
	if err := json.Unmarshal(buf[:n], &targets); err != nil || len(targets.OSTs) != cl.OSTs {
		t.Fatalf("targets %+v, %v", targets, err)
	}
	if err := unix.Setxattr(name, "user.plain", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	n, err = unix.Listxattr(name, buf)
	if err != nil {
		t.Fatal(err)
	}
	if names := string(buf[:n]); strings.Contains(names, "strata") || !strings.Contains(names, "user.plain") {
		t.Errorf("listxattr = %q", names)
	}
	// setstripe on an empty file replaces its layout.
	b, _ := json.Marshal(layout.DefaultSpec(2, 128<<10))
	if err := unix.Setxattr(name, xattrLayout, b, 0); err != nil {
		t.Fatal(err)
	}
	if l := getstripe(t, name).Layout; len(l.Components) != 1 || l.Components[0].StripeCount != 2 || l.Components[0].StripeSize != 128<<10 {
		t.Errorf("layout after setstripe: %+v", l)
	}
	if err := unix.Setxattr(name, xattrLayout, []byte("not json"), 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("setstripe with bad JSON: %v", err)
	}
}

// TestCloseToOpenAcrossMounts writes through one mount and reads through a
// second mount of the same filesystem, from another client, after close; the
// second mount uses the page cache so that its cache validation is tested.
func TestCloseToOpenAcrossMounts(t *testing.T) {
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2})
	m1 := mount(t, cl.Client(t, client.Config{}), Options{})
	m2 := mount(t, cl.Client(t, client.Config{}), Options{PageCache: true})

	v1 := random(3, 3<<20)
	if err := os.WriteFile(filepath.Join(m1, "shared"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m2, "shared")); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("second mount read %d bytes (%v), want the first version", len(got), err)
	}
	// Same size, new bytes: the second mount's cached pages must go.
	v2 := random(4, 3<<20)
	if err := os.WriteFile(filepath.Join(m1, "shared"), v2, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m2, "shared")); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("second mount read stale data after the writer closed (%v)", err)
	}
	// A size cached by the second mount's kernel is refreshed at open.
	if _, err := os.Stat(filepath.Join(m2, "shared")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(m1, "shared"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("more"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(filepath.Join(m2, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := g.Stat()
	g.Close()
	if err != nil || fi.Size() != 3<<20+4 {
		t.Fatalf("fstat after open on the second mount: size %d (%v), want %d", fi.Size(), err, 3<<20+4)
	}
	// Directories and names too.
	if err := os.MkdirAll(filepath.Join(m1, "x", "y"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m1, "x", "y", "z"), []byte("zz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m2, "x", "y", "z")); err != nil || string(got) != "zz" {
		t.Fatalf("second mount: %q, %v", got, err)
	}
}

// TestStrictAcrossMounts checks that in strict mode a write is visible to
// another mount before the writer closes.
func TestStrictAcrossMounts(t *testing.T) {
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2})
	m1 := mount(t, cl.Client(t, client.Config{Consistency: client.Strict}), Options{})
	m2 := mount(t, cl.Client(t, client.Config{Consistency: client.Strict}), Options{})
	f, err := os.Create(filepath.Join(m1, "live"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(filepath.Join(m2, "live"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	data := random(5, 300<<10)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(data))
	if n, err := g.ReadAt(buf, 0); n != len(data) || !bytes.Equal(buf, data) {
		t.Fatalf("strict reader got %d bytes (%v) of an open file's write", n, err)
	}
}

// TestMmap checks that files opened with FOPEN_DIRECT_IO can still be
// mapped, read and written through the mapping.
func TestMmap(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	name := filepath.Join(mnt, "mapped")
	data := random(6, 64<<10)
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if !bytes.Equal(m, data) {
		t.Error("mapping differs from the file")
	}
	copy(m[100:], "mapped write")
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil || string(got[100:112]) != "mapped write" {
		t.Fatalf("after msync: %q, %v", got[100:112], err)
	}
}
