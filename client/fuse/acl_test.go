package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/proto"
)

// POSIX ACLs travel as the xattrs system.posix_acl_access and
// system.posix_acl_default in Linux's binary form: a little-endian u32
// version (2), then {u16 tag, u16 perm, u32 id} per entry, in tag order.

const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
	uidNobody  = 65534
)

// ACL entry tags.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// encodeACL returns the xattr value of an ACL; entries without a named id
// get the undefined id.
func encodeACL(entries ...aclEntry) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		if e.tag != aclUser {
			e.id = 0xffffffff
		}
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// readACL returns the entries of an ACL xattr.
func readACL(t *testing.T, path, name string) []aclEntry {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	var out []aclEntry
	for b := buf[4:n]; len(b) >= 8; b = b[8:] {
		out = append(out, aclEntry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return out
}

// aclPerm returns the permissions of the entry with tag (and id, for a
// named user), or -1.
func aclPerm(entries []aclEntry, tag uint16, id uint32) int {
	for _, e := range entries {
		if e.tag == tag && (tag != aclUser || e.id == id) {
			return int(e.perm)
		}
	}
	return -1
}

// aclMounts mounts a cluster twice with allow_other, so that processes of
// other users may use the mounts, and opens the way to them.
func aclMounts(t *testing.T) (c1 *client.Client, m1, m2 string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the ACL tests act as other users")
	}
	requireFUSE(t)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 1})
	c1 = cl.Client(t, client.Config{})
	m1 = mount(t, c1, Options{AllowOther: true})
	m2 = mount(t, cl.Client(t, client.Config{}), Options{AllowOther: true})
	for _, m := range []string{m1, m2} {
		if err := os.Chmod(filepath.Dir(m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c1, m1, m2
}

// asNobody runs a shell command as uid and gid 65534, with path as $1.
func asNobody(script, path string) error {
	cmd := exec.Command("sh", "-c", script, "sh", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uidNobody, Gid: uidNobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.New(string(bytes.TrimSpace(out)))
	}
	return nil
}

func inoOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func wantMode(t *testing.T, path string, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&0o7777 != mode {
		t.Errorf("mode of %s = %#o (%v), want %#o", filepath.Base(path), st.Mode&0o7777, err, mode)
	}
}

func TestACLNamedUserGrantsWhatModeDenies(t *testing.T) {
	c1, m1, m2 := aclMounts(t)
	f, f2 := filepath.Join(m1, "f"), filepath.Join(m2, "f")
	// Group bits make the kernel consult the ACL, and cache it.
	if err := os.WriteFile(f, []byte("secret"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := asNobody(`cat "$1"`, f); err == nil {
		t.Fatal("nobody read a 0640 file of root")
	}
	// The second mount's kernel caches the file's (absent) ACL now.
	if err := asNobody(`cat "$1"`, f2); err == nil {
		t.Fatal("nobody read a 0640 file of root on the second mount")
	}
	ctx := context.Background()
	nobody := proto.Cred{Uid: uidNobody, Gid: uidNobody}
	ino := inoOf(t, f)
	if err := c1.Access(ctx, nobody, ino, 4); client.Errno(err) != syscall.EACCES {
		t.Fatalf("MDS access check before the ACL: %v, want EACCES", err)
	}

	acl := encodeACL(aclEntry{tag: aclUserObj, perm: 6}, aclEntry{tag: aclUser, perm: 4, id: uidNobody},
		aclEntry{tag: aclGroupObj}, aclEntry{tag: aclMask, perm: 4}, aclEntry{tag: aclOther})
	if err := unix.Setxattr(f, aclAccess, acl, 0); err != nil {
		t.Fatalf("setxattr %s: %v", aclAccess, err)
	}
	// The group class bits of the mode show the mask: unchanged here, so
	// only ctime tells another client that the ACL changed.
	wantMode(t, f, 0o640)
	if err := asNobody(`cat "$1"`, f); err != nil {
		t.Errorf("nobody reads through the named user entry: %v", err)
	}
	if err := asNobody(`printf x >> "$1"`, f); err == nil {
		t.Error("nobody wrote with a read-only entry")
	}
	if err := c1.Access(ctx, nobody, ino, 4); err != nil {
		t.Errorf("MDS access check for reading with the ACL: %v", err)
	}
	if err := c1.Access(ctx, nobody, ino, 2); client.Errno(err) != syscall.EACCES {
		t.Errorf("MDS access check for writing with the ACL: %v, want EACCES", err)
	}

	// The second client reads the same ACL: its kernel drops the ACL it
	// cached whenever it fetches the file's attributes, which it does for
	// every stat and permission check of a regular file.
	wantMode(t, f2, 0o640) // a stat first, as getfacl makes
	if got := readACL(t, f2, aclAccess); aclPerm(got, aclUser, uidNobody) != 4 {
		t.Errorf("ACL on the second mount %v, lacks user:%d:r", got, uidNobody)
	}
	if err := asNobody(`cat "$1"`, f2); err != nil {
		t.Errorf("nobody reads through the named user entry on the second mount: %v", err)
	}

	// chmod sets the mask from the group bits.
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readACL(t, f, aclAccess); aclPerm(got, aclMask, 0) != 0 || aclPerm(got, aclUser, uidNobody) != 4 {
		t.Errorf("ACL after chmod 600: %v, want the entry kept and mask ---", got)
	}
	if err := asNobody(`cat "$1"`, f); err == nil {
		t.Error("nobody read through an entry that the mask takes away")
	}
	// Removing the ACL takes the grant away for good.
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Removexattr(f, aclAccess); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(f, aclAccess, make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("getxattr after removing the ACL: %v, want ENODATA", err)
	}
	if err := asNobody(`cat "$1"`, f); err == nil {
		t.Error("nobody read after the ACL was removed")
	}
}

func TestACLDefaultInheritedWithoutUmask(t *testing.T) {
	_, m1, m2 := aclMounts(t)
	dir := filepath.Join(m1, "inherit")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	def := encodeACL(aclEntry{tag: aclUserObj, perm: 7}, aclEntry{tag: aclUser, perm: 6, id: uidNobody},
		aclEntry{tag: aclGroupObj, perm: 5}, aclEntry{tag: aclMask, perm: 7}, aclEntry{tag: aclOther})
	if err := unix.Setxattr(dir, aclDefault, def, 0); err != nil {
		t.Fatalf("setxattr %s: %v", aclDefault, err)
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	// The umask does not apply under a default ACL: the mode is the
	// create mode masked by the ACL, 0660, where the umask would give 0640.
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	wantMode(t, f, 0o660)
	got := readACL(t, f, aclAccess)
	if aclPerm(got, aclUser, uidNobody) != 6 || aclPerm(got, aclMask, 0) != 6 || aclPerm(got, aclOther, 0) != 0 {
		t.Errorf("inherited access ACL %v, want user:%d:rw- mask::rw- other::---", got, uidNobody)
	}
	if err := asNobody(`printf x >> "$1"`, filepath.Join(m2, "inherit", "f")); err != nil {
		t.Errorf("nobody writes through the inherited entry on the second mount: %v", err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	wantMode(t, sub, 0o770)
	if got := readACL(t, sub, aclDefault); aclPerm(got, aclUser, uidNobody) != 6 {
		t.Errorf("subdirectory's default ACL %v, want it inherited", got)
	}
	// Outside the directory the umask applies as usual.
	if err := os.WriteFile(filepath.Join(m1, "plain"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	wantMode(t, filepath.Join(m1, "plain"), 0o644)
	if err := unix.Setxattr(filepath.Join(m1, "plain"), aclDefault, def, 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("default ACL on a file: %v, want EACCES", err)
	}
}
