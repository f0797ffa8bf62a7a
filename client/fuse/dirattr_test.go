package fuse

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/proto"
)

// TestDirAttrsAfterOwnChanges checks that a directory's attributes that the
// mount answers itself (see fileSystem.dirAttr) show every change made
// through the mount at once, exactly as the MDS has them, and another
// client's within the attribute timeout.
func TestDirAttrsAfterOwnChanges(t *testing.T) {
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 1})
	c := cl.Client(t, client.Config{})
	mnt := mount(t, c, Options{})
	other := cl.Client(t, client.Config{})
	ctx := context.Background()

	dir := filepath.Join(mnt, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := func() *syscall.Stat_t {
		t.Helper()
		var s syscall.Stat_t
		if err := syscall.Stat(dir, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	want := func(what string) {
		t.Helper()
		s := st()
		a, err := c.Getattr(ctx, s.Ino)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Mtim.Nano(); got != a.Mtime {
			t.Fatalf("after %s: mtime %d, MDS has %d", what, got, a.Mtime)
		}
		if got := s.Ctim.Nano(); got != a.Ctime {
			t.Fatalf("after %s: ctime %d, MDS has %d", what, got, a.Ctime)
		}
		if uint32(s.Nlink) != a.Nlink || s.Mode != a.Mode {
			t.Fatalf("after %s: nlink %d mode %o, MDS has %d %o", what, s.Nlink, s.Mode, a.Nlink, a.Mode)
		}
	}
	want("mkdir")
	for i := range 20 {
		f, err := os.OpenFile(filepath.Join(dir, "f"+string(rune('a'+i))), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		// Closing changes nothing of the directory; closed first, so
		// that a failure leaves the mount free to unmount.
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want("exclusive create")
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(filepath.Join(dir, "g"), nil, 0o644) }},
		{"unlink", func() error { return os.Remove(filepath.Join(dir, "fa")) }},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(dir, "sub"), 0o755) }},
		{"rename", func() error { return os.Rename(filepath.Join(dir, "fb"), filepath.Join(dir, "fb2")) }},
		{"rmdir", func() error { return os.Remove(filepath.Join(dir, "sub")) }},
		{"chmod", func() error { return os.Chmod(dir, 0o700) }},
		{"symlink", func() error { return os.Symlink("x", filepath.Join(dir, "l")) }},
		{"link", func() error { return os.Link(filepath.Join(dir, "fc"), filepath.Join(dir, "fc2")) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		want(s.what)
	}

	// Another client's change shows within the attribute timeout.
	before := st().Mtim.Nano()
	ino := st().Ino
	if _, err := other.Mknod(ctx, proto.Cred{}, ino, "remote", syscall.S_IFREG|0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(attrTimeout + time.Second)
	for st().Mtim.Nano() == before {
		if time.Now().After(deadline) {
			t.Fatalf("another client's create did not show in the directory's mtime within %v", attrTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want("another client's create")
}
