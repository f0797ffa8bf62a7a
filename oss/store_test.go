package oss

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layout"
)

func openTestOST(t *testing.T, opts ...OSTOption) *OST {
	t.Helper()
	o, err := OpenOST(t.TempDir(), append([]OSTOption{WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func obj(ino uint64, seq uint32) Object {
	return Object{ID: layout.ObjectID{Ino: ino, Seq: seq}}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func mustWrite(t *testing.T, o *OST, ob Object, off int64, data []byte) int64 {
	t.Helper()
	size, err := o.Write(ob, off, data, false, Access{})
	if err != nil {
		t.Fatal(err)
	}
	return size
}

func mustRead(t *testing.T, o *OST, id layout.ObjectID, off int64, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	got, _, err := o.Read(id, off, buf, Access{})
	if err != nil {
		t.Fatal(err)
	}
	return buf[:got]
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOST(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := o.Identity()
	if id.Index != -1 || id.UUID == "" || id.FSName != "" {
		t.Fatalf("fresh identity %+v", id)
	}
	if _, err := OpenOST(dir); !errors.Is(err, ErrOSTBusy) {
		t.Fatalf("second open: %v, want ErrOSTBusy", err)
	}
	if err := o.SetIndex(3); err != nil {
		t.Fatal(err)
	}
	if err := o.SetIndex(3); err != nil {
		t.Fatalf("same index again: %v", err)
	}
	if err := o.SetIndex(4); !errors.Is(err, ErrIndexMismatch) {
		t.Fatalf("changing index: %v", err)
	}
	if err := o.SetFSName("lustre"); err != nil {
		t.Fatal(err)
	}
	if err := o.SetFSName("other"); !errors.Is(err, ErrFSMismatch) {
		t.Fatalf("changing fsname: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, identityFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary identity file left behind: %v", err)
	}

	o, err = OpenOST(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	want := Identity{FSName: "lustre", Index: 3, UUID: id.UUID}
	if got := o.Identity(); got != want {
		t.Fatalf("reopened identity %+v, want %+v", got, want)
	}
	if o.String() != "OST0003" {
		t.Fatalf("String() = %q", o.String())
	}
}

func TestIdentityCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOST(dir); err == nil {
		t.Fatal("corrupt ost.json accepted")
	}
	if _, err := OpenOST(dir); errors.Is(err, ErrOSTBusy) {
		t.Fatal("failed open kept the lock")
	}
}

func TestIdentityLost(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOST(dir, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, o, obj(1, 0), 0, []byte("x"))
	o.Close()
	if err := os.Remove(filepath.Join(dir, identityFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOST(dir); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("open without ost.json: %v", err)
	}
}

func TestObjectPathAndOwner(t *testing.T) {
	id := layout.ObjectID{Ino: 0x1234abcd, Seq: 7}
	want := filepath.Join("O", "cd", "000000001234abcd.00000007")
	if got := ObjectPath(id); got != want {
		t.Fatalf("ObjectPath = %q, want %q", got, want)
	}
	o := openTestOST(t)
	ob := Object{ID: id, Stripe: 5}
	mustWrite(t, o, ob, 0, []byte("x"))
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(filepath.Join(o.Dir(), want), OwnerXattr, buf)
	if errors.Is(err, syscall.ENOTSUP) {
		t.Skip("no user xattrs on the test file system")
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != fmt.Sprintf("%d:7:5", 0x1234abcd) {
		t.Fatalf("owner xattr %q", got)
	}
	parsed, err := ParseOwner(string(buf[:n]))
	if err != nil || parsed != ob {
		t.Fatalf("ParseOwner = %+v, %v", parsed, err)
	}
	for _, bad := range []string{"", "1:2", "1:2:x", "1:4294967296:0", "-1:0:0"} {
		if _, err := ParseOwner(bad); err == nil {
			t.Errorf("ParseOwner(%q) accepted", bad)
		}
	}
}

func TestWriteRead(t *testing.T) {
	o := openTestOST(t)
	ob := obj(42, 1)
	data := pattern(100_000, 1)
	if size := mustWrite(t, o, ob, 0, data); size != int64(len(data)) {
		t.Fatalf("size after write %d", size)
	}
	if got := mustRead(t, o, ob.ID, 0, len(data)); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	// Overwrite the middle; read across it; read short at EOF.
	mid := pattern(1000, 9)
	mustWrite(t, o, ob, 5000, mid)
	copy(data[5000:], mid)
	buf := make([]byte, 200_000)
	n, size, err := o.Read(ob.ID, 0, buf, Access{})
	if err != nil || n != len(data) || size != int64(len(data)) {
		t.Fatalf("short read: n %d size %d err %v", n, size, err)
	}
	if !bytes.Equal(buf[:n], data) {
		t.Fatal("read after overwrite differs")
	}
	n, _, err = o.Read(ob.ID, 1<<30, buf, Access{})
	if n != 0 || err != nil {
		t.Fatalf("read past EOF: %d, %v", n, err)
	}
	// A sync write of an empty payload creates the object.
	if _, err := o.Write(obj(42, 2), 0, nil, true, Access{}); err != nil {
		t.Fatal(err)
	}
	if attr, _ := o.Getattr(obj(42, 2).ID); !attr.Exists || attr.Size != 0 {
		t.Fatalf("empty write: %+v", attr)
	}
}

func TestReadMissing(t *testing.T) {
	o := openTestOST(t)
	buf := make([]byte, 4096)
	n, size, err := o.Read(layout.ObjectID{Ino: 9, Seq: 9}, 0, buf, Access{})
	if n != 0 || size != 0 || err != nil {
		t.Fatalf("missing object: n %d size %d err %v", n, size, err)
	}
	attr, err := o.Getattr(layout.ObjectID{Ino: 9, Seq: 9})
	if err != nil || attr.Exists {
		t.Fatalf("getattr missing: %+v %v", attr, err)
	}
	if err := o.Sync(layout.ObjectID{Ino: 9, Seq: 9}); err != nil {
		t.Fatalf("sync missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Dir(), ObjectPath(layout.ObjectID{Ino: 9, Seq: 9}))); !os.IsNotExist(err) {
		t.Fatal("reading created the object")
	}
}

func TestHoles(t *testing.T) {
	o := openTestOST(t)
	ob := obj(7, 0)
	const off = 8 << 20
	mustWrite(t, o, ob, off, []byte("tail"))
	got := mustRead(t, o, ob.ID, off-4096, 4100)
	if !bytes.Equal(got[:4096], make([]byte, 4096)) || string(got[4096:]) != "tail" {
		t.Fatal("hole does not read as zeros")
	}
	attr, err := o.Getattr(ob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Size != off+4 || attr.Blocks*512 >= off {
		t.Fatalf("sparse object: %+v", attr)
	}
}

func TestPunch(t *testing.T) {
	o := openTestOST(t)
	ob := obj(8, 0)
	mustWrite(t, o, ob, 0, pattern(10_000, 3))
	if err := o.Punch(ob, 100, Access{}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, o, ob.ID, 0, 10_000); !bytes.Equal(got, pattern(100, 3)) {
		t.Fatalf("after shrink read %d bytes", len(got))
	}
	if err := o.Punch(ob, 1<<20, Access{}); err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, o, ob.ID, 0, 2<<20)
	if len(got) != 1<<20 || !bytes.Equal(got[100:], make([]byte, 1<<20-100)) {
		t.Fatal("extension is not a hole of zeros")
	}

	// A missing object is created sparse by a positive punch, with its owner.
	sparse := Object{ID: layout.ObjectID{Ino: 8, Seq: 1}, Stripe: 2}
	if err := o.Punch(sparse, 5<<20, Access{}); err != nil {
		t.Fatal(err)
	}
	attr, _ := o.Getattr(sparse.ID)
	if !attr.Exists || attr.Size != 5<<20 || attr.Blocks > 8 {
		t.Fatalf("punched-into-existence object: %+v", attr)
	}
	// ... and left alone by a punch to zero.
	if err := o.Punch(obj(8, 2), 0, Access{}); err != nil {
		t.Fatal(err)
	}
	if attr, _ := o.Getattr(obj(8, 2).ID); attr.Exists {
		t.Fatal("punch to 0 created an object")
	}
}

func TestDestroy(t *testing.T) {
	o := openTestOST(t)
	a, b := obj(10, 0), obj(10, 1)
	mustWrite(t, o, a, 0, []byte("aaaa"))
	mustWrite(t, o, b, 0, []byte("bbbb"))
	if err := o.Destroy(a.ID, b.ID, layout.ObjectID{Ino: 99}); err != nil {
		t.Fatal(err)
	}
	for _, ob := range []Object{a, b} {
		if attr, _ := o.Getattr(ob.ID); attr.Exists {
			t.Fatalf("%s survived destroy", ob.ID)
		}
		if _, err := os.Stat(filepath.Join(o.Dir(), ObjectPath(ob.ID))); !os.IsNotExist(err) {
			t.Fatalf("%s file survived destroy", ob.ID)
		}
	}
	if o.handles.len() != 0 {
		t.Fatalf("%d handles cached after destroy", o.handles.len())
	}
	// A destroyed object is never read as a hole nor created again: a
	// client with an old layout gets ESTALE and asks for the new one.
	if _, err := o.Write(a, 2, []byte("zz"), false, Access{}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write after destroy: %v, want ESTALE", err)
	}
	if _, _, err := o.Read(b.ID, 0, make([]byte, 4), Access{}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("read after destroy: %v, want ESTALE", err)
	}
	if err := o.Punch(a, 10, Access{Epoch: 3}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("punch after destroy: %v, want ESTALE", err)
	}
	if _, err := os.Stat(filepath.Join(o.Dir(), ObjectPath(a.ID))); !os.IsNotExist(err) {
		t.Fatalf("%s recreated after destroy", a.ID)
	}
	// The OST remembers across a restart.
	dir := o.Dir()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, err := OpenOST(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if _, err := o2.Write(a, 0, []byte("x"), false, Access{}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write after destroy and restart: %v, want ESTALE", err)
	}
	if err := o2.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestStatfs(t *testing.T) {
	o := openTestOST(t)
	u, err := o.Statfs()
	if err != nil {
		t.Fatal(err)
	}
	if u.Total == 0 || u.Avail > u.Total || u.Used > u.Total || u.Files == 0 || u.FFree > u.Files {
		t.Fatalf("implausible usage %+v", u)
	}
}

func TestInvalidArguments(t *testing.T) {
	o := openTestOST(t)
	ob := obj(1, 0)
	if _, err := o.Write(ob, -1, []byte("x"), false, Access{}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("negative write offset: %v", err)
	}
	if _, err := o.Write(ob, math.MaxInt64-1, []byte("xx"), false, Access{}); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("overflowing write: %v", err)
	}
	if _, _, err := o.Read(ob.ID, -1, make([]byte, 1), Access{}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("negative read offset: %v", err)
	}
	if _, _, err := o.Read(ob.ID, 0, make([]byte, MaxRead+1), Access{}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("oversized read: %v", err)
	}
	if err := o.Punch(ob, -5, Access{}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("negative punch: %v", err)
	}
	if attr, _ := o.Getattr(ob.ID); attr.Exists {
		t.Error("a refused request created the object")
	}
	if s := o.Stats(); s.Errors != 5 {
		t.Errorf("errors counted %d, want 5", s.Errors)
	}
}

func TestDiskErrorsPropagate(t *testing.T) {
	fs := &faultFS{}
	o := openTestOST(t, withFS(fs))
	ob := obj(2, 0)
	mustWrite(t, o, ob, 0, []byte("ok"))

	fs.set(&fs.write, always(syscall.ENOSPC))
	if _, err := o.Write(ob, 0, []byte("full"), false, Access{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v", err)
	}
	if err := o.Punch(ob, 1<<20, Access{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("punch on a full disk: %v", err)
	}
	fs.set(&fs.write, nil)

	fs.set(&fs.datasync, always(syscall.EIO))
	if _, err := o.Write(ob, 0, []byte("x"), true, Access{}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync write with failing disk: %v", err)
	}
	if err := o.Sync(ob.ID); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync with failing disk: %v", err)
	}
	fs.set(&fs.datasync, nil)
	if err := o.Sync(ob.ID); err != nil {
		t.Fatal(err)
	}
	if got := o.Stats(); got.Errors != 4 || got.Ops.Write != 3 || got.BytesWritten != 2 {
		t.Fatalf("stats %+v", got)
	}
}

func TestOwnerXattrErrors(t *testing.T) {
	fs := &faultFS{}
	o := openTestOST(t, withFS(fs))
	fs.set(&fs.setxattr, always(syscall.ENOTSUP))
	if _, err := o.Write(obj(3, 0), 0, []byte("x"), false, Access{}); err != nil {
		t.Fatalf("xattr unsupported should not fail writes: %v", err)
	}
	fs.set(&fs.setxattr, always(syscall.ENOSPC))
	if _, err := o.Write(obj(3, 1), 0, []byte("x"), false, Access{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("xattr ENOSPC: %v", err)
	}
	if attr, _ := o.Getattr(obj(3, 1).ID); attr.Exists {
		t.Fatal("object without owner left behind")
	}
}

// TestEvictionFlushError checks that a write-back error met when an evicted
// handle is flushed in the background is reported by the object's next
// sync, exactly once.
func TestEvictionFlushError(t *testing.T) {
	fs := &faultFS{}
	o := openTestOST(t, withFS(fs), WithHandleCache(1))
	a := obj(4, 0)
	mustWrite(t, o, a, 0, []byte("dirty"))
	victim := filepath.Join(o.Dir(), ObjectPath(a.ID))
	var once sync.Once
	fs.set(&fs.datasync, func(path string) error {
		err := error(nil)
		if path == victim {
			once.Do(func() { err = syscall.EIO })
		}
		return err
	})
	mustWrite(t, o, obj(4, 1), 0, []byte("evicts a"))
	if err := o.Sync(a.ID); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync after failed eviction flush: %v", err)
	}
	if err := o.Sync(a.ID); err != nil {
		t.Fatalf("error reported twice: %v", err)
	}
}

func TestCloseReportsWriteBackError(t *testing.T) {
	fs := &faultFS{}
	o := openTestOST(t, withFS(fs))
	mustWrite(t, o, obj(6, 0), 0, []byte("never synced"))
	fs.set(&fs.datasync, always(syscall.EIO))
	if err := o.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close: %v, want EIO", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestHandleCacheEviction(t *testing.T) {
	o := openTestOST(t, WithHandleCache(4))
	for i := range 20 {
		mustWrite(t, o, obj(uint64(i), 0), 0, []byte(fmt.Sprint(i)))
		if n := o.handles.len(); n > 4 {
			t.Fatalf("%d handles cached, bound is 4", n)
		}
	}
	for i := range 20 {
		if got := string(mustRead(t, o, obj(uint64(i), 0).ID, 0, 10)); got != fmt.Sprint(i) {
			t.Fatalf("object %d reads %q", i, got)
		}
	}
	// Destroy objects both cached and evicted; none may survive in the cache.
	for i := range 20 {
		if err := o.Destroy(obj(uint64(i), 0).ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := o.handles.len(); n != 0 {
		t.Fatalf("%d handles cached after destroying everything", n)
	}
}

// TestConcurrentCoherence races writes, reads, punches, destroys and
// evictions over a few objects with a tiny cache, then checks that a
// destroyed object stays destroyed whatever raced with its destroy, and
// that nothing was left behind.
func TestConcurrentCoherence(t *testing.T) {
	o := openTestOST(t, WithHandleCache(3))
	const objects, workers, rounds = 8, 8, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				ob := obj(uint64(r.IntN(objects)), 0)
				var err error
				switch r.IntN(5) {
				case 0, 1:
					_, err = o.Write(ob, int64(r.IntN(4))*4096, pattern(4096, byte(w)), false, Access{})
				case 2:
					_, _, err = o.Read(ob.ID, 0, make([]byte, 16384), Access{})
				case 3:
					err = o.Punch(ob, int64(r.IntN(3))*4096, Access{})
				case 4:
					err = o.Destroy(ob.ID)
				}
				if err != nil && !errors.Is(err, syscall.ESTALE) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range objects {
		ob := obj(uint64(i), 0)
		if err := o.Destroy(ob.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Write(ob, 0, []byte("final"), false, Access{}); !errors.Is(err, syscall.ESTALE) {
			t.Fatalf("object %d written after destroy: %v", i, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(o.Dir(), objectsDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != 2 || strings.Trim(e.Name(), "0123456789abcdef") != "" {
			t.Fatalf("unexpected entry %q in O/", e.Name())
		}
	}
}

func TestOSTStats(t *testing.T) {
	o := openTestOST(t)
	ob := obj(5, 0)
	mustWrite(t, o, ob, 0, make([]byte, 1000))
	mustRead(t, o, ob.ID, 0, 600)
	mustRead(t, o, ob.ID, 900, 600)
	o.Sync(ob.ID)
	o.Getattr(ob.ID)
	o.Punch(ob, 10, Access{})
	o.Destroy(ob.ID)
	o.Statfs()
	s := o.Stats()
	want := OpCounts{Write: 1, Read: 2, Punch: 1, Sync: 1, Getattr: 1, Destroy: 1, Statfs: 1}
	if s.Ops != want || s.BytesWritten != 1000 || s.BytesRead != 700 || s.Errors != 0 || s.Index != -1 || s.UUID == "" {
		t.Fatalf("stats %+v", s)
	}
}
