package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The ACL cases drive POSIX ACLs the way users do, with setfacl and
// getfacl (Debian package acl; tools/install-deps.sh installs it), which
// store them as the system.posix_acl_access and system.posix_acl_default
// extended attributes.

func requireACLTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"setfacl", "getfacl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install acl, or make deps)", tool)
		}
	}
}

// setfacl runs setfacl ARGS as root and fails the test on error.
func setfacl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("setfacl", args...).CombinedOutput(); err != nil {
		t.Fatalf("setfacl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// getfacl returns the entries of path's access ACL, or with defaults its
// default ACL (numeric ids, no comments).
func getfacl(t *testing.T, path string, defaults bool) []string {
	t.Helper()
	args := []string{"-p", "-n", "-c", "-E", "-a"}
	if defaults {
		args[4] = "-d"
	}
	cmd := exec.Command("getfacl", append(args, path)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("getfacl %s: %v: %s", path, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// wantACL fails unless path's ACL holds every entry of want.
func wantACL(t *testing.T, path string, defaults bool, want ...string) {
	t.Helper()
	got := getfacl(t, path, defaults)
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			kind := "access"
			if defaults {
				kind = "default"
			}
			t.Errorf("%s ACL of %s = %v, lacks %q", kind, filepath.Base(path), got, w)
		}
	}
}

var aclCases = []posixCase{
	{"named user entry grants what the mode bits deny", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o600, 0, 0)
		try(t, nobody, syscall.EACCES, "open-read", f)
		setfacl(t, "-m", "u:65534:r", f)
		wantACL(t, f, false, "user::rw-", "user:65534:r--", "mask::r--", "other::---")
		// The group class bits of the mode show the mask.
		wantMode(t, f, 0o640)
		try(t, nobody, 0, "open-read", f)
		try(t, nobody, 0, "access", f, "4")
		try(t, nobody, syscall.EACCES, "open-write", f)
		try(t, other, syscall.EACCES, "open-read", f)
		// The other client sees the same ACL.
		wantACL(t, filepath.Join(d2, "f"), false, "user:65534:r--")
		if n, err := unix.Getxattr(filepath.Join(d2, "f"), "system.posix_acl_access", make([]byte, 256)); err != nil || n < 4+5*8 {
			t.Errorf("getxattr system.posix_acl_access on the second client: %d bytes, %v", n, err)
		}
		// Removing the ACL takes the grant away.
		setfacl(t, "-b", f)
		try(t, nobody, syscall.EACCES, "open-read", f)
		wantMode(t, f, 0o600)
	}},
	{"named group entry", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o600, 0, 0)
		setfacl(t, "-m", "g:4242:rw", f)
		try(t, nobody, 0, "open-write", f)
		try(t, other, syscall.EACCES, "open-read", f)
	}},
	{"mask limits named entries", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o600, 0, 0)
		setfacl(t, "-m", "u:65534:rw,m::r", f)
		try(t, nobody, 0, "open-read", f)
		try(t, nobody, syscall.EACCES, "open-write", f)
		// chmod sets the mask from the group bits.
		if err := retryEINTR(func() error { return unix.Chmod(f, 0o600) }); err != nil {
			t.Fatal(err)
		}
		wantACL(t, f, false, "user:65534:rw-", "mask::---")
		try(t, nobody, syscall.EACCES, "open-read", f)
		if err := retryEINTR(func() error { return unix.Chmod(f, 0o660) }); err != nil {
			t.Fatal(err)
		}
		wantACL(t, f, false, "mask::rw-")
		try(t, nobody, 0, "open-write", f)
	}},
	{"ACL changes apply to the next open", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, _ := e.workDir(t)
		// Repeated, since a stale permission shows only now and then.
		for i := 0; i < 10; i++ {
			f := filepath.Join(d, fmt.Sprint("f", i))
			mkfile(t, f, "x", 0o600, 0, 0)
			try(t, nobody, syscall.EACCES, "open-read", f)
			setfacl(t, "-m", "u:65534:r", f)
			try(t, nobody, 0, "open-read", f)
			setfacl(t, "-x", "u:65534", f)
			try(t, nobody, syscall.EACCES, "open-read", f)
			if t.Failed() {
				t.Fatalf("round %d of 10", i)
			}
		}
	}},
	{"default ACL is inherited by new files", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, _ := e.workDir(t)
		dir := filepath.Join(d, "inherit")
		mkdirAs(t, dir, 0o755, 0, 0)
		setfacl(t, "-m", "u:65534:rwx", dir)
		setfacl(t, "-d", "-m", "u::rwx,g::r-x,o::---,u:65534:rw-,m::rwx", dir)
		wantACL(t, dir, true, "user:65534:rw-", "other::---")
		f := filepath.Join(dir, "byroot")
		// The umask (022) does not apply under a default ACL: the mode
		// is the create mode masked by the default ACL, 0660.
		fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		fh.Close()
		wantACL(t, f, false, "user::rw-", "user:65534:rw-", "mask::rw-", "other::---")
		wantMode(t, f, 0o660)
		try(t, nobody, 0, "open-write", f)
		try(t, other, syscall.EACCES, "open-read", f)
		// A file the named user creates inherits the same entries.
		try(t, nobody, 0, "create", filepath.Join(dir, "bynobody"), "644")
		wantACL(t, filepath.Join(dir, "bynobody"), false, "user:65534:rw-", "mask::r--")
		wantMode(t, filepath.Join(dir, "bynobody"), 0o640)
	}},
	{"default ACL is inherited by new directories", func(t *testing.T, e *posixEnv) {
		requireACLTools(t)
		d, _ := e.workDir(t)
		dir := filepath.Join(d, "inherit")
		mkdirAs(t, dir, 0o755, 0, 0)
		setfacl(t, "-d", "-m", "u::rwx,g::r-x,o::---,u:65534:rwx,m::rwx", dir)
		sub := filepath.Join(dir, "sub")
		if err := os.Mkdir(sub, 0o777); err != nil {
			t.Fatal(err)
		}
		wantACL(t, sub, false, "user:65534:rwx", "mask::rwx", "other::---")
		wantACL(t, sub, true, "user:65534:rwx", "mask::rwx", "other::---")
		wantMode(t, sub, 0o770)
		// The named user may create in it and below it, the rest may not.
		try(t, nobody, 0, "mkdir", filepath.Join(sub, "deeper"), "777")
		wantACL(t, filepath.Join(sub, "deeper"), true, "user:65534:rwx")
		try(t, nobody, 0, "create", filepath.Join(sub, "deeper", "f"), "666")
		try(t, other, syscall.EACCES, "create", filepath.Join(sub, "g"), "666")
	}},
}
