package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// try runs op as u in a helper and checks the outcome: want 0 is success.
func try(t *testing.T, u cred, want syscall.Errno, op string, args ...string) {
	t.Helper()
	short := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, "/") {
			a = filepath.Base(filepath.Dir(a)) + "/" + filepath.Base(a)
		}
		short[i] = a
	}
	what := fmt.Sprintf("%s: %s %s", u, op, strings.Join(short, " "))
	err := runAs(t, u, op, args...)
	if want == 0 {
		wantErrno(t, what, err)
	} else {
		wantErrno(t, what, err, want)
	}
}

// access is access(2) in the test process, as root.
func access(path string, mode uint32) error {
	return retryEINTR(func() error { return unix.Access(path, mode) })
}

const (
	uidNobody = int(65534)
	uidOther  = int(2002)
)

var permCases = []posixCase{
	{"chmod by owner", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o644, uidNobody, uidNobody)
		try(t, nobody, 0, "chmod", f, "600")
		wantMode(t, f, 0o600)
	}},
	{"chmod by non-owner is EPERM", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o666, 0, 0)
		try(t, nobody, syscall.EPERM, "chmod", f, "777")
		g := filepath.Join(d, "g")
		mkfile(t, g, "x", 0o666, uidNobody, uidNobody)
		try(t, other, syscall.EPERM, "chmod", g, "600")
		wantMode(t, f, 0o666)
		wantMode(t, g, 0o666)
	}},
	{"chown by non-root is EPERM", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o644, uidNobody, uidNobody)
		try(t, nobody, syscall.EPERM, "chown", f, "2002", "-1")
		try(t, nobody, syscall.EPERM, "chown", f, "0", "0")
		wantOwner(t, f, 65534, 65534)
		if err := os.Lchown(f, uidOther, uidOther); err != nil {
			t.Fatalf("root chown: %v", err)
		}
		wantOwner(t, f, 2002, 2002)
	}},
	{"chgrp by owner to a supplementary group", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "f")
		mkfile(t, f, "x", 0o644, uidNobody, uidNobody)
		try(t, nobody, 0, "chown", f, "-1", fmt.Sprint(staffGid))
		wantOwner(t, f, 65534, staffGid)
		// A group the caller is not in.
		try(t, nobody, syscall.EPERM, "chown", f, "-1", "2002")
		// Group changes by someone who does not own the file.
		try(t, other, syscall.EPERM, "chown", f, "-1", "2002")
		wantOwner(t, f, 65534, staffGid)
	}},
	{"chown clears suid and sgid", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		// By root (Linux clears suid, and sgid when group-executable).
		f := filepath.Join(d, "byroot")
		mkfile(t, f, "x", 0o6755, uidNobody, uidNobody)
		if err := os.Lchown(f, uidOther, uidOther); err != nil {
			t.Fatal(err)
		}
		wantMode(t, f, 0o755)
		// By the owner changing the group (POSIX requires both cleared).
		g := filepath.Join(d, "byowner")
		mkfile(t, g, "x", 0o6755, uidNobody, uidNobody)
		try(t, nobody, 0, "chown", g, "-1", fmt.Sprint(staffGid))
		wantMode(t, g, 0o755)
	}},
	{"write by non-root clears suid and sgid", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "shared")
		mkfile(t, f, "x", 0o6777, 0, 0)
		try(t, nobody, 0, "write", f, "y")
		wantMode(t, f, 0o777)
		g := filepath.Join(d, "own")
		mkfile(t, g, "x", 0o6755, uidNobody, uidNobody)
		try(t, nobody, 0, "write", g, "y")
		wantMode(t, g, 0o755)
		h := filepath.Join(d, "truncated")
		mkfile(t, h, "xyz", 0o6755, uidNobody, uidNobody)
		try(t, nobody, 0, "truncate", h, "1")
		wantMode(t, h, 0o755)
		if b := readFile(t, g); string(b) != "y" {
			t.Errorf("after the write the file holds %q, want %q", b, "y")
		}
	}},
	{"chmod g+s by an owner outside the group drops sgid", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f := filepath.Join(d, "rootgroup")
		mkfile(t, f, "x", 0o644, uidNobody, 0)
		try(t, nobody, 0, "chmod", f, "2755")
		wantMode(t, f, 0o755)
		g := filepath.Join(d, "staffgroup")
		mkfile(t, g, "x", 0o644, uidNobody, staffGid)
		try(t, nobody, 0, "chmod", g, "2755")
		wantMode(t, g, 0o2755)
	}},
	{"sticky directory", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		s := filepath.Join(d, "sticky")
		mkdirAs(t, s, 0o1777, 0, 0)
		theirs := filepath.Join(s, "theirs")
		try(t, other, 0, "create", theirs, "644")
		try(t, other, 0, "mkdir", filepath.Join(s, "theirdir"), "777")
		try(t, nobody, 0, "create", filepath.Join(s, "mine"), "644")
		try(t, nobody, syscall.EPERM, "unlink", theirs)
		try(t, nobody, syscall.EPERM, "rename", theirs, filepath.Join(s, "stolen"))
		try(t, nobody, syscall.EPERM, "rename", filepath.Join(s, "mine"), theirs)
		try(t, nobody, syscall.EPERM, "rmdir", filepath.Join(s, "theirdir"))
		wantOwner(t, theirs, 2002, 2002)
		// The file's owner, the directory's owner and root may.
		try(t, nobody, 0, "rename", filepath.Join(s, "mine"), filepath.Join(s, "mine2"))
		try(t, other, 0, "unlink", theirs)
		own := filepath.Join(d, "ownsticky")
		mkdirAs(t, own, 0o1777, uidNobody, uidNobody)
		try(t, other, 0, "create", filepath.Join(own, "x"), "644")
		try(t, nobody, 0, "unlink", filepath.Join(own, "x"))
		if err := os.Remove(filepath.Join(s, "mine2")); err != nil {
			t.Errorf("root unlink in a sticky directory: %v", err)
		}
		// Without the sticky bit anyone who may write the directory may.
		plain := filepath.Join(d, "plain")
		mkdirAs(t, plain, 0o777, 0, 0)
		try(t, other, 0, "create", filepath.Join(plain, "theirs"), "644")
		try(t, nobody, 0, "unlink", filepath.Join(plain, "theirs"))
	}},
	{"setgid directory", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		sg := filepath.Join(d, "sgid")
		mkdirAs(t, sg, 0o2777, 0, staffGid)
		try(t, other, 0, "create", filepath.Join(sg, "f"), "644")
		wantOwner(t, filepath.Join(sg, "f"), 2002, staffGid)
		try(t, other, 0, "mkdir", filepath.Join(sg, "sub"), "755")
		wantOwner(t, filepath.Join(sg, "sub"), 2002, staffGid)
		wantMode(t, filepath.Join(sg, "sub"), 0o2755)
		// Inherited again one level down.
		try(t, other, 0, "create", filepath.Join(sg, "sub", "g"), "644")
		wantOwner(t, filepath.Join(sg, "sub", "g"), 2002, staffGid)
		if err := os.WriteFile(filepath.Join(sg, "byroot"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		wantOwner(t, filepath.Join(sg, "byroot"), 0, staffGid)
		// A plain directory gives the creator's group.
		plain := filepath.Join(d, "plain")
		mkdirAs(t, plain, 0o777, 0, staffGid)
		try(t, other, 0, "create", filepath.Join(plain, "f"), "644")
		wantOwner(t, filepath.Join(plain, "f"), 2002, 2002)
		try(t, other, 0, "mkdir", filepath.Join(plain, "sub"), "755")
		wantMode(t, filepath.Join(plain, "sub"), 0o755)
	}},
	{"read and write bits", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		groupRead := filepath.Join(d, "group-read")
		mkfile(t, groupRead, "x", 0o640, 0, staffGid)
		try(t, nobody, 0, "open-read", groupRead)
		try(t, nobody, syscall.EACCES, "open-write", groupRead)
		try(t, nobody, syscall.EACCES, "open-trunc", groupRead)
		try(t, other, syscall.EACCES, "open-read", groupRead)
		// The first matching class decides: a group member gets the group
		// bits even where "other" would allow more.
		otherRead := filepath.Join(d, "other-read")
		mkfile(t, otherRead, "x", 0o604, 0, staffGid)
		try(t, nobody, syscall.EACCES, "open-read", otherRead)
		try(t, other, 0, "open-read", otherRead)
		ownerNone := filepath.Join(d, "owner-none")
		mkfile(t, ownerNone, "x", 0o077, uidNobody, uidNobody)
		try(t, nobody, syscall.EACCES, "open-read", ownerNone)
		try(t, other, 0, "open-read", ownerNone)
		writable := filepath.Join(d, "writable")
		mkfile(t, writable, "x", 0o622, 0, 0)
		try(t, nobody, 0, "open-write", writable)
		try(t, nobody, syscall.EACCES, "open-read", writable)
		// Root overrides the bits for reading and writing.
		none := filepath.Join(d, "none")
		mkfile(t, none, "secret", 0o000, uidNobody, uidNobody)
		if b, err := os.ReadFile(none); err != nil || string(b) != "secret" {
			t.Errorf("root read of a mode 000 file: %q, %v", b, err)
		}
		if f, err := os.OpenFile(none, os.O_WRONLY, 0); err != nil {
			t.Errorf("root open for writing of a mode 000 file: %v", err)
		} else {
			f.Close()
		}
		if b := readFile(t, groupRead); string(b) != "x" {
			t.Errorf("denied O_TRUNC changed the file: %q", b)
		}
	}},
	{"execute bit", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		ownerOnly := filepath.Join(d, "owner-only")
		mkfile(t, ownerOnly, shellScript, 0o744, 0, 0)
		try(t, nobody, syscall.EACCES, "exec", ownerOnly)
		everyone := filepath.Join(d, "everyone")
		mkfile(t, everyone, shellScript, 0o755, 0, 0)
		try(t, nobody, 0, "exec", everyone)
		groupOnly := filepath.Join(d, "group-only")
		mkfile(t, groupOnly, shellScript, 0o654, 0, staffGid)
		try(t, nobody, 0, "exec", groupOnly)
		try(t, other, syscall.EACCES, "exec", groupOnly)
		// Root needs at least one execute bit.
		noX := filepath.Join(d, "no-x")
		mkfile(t, noX, shellScript, 0o644, 0, 0)
		try(t, root, syscall.EACCES, "exec", noX)
		oneX := filepath.Join(d, "one-x")
		mkfile(t, oneX, shellScript, 0o601, uidNobody, uidNobody)
		try(t, root, 0, "exec", oneX)
	}},
	{"directory search and read bits", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		mk := func(name string, mode uint32) string {
			p := filepath.Join(d, name)
			mkdirAs(t, p, 0o755, 0, 0)
			mkfile(t, filepath.Join(p, "f"), "x", 0o644, 0, 0)
			if err := retryEINTR(func() error { return unix.Chmod(p, mode) }); err != nil {
				t.Fatal(err)
			}
			return p
		}
		private := mk("private", 0o700)
		try(t, nobody, syscall.EACCES, "stat", filepath.Join(private, "f"))
		try(t, nobody, syscall.EACCES, "open-read", filepath.Join(private, "f"))
		try(t, nobody, syscall.EACCES, "readdir", private)
		searchOnly := mk("search-only", 0o711)
		try(t, nobody, 0, "stat", filepath.Join(searchOnly, "f"))
		try(t, nobody, 0, "open-read", filepath.Join(searchOnly, "f"))
		try(t, nobody, syscall.EACCES, "readdir", searchOnly)
		listOnly := mk("list-only", 0o744)
		try(t, nobody, 0, "readdir", listOnly)
		try(t, nobody, syscall.EACCES, "stat", filepath.Join(listOnly, "f"))
		readOnly := mk("read-only", 0o755)
		try(t, nobody, syscall.EACCES, "create", filepath.Join(readOnly, "new"), "644")
		try(t, nobody, syscall.EACCES, "mkdir", filepath.Join(readOnly, "new"), "755")
		try(t, nobody, syscall.EACCES, "unlink", filepath.Join(readOnly, "f"))
		try(t, nobody, syscall.EACCES, "rename", filepath.Join(readOnly, "f"), filepath.Join(readOnly, "g"))
		writeSearch := mk("write-search", 0o773)
		try(t, nobody, 0, "create", filepath.Join(writeSearch, "new"), "644")
		try(t, nobody, syscall.EACCES, "readdir", writeSearch)
		// Root searches and lists without any bits.
		closed := mk("closed", 0o000)
		if _, err := os.ReadDir(closed); err != nil {
			t.Errorf("root readdir of a mode 000 directory: %v", err)
		}
		if _, err := os.Stat(filepath.Join(closed, "f")); err != nil {
			t.Errorf("root stat below a mode 000 directory: %v", err)
		}
	}},
	{"access(2)", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		private := filepath.Join(d, "private")
		mkfile(t, private, "x", 0o600, 0, 0)
		public := filepath.Join(d, "public")
		mkfile(t, public, "x", 0o644, 0, 0)
		script := filepath.Join(d, "script")
		mkfile(t, script, shellScript, 0o755, 0, 0)
		closedDir := filepath.Join(d, "closed")
		mkdirAs(t, closedDir, 0o700, 0, 0)
		try(t, nobody, syscall.EACCES, "access", private, "4")
		try(t, nobody, 0, "access", public, "4")
		try(t, nobody, syscall.EACCES, "access", public, "2")
		try(t, nobody, syscall.EACCES, "access", public, "1")
		try(t, nobody, 0, "access", script, "5")
		try(t, nobody, syscall.ENOENT, "access", filepath.Join(d, "missing"), "0")
		try(t, nobody, syscall.EACCES, "access", filepath.Join(closedDir, "f"), "0")
		none := filepath.Join(d, "none")
		mkfile(t, none, "x", 0o000, 0, 0)
		wantErrno(t, "root access(R_OK|W_OK) of mode 000", access(none, unix.R_OK|unix.W_OK))
		wantErrno(t, "root access(X_OK) of mode 644", access(public, unix.X_OK), syscall.EACCES)
		wantErrno(t, "root access(X_OK) of mode 755", access(script, unix.X_OK))
		if err := retryEINTR(func() error { return unix.Chmod(closedDir, 0) }); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "root access(X_OK) of a mode 000 directory", access(closedDir, unix.X_OK))
	}},
	{"utimensat permissions", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		writable := filepath.Join(d, "writable")
		mkfile(t, writable, "x", 0o666, 0, 0)
		try(t, nobody, 0, "utime-now", writable)
		try(t, nobody, syscall.EPERM, "utime-set", writable)
		readable := filepath.Join(d, "readable")
		mkfile(t, readable, "x", 0o644, 0, 0)
		try(t, nobody, syscall.EACCES, "utime-now", readable)
		own := filepath.Join(d, "own")
		mkfile(t, own, "x", 0o444, uidNobody, uidNobody)
		try(t, nobody, 0, "utime-set", own)
		if st := lstat(t, own); st.Mtim.Sec != 1e9 || st.Atim.Sec != 1e9 {
			t.Errorf("owner utimensat: atime %d mtime %d, want 1e9", st.Atim.Sec, st.Mtim.Sec)
		}
		try(t, nobody, 0, "utime-now", own)
		wantRecent(t, "mtime after UTIME_NOW", mtimeOf(lstat(t, own)))
	}},
}
