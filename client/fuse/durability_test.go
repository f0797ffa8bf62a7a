package fuse

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/proto"
)

// TestFsyncDirIsDurable: fsync of a directory must make the entries created
// in it durable, whatever the metadata store's background sync interval. It
// once returned success without asking the MDS anything. The store here
// forgets every commit not synced when it "loses power" (kvtest.Lossy).
func TestFsyncDirIsDurable(t *testing.T) {
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 2, LossyStore: true})
	mnt := mount(t, cl.Client(t, client.Config{}), Options{})
	dir := filepath.Join(mnt, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, "kept")
	if err := os.WriteFile(kept, []byte("acknowledged"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := cl.Store.Syncs()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync of the directory: %v", err)
	}
	d.Close()
	if cl.Store.Syncs() == before {
		t.Fatal("fsync of a directory did not sync the metadata store")
	}
	// A file fsynced is durable (fsync of a file makes its size and
	// metadata durable too); a file created after that is not yet.
	f, err := os.OpenFile(filepath.Join(mnt, "synced"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "lost"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if cl.Store.Unsynced() == 0 {
		t.Fatal("the test's unsynced create left nothing to lose: it proves nothing")
	}
	if err := cl.Store.Crash(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Read back through a fresh client: the mount's kernel caches names.
	c := cl.Client(t, client.Config{})
	root := c.Root()
	cred := proto.Cred{}
	da, err := c.Lookup(context.Background(), cred, root, "d")
	if err != nil {
		t.Fatalf("directory lost: %v", err)
	}
	if _, err := c.Lookup(context.Background(), cred, da.Ino, "kept"); err != nil {
		t.Fatalf("entry acknowledged by fsync of its directory lost in the crash: %v", err)
	}
	if _, err := c.Lookup(context.Background(), cred, da.Ino, "lost"); client.Errno(err) != syscall.ENOENT {
		t.Fatalf("an unsynced create survived the simulated crash (%v): the store is not lossy", err)
	}
	sa, err := c.Lookup(context.Background(), cred, root, "synced")
	if err != nil || sa.Size != 10 {
		t.Fatalf("fsynced file after the crash: %+v %v", sa, err)
	}
}
