package fuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// The two-client coherence suite: both mounts cache (close-to-open mode
// under metadata leases; strict mode caches nothing), and every change one
// makes shows on the other as soon as the change returns, with no waiting:
// the change commits only once the other's cache, and its kernel's, have
// dropped what it changes.

// leaseMounts starts a cluster and mounts it twice in mode.
func leaseMounts(t *testing.T, mode string, opts testcluster.Options) (cl *testcluster.Cluster, a, b string, ca, cb *client.Client) {
	t.Helper()
	requireFUSE(t)
	cl = testcluster.Start(t, opts)
	ca = cl.Client(t, client.Config{Consistency: mode})
	cb = cl.Client(t, client.Config{Consistency: mode})
	return cl, mount(t, ca, Options{}), mount(t, cb, Options{}), ca, cb
}

// statOK stats path, failing the test on an error.
func statOK(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// wantGone fails unless path does not exist.
func wantGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: got %v, want ENOENT", path, err)
	}
}

func TestCoherenceTwoMounts(t *testing.T) {
	for _, mode := range []string{client.CloseToOpen, client.Strict} {
		t.Run(mode, func(t *testing.T) { testCoherence(t, mode) })
	}
}

func testCoherence(t *testing.T, mode string) {
	_, a, b, _, cb := leaseMounts(t, mode, testcluster.Options{})
	at := func(m, p string) string { return filepath.Join(m, p) }

	// Both see a new file; b caches it.
	if err := os.WriteFile(at(a, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if fi := statOK(t, at(b, "f")); fi.Size() != 3 {
			t.Fatalf("size %d on the other mount", fi.Size())
		}
	}
	if mode == client.CloseToOpen {
		// Repeated stats of an unchanged file stay on the client.
		before := cb.LeaseStats().Misses
		for range 5 {
			statOK(t, at(b, "f"))
		}
		if got := cb.LeaseStats().Misses - before; got > 0 {
			t.Fatalf("%d of 5 stats of an unchanged file went to the MDS", got)
		}
	}

	// chmod.
	if err := os.Chmod(at(a, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi := statOK(t, at(b, "f")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after chmod on the other mount", fi.Mode())
	}

	// write + close: size and data.
	if err := os.WriteFile(at(a, "f"), []byte("a longer content"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi := statOK(t, at(b, "f")); fi.Size() != 16 {
		t.Fatalf("size %d after write and close on the other mount, want 16", fi.Size())
	}
	if got, err := os.ReadFile(at(b, "f")); err != nil || string(got) != "a longer content" {
		t.Fatalf("read %q, %v", got, err)
	}

	// truncate.
	if err := os.Truncate(at(a, "f"), 4); err != nil {
		t.Fatal(err)
	}
	if fi := statOK(t, at(b, "f")); fi.Size() != 4 {
		t.Fatalf("size %d after truncate on the other mount, want 4", fi.Size())
	}

	// ACL: a gives user 4321 read access; b reads it back.
	acl := []byte{2, 0, 0, 0, // version 2
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // user::rw-
		2, 0, 4, 0, 0xe1, 0x10, 0, 0, // user:4321:r--
		4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // group::---
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // mask::r--
		0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff} // other::---
	if err := syscall.Setxattr(at(a, "f"), "system.posix_acl_access", acl, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(at(b, "f"), "system.posix_acl_access", buf)
	if err != nil || !bytes.Equal(buf[:n], acl) {
		t.Fatalf("ACL on the other mount: % x, %v", buf[:max(n, 0)], err)
	}
	if fi := statOK(t, at(b, "f")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v after setting an ACL with mask r--, want -rw-r-----", fi.Mode())
	}

	// rename, then unlink.
	statOK(t, at(b, "f"))
	if err := os.Rename(at(a, "f"), at(a, "g")); err != nil {
		t.Fatal(err)
	}
	wantGone(t, at(b, "f"))
	if fi := statOK(t, at(b, "g")); fi.Size() != 4 {
		t.Fatalf("renamed file has size %d", fi.Size())
	}
	if err := os.Remove(at(a, "g")); err != nil {
		t.Fatal(err)
	}
	wantGone(t, at(b, "g"))

	// Directories: mkdir, a name inside, rmdir.
	if err := os.Mkdir(at(a, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	statOK(t, at(b, "d"))
	if err := os.WriteFile(at(b, "d/x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	statOK(t, at(a, "d/x"))
	if err := os.Remove(at(a, "d/x")); err != nil {
		t.Fatal(err)
	}
	wantGone(t, at(b, "d/x"))
	ents, err := os.ReadDir(at(b, "d"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("listing after unlink on the other mount: %v, %v", ents, err)
	}
	if err := os.Remove(at(a, "d")); err != nil {
		t.Fatal(err)
	}
	wantGone(t, at(b, "d"))

	// A directory b made knows all its names, and answers a lookup of
	// a missing one itself, until another client adds one.
	if err := os.Mkdir(at(b, "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantGone(t, at(b, "e/y"))
	if err := os.WriteFile(at(a, "e/y"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	statOK(t, at(b, "e/y"))
	if err := os.WriteFile(at(b, "e/z"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	statOK(t, at(a, "e/z"))
}

// TestLeaseHungClientEvicted: a client that does not answer a callback
// (its callback handling hangs) is evicted once its leases run out, and
// the change goes ahead; the client then works again, under a new session.
func TestLeaseHungClientEvicted(t *testing.T) {
	const term = time.Second
	cl := testcluster.Start(t, testcluster.Options{MetaLease: term})
	ca := cl.Client(t, client.Config{})
	cb := cl.Client(t, client.Config{MetaLeases: true})
	ctx := context.Background()
	f, err := ca.Create(ctx, proto.Cred{}, ca.Root(), "f", 0o644, 0, os.O_RDWR, ca.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	defer close(hang)
	hung := make(chan struct{}, 1)
	cb.SetLeaseNotify(func(uint64, []string) <-chan struct{} {
		select {
		case hung <- struct{}{}:
		default:
		}
		<-hang
		return nil
	})
	// b takes a lease (its first lookups may race its first poll).
	for {
		if _, ttl, err := cb.LookupEntry(ctx, proto.Cred{}, cb.Root(), "f"); err != nil {
			t.Fatal(err)
		} else if ttl > 0 {
			break
		}
	}
	session := cb.SessionID()
	start := time.Now()
	if _, err := ca.Setattr(ctx, proto.Cred{}, f.Ino(), proto.SetattrReq{Valid: proto.SetMode, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	<-hung
	if waited := time.Since(start); waited > 3*term {
		t.Fatalf("the change waited %v for a hung client with a %v lease term", waited, term)
	}
	// b is evicted (the MDS does it in the background): a request of
	// its old session fails and it starts a new one.
	deadline := time.Now().Add(30 * time.Second)
	for cb.SessionID() == session {
		if time.Now().After(deadline) {
			t.Fatal("the client that left a callback unanswered kept its session")
		}
		a, err := cb.Getattr(ctx, f.Ino())
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode&0o777 != 0o600 {
			t.Fatalf("mode %#o on the client that missed the callback, want 0600", a.Mode&0o777)
		}
	}
}

// TestLeasesAcrossTakeover: a mount caching a file's attributes under a
// lease from an MDS that dies sees another mount's change made through the
// standby that took the MDT over: the new owner honours the leases of
// before (it waits for the mounts to drop them), and the mounts drop them
// when their polls fail.
func TestLeasesAcrossTakeover(t *testing.T) {
	cl, a, b, _, cb := leaseMounts(t, client.CloseToOpen, testcluster.Options{
		MDSes: [][]uint32{{0}, {}}, MDTLease: time.Second})
	if err := os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		statOK(t, filepath.Join(b, "f"))
	}
	before := cb.LeaseStats().Misses
	statOK(t, filepath.Join(b, "f"))
	if cb.LeaseStats().Misses != before {
		t.Fatal("the second mount does not cache the file")
	}
	cl.StopMDS(0)
	stopped := time.Now()
	// The change waits through the outage and the takeover.
	if err := os.Chmod(filepath.Join(a, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("chmod through the takeover took %v", time.Since(stopped))
	if fi := statOK(t, filepath.Join(b, "f")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v on the other mount after a chmod through the new MDT owner", fi.Mode())
	}
	if err := os.WriteFile(filepath.Join(a, "g"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	statOK(t, filepath.Join(b, "g"))
}

// TestParentAttrsAfterOwnChanges: after a client's own create, mkdir,
// unlink, rmdir or rename in a directory it holds a lease on, a stat of
// the directory is answered from the reply's parent time without the MDS,
// and shows what the other mount reads from the MDS.
func TestParentAttrsAfterOwnChanges(t *testing.T) {
	_, a, b, ca, _ := leaseMounts(t, client.CloseToOpen, testcluster.Options{})
	d := "d"
	if err := os.Mkdir(filepath.Join(a, d), 0o755); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func(dir string) error
	}{
		{"create", func(dir string) error { return os.WriteFile(filepath.Join(dir, "f"), nil, 0o644) }},
		{"mkdir", func(dir string) error { return os.Mkdir(filepath.Join(dir, "s"), 0o755) }},
		{"rename", func(dir string) error { return os.Rename(filepath.Join(dir, "f"), filepath.Join(dir, "g")) }},
		{"unlink", func(dir string) error { return os.Remove(filepath.Join(dir, "g")) }},
		{"rmdir", func(dir string) error { return os.Remove(filepath.Join(dir, "s")) }},
	}
	for _, st := range steps {
		before := statOK(t, filepath.Join(a, d)) // leased
		if err := st.do(filepath.Join(a, d)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		misses := ca.LeaseStats().Misses
		mine := statOK(t, filepath.Join(a, d)).Sys().(*syscall.Stat_t)
		if got := ca.LeaseStats().Misses - misses; got != 0 {
			t.Fatalf("%s: the stat of the directory after it went to the MDS (%d misses)", st.name, got)
		}
		theirs := statOK(t, filepath.Join(b, d)).Sys().(*syscall.Stat_t)
		if mine.Mtim != theirs.Mtim || mine.Ctim != theirs.Ctim || mine.Nlink != theirs.Nlink {
			t.Fatalf("%s: this mount sees mtime %v ctime %v links %d, the other %v %v %d", st.name,
				mine.Mtim, mine.Ctim, mine.Nlink, theirs.Mtim, theirs.Ctim, theirs.Nlink)
		}
		if !before.ModTime().Before(time.Unix(mine.Mtim.Unix())) {
			t.Fatalf("%s: mtime %v did not move from %v", st.name, time.Unix(mine.Mtim.Unix()), before.ModTime())
		}
	}
}

// TestStatAfterReadStaysLocal: reading a file changes nothing at the MDS,
// so the attributes the mount holds under a lease survive the read's
// close; a stat after it needs no MDS.
func TestStatAfterReadStaysLocal(t *testing.T) {
	_, a, _, ca, _ := leaseMounts(t, client.CloseToOpen, testcluster.Options{})
	p := filepath.Join(a, "f")
	// Written through the library, whose Close returns once the MDS has
	// the handle back (the kernel releases a closed file's handle later,
	// which would drop the attributes in the middle of the test).
	f, err := ca.Create(context.Background(), proto.Cred{}, 1, "f", 0o644, 0, syscall.O_WRONLY|syscall.O_CREAT, layout.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for { // until a stat of the file is answered under a lease
		misses := ca.LeaseStats().Misses
		statOK(t, p)
		if ca.LeaseStats().Misses == misses {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease on the file")
		}
	}
	for range 3 {
		misses := ca.LeaseStats().Misses
		if got, err := os.ReadFile(p); err != nil || string(got) != "data" {
			t.Fatalf("read %q, %v", got, err)
		}
		statOK(t, p)
		if d := ca.LeaseStats().Misses - misses; d != 0 {
			t.Fatalf("%d lookups or getattrs went to the MDS for a stat after a read", d)
		}
	}
}

// TestStatAfterWriteStaysLocal: the reply to a writer's close carries the
// file's attributes under a lease, so a stat after it needs no MDS and
// shows the size written; the other mount sees the same.
func TestStatAfterWriteStaysLocal(t *testing.T) {
	_, a, b, ca, _ := leaseMounts(t, client.CloseToOpen, testcluster.Options{})
	write := func(name string, data string) {
		t.Helper()
		f, err := ca.Create(context.Background(), proto.Cred{}, 1, name, 0o644, 0, syscall.O_WRONLY|syscall.O_CREAT, layout.Spec{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(data), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Until the mount's session leases (its first poll registered it).
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("warm%d", i)
		write(name, "x")
		misses := ca.LeaseStats().Misses
		statOK(t, filepath.Join(a, name))
		if ca.LeaseStats().Misses == misses {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease from a close")
		}
	}
	for i := range 5 {
		name := fmt.Sprintf("f%d", i)
		data := strings.Repeat("y", 100+i)
		write(name, data)
		misses := ca.LeaseStats().Misses
		if fi := statOK(t, filepath.Join(a, name)); fi.Size() != int64(len(data)) {
			t.Fatalf("size %d after writing %d bytes", fi.Size(), len(data))
		}
		if d := ca.LeaseStats().Misses - misses; d != 0 {
			t.Fatalf("%d lookups or getattrs went to the MDS for a stat after a write and close", d)
		}
		if fi := statOK(t, filepath.Join(b, name)); fi.Size() != int64(len(data)) {
			t.Fatalf("other mount: size %d, want %d", fi.Size(), len(data))
		}
	}
}

// TestStatAfterEmptyCreateStaysLocal: a file created and closed without a
// write (touch) keeps the attributes its create leased: the close reports
// nothing, so nothing it cached is stale. (The files are made through the
// library, so the kernel has no copy and every stat reaches the mount.)
func TestStatAfterEmptyCreateStaysLocal(t *testing.T) {
	_, a, _, ca, _ := leaseMounts(t, client.CloseToOpen, testcluster.Options{})
	touch := func(name string) {
		t.Helper()
		f, err := ca.Create(context.Background(), proto.Cred{}, 1, name, 0o644, 0, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, layout.Spec{})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ { // until the mount's session leases
		name := fmt.Sprintf("warm%d", i)
		touch(name)
		misses := ca.LeaseStats().Misses
		statOK(t, filepath.Join(a, name))
		if ca.LeaseStats().Misses == misses {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease from a create")
		}
	}
	for i := range 5 {
		name := fmt.Sprintf("e%d", i)
		touch(name)
		misses := ca.LeaseStats().Misses
		statOK(t, filepath.Join(a, name))
		if d := ca.LeaseStats().Misses - misses; d != 0 {
			t.Fatalf("%d lookups or getattrs went to the MDS for a stat after create and close", d)
		}
	}
}
