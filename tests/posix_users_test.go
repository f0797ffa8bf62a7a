package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// usersCases check what a root mount owes every user of the node: the
// suite's first mount is strata up's default mount, made by root with no
// options, so these cases fail if it did not serve other users.
var usersCases = []posixCase{
	{"default root mount serves a user with no groups", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		home := filepath.Join(d, "home")
		mkdirAs(t, home, 0o755, uidNobody, uidNobody)
		lone := cred{uid: 65534, gid: 65534}
		f, g := filepath.Join(home, "f"), filepath.Join(home, "g")
		try(t, lone, 0, "create", f, "644")
		try(t, lone, 0, "write", f, "hello")
		if out, err := runAsOutput(t, lone, "cat", f); err != nil || out != "data:hello" {
			t.Errorf("nobody reads back %q, %v", out, err)
		}
		try(t, lone, 0, "rename", f, g)
		try(t, lone, 0, "readdir", home)
		try(t, lone, 0, "mkdir", filepath.Join(home, "sub"), "755")
		try(t, lone, 0, "rmdir", filepath.Join(home, "sub"))
		try(t, lone, 0, "unlink", g)
		wantMissing(t, g)

		// Refused where POSIX refuses.
		rootDir := filepath.Join(d, "rootonly")
		mkdirAs(t, rootDir, 0o755, 0, 0)
		rootFile := filepath.Join(rootDir, "r")
		mkfile(t, rootFile, "x", 0o644, 0, 0)
		try(t, lone, syscall.EACCES, "create", filepath.Join(rootDir, "n"), "644")
		try(t, lone, syscall.EACCES, "write", rootFile, "y")
		try(t, lone, syscall.EPERM, "chmod", rootFile, "666")
		try(t, lone, syscall.EACCES, "unlink", rootFile)
		try(t, lone, syscall.EACCES, "rename", rootFile, filepath.Join(home, "stolen"))
		sticky := filepath.Join(d, "sticky")
		mkdirAs(t, sticky, 0o1777, 0, 0)
		theirs := filepath.Join(sticky, "theirs")
		mkfile(t, theirs, "x", 0o666, uidOther, uidOther)
		try(t, lone, syscall.EPERM, "unlink", theirs)
	}},
	{"set-id bits cleared at write(2) as Linux does", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		lone := cred{uid: 65534, gid: 65534}
		cases := []struct {
			name     string
			mode     os.FileMode
			uid, gid int
			as       cred
			op, arg  string
			want     string
		}{
			{"non-owner write", 0o6777, 0, 0, lone, "write-mode", "y", "mode:777"},
			{"owner write of 04755", 0o4755, uidNobody, uidNobody, lone, "write-mode", "y", "mode:755"},
			{"02644 keeps sgid", 0o2644, uidNobody, uidNobody, lone, "write-mode", "y", "mode:2644"},
			{"ftruncate by non-root", 0o4755, uidNobody, uidNobody, lone, "ftruncate-mode", "1", "mode:755"},
			{"O_TRUNC open by non-root", 0o6755, uidNobody, uidNobody, lone, "open-trunc-mode", "", "mode:755"},
			{"root write keeps bits", 0o6755, uidNobody, uidNobody, root, "write-mode", "y", "mode:6755"},
			{"root ftruncate keeps bits", 0o4755, uidNobody, uidNobody, root, "ftruncate-mode", "0", "mode:4755"},
		}
		for _, c := range cases {
			f := filepath.Join(d, strings.ReplaceAll(c.name, " ", "_"))
			mkfile(t, f, "xyz", c.mode, c.uid, c.gid)
			args := []string{f, c.arg}
			if c.op == "open-trunc-mode" {
				args = args[:1]
			}
			out, err := runAsOutput(t, c.as, c.op, args...)
			if err != nil || out != c.want {
				t.Errorf("%s: fstat right after shows %q (%v), want %q", c.name, out, err, c.want)
			}
			// Closing changes nothing more, and another client sees it.
			want := strings.TrimPrefix(c.want, "mode:")
			if got := lstat(t, f).Mode & 0o7777; fmt.Sprintf("%o", got) != want {
				t.Errorf("%s: mode after close %o, want %s", c.name, got, want)
			}
		}
	}},
	{"noallow_other mount refuses other users", func(t *testing.T, e *posixEnv) {
		private := filepath.Join(e.dir, "private")
		mustStrata(t, "mount", "-o", "noallow_other", "--config", filepath.Join(e.dir, "client.yaml"), private)
		defer umountAt(t, private)
		try(t, nobody, syscall.EACCES, "stat", private)
		if _, err := os.Stat(filepath.Join(private, ".")); err != nil {
			t.Errorf("root cannot use its own noallow_other mount: %v", err)
		}
		// The same through the config file key.
		cfg := filepath.Join(e.dir, "private.yaml")
		base, err := os.ReadFile(filepath.Join(e.dir, "client.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, append(base, []byte("allow-other: false\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		keyed := filepath.Join(e.dir, "keyed")
		mustStrata(t, "mount", "--config", cfg, keyed)
		defer umountAt(t, keyed)
		try(t, nobody, syscall.EACCES, "stat", keyed)
	}},
	{"mount creates a missing mount point", func(t *testing.T, e *posixEnv) {
		mnt := filepath.Join(e.dir, "not", "there", "yet")
		mustStrata(t, "mount", "--config", filepath.Join(e.dir, "client.yaml"), mnt)
		defer umountAt(t, mnt)
		if !isMountPoint(mnt) {
			t.Fatalf("%s is not a mount point after strata mount", mnt)
		}
	}},
	{"mount failures say why in one line", func(t *testing.T, e *posixEnv) {
		file := filepath.Join(e.dir, "a-file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runStrataAs(t, root, "mount", "--config", filepath.Join(e.dir, "client.yaml"), file)
		wantOneLineFailure(t, err, stderr, "strata: mount: "+file+": ", "not a directory")
		_, stderr, err = runStrataAs(t, root, "mount", "--config", filepath.Join(e.dir, "client.yaml"), e.mnt)
		wantOneLineFailure(t, err, stderr, "strata: mount: "+e.mnt+": ", "already mounted")
	}},
	{"a non-root user mounts", func(t *testing.T, e *posixEnv) {
		u := cred{uid: 65534, gid: 65534}
		home := filepath.Join(e.dir, "nobody-home")
		if err := os.Mkdir(home, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(home, uidNobody, uidNobody); err != nil {
			t.Fatal(err)
		}
		// nobody's copy of the secret and a client file naming it.
		secret, err := os.ReadFile(filepath.Join(e.dir, "secret"))
		if err != nil {
			t.Fatal(err)
		}
		sf, cfg := filepath.Join(home, "secret"), filepath.Join(home, "client.yaml")
		base, err := os.ReadFile(filepath.Join(e.dir, "client.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.ReplaceAll(string(base), filepath.Join(e.dir, "secret"), sf)
		for p, b := range map[string][]byte{sf: secret, cfg: []byte(conf)} {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, uidNobody, uidNobody); err != nil {
				t.Fatal(err)
			}
		}
		mnt := filepath.Join(home, "mnt")
		_, stderr, err := runStrataAs(t, u, "mount", "--config", cfg, "--log-file", filepath.Join(home, "mount.log"), mnt)
		if err != nil {
			t.Fatalf("mount by nobody: %v: %s", err, stderr)
		}
		defer func() {
			if _, stderr, err := runStrataAs(t, u, "umount", mnt); err != nil {
				t.Errorf("umount by nobody: %v: %s", err, stderr)
				_ = exec.Command("fusermount3", "-uz", mnt).Run()
			}
		}()
		if !strings.Contains(stderr, "without allow_other") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("a private mount should warn in one line; stderr %q", stderr)
		}
		d, _ := e.workDir(t)
		mine := filepath.Join(mnt, filepath.Base(d), "mine")
		try(t, u, 0, "create", mine, "644")
		try(t, u, 0, "write", mine, "from a user mount")
		if b := readFile(t, filepath.Join(d, "mine")); string(b) != "from a user mount" {
			t.Errorf("the root mount reads %q", b)
		}
		if _, err := os.Stat(mnt + "/."); !os.IsPermission(err) {
			t.Errorf("root entering nobody's private mount: %v, want EACCES", err)
		}
		// allow_other is refused to a user, with the reason.
		if userAllowOtherConfigured() {
			t.Skip("/etc/fuse.conf has user_allow_other: cannot check the refusal")
		}
		_, stderr, err = runStrataAs(t, u, "mount", "-o", "allow_other", "--config", cfg, filepath.Join(home, "shared"))
		wantOneLineFailure(t, err, stderr, "strata: mount: ", "user_allow_other")
	}},
}

// umountAt unmounts a mount a case made.
func umountAt(t *testing.T, mnt string) {
	t.Helper()
	if _, err := strata(t, "umount", mnt); err != nil {
		t.Errorf("umount %s: %v", mnt, err)
		_ = exec.Command("fusermount3", "-uz", mnt).Run()
	}
}

// wantOneLineFailure checks a failed command's stderr: exactly one line,
// starting with prefix and saying reason.
func wantOneLineFailure(t *testing.T, err error, stderr, prefix, reason string) {
	t.Helper()
	line := strings.TrimSpace(stderr)
	switch {
	case err == nil:
		t.Errorf("succeeded, want a failure saying %q", reason)
	case strings.Contains(line, "\n"):
		t.Errorf("stderr has several lines: %q", line)
	case !strings.HasPrefix(line, prefix) || !strings.Contains(line, reason):
		t.Errorf("stderr %q, want %q... saying %q", line, prefix, reason)
	case strings.Contains(line, "exited with code"):
		t.Errorf("stderr %q gives an exit code, not a reason", line)
	}
}

// userAllowOtherConfigured reports whether fuse.conf lets users mount with
// allow_other.
func userAllowOtherConfigured() bool {
	b, _ := os.ReadFile("/etc/fuse.conf")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "user_allow_other" {
			return true
		}
	}
	return false
}

// userStrata is the strata binary copied where every user may run it.
var userStrata struct {
	once sync.Once
	path string
	err  error
}

// runStrataAs runs the strata binary as u and returns its stdout, stderr
// and exit error.
func runStrataAs(t *testing.T, u cred, args ...string) (string, string, error) {
	t.Helper()
	userStrata.once.Do(func() {
		dir := filepath.Dir(helperBin(t))
		userStrata.path = filepath.Join(dir, "strata")
		userStrata.err = copyFile(strataBin, userStrata.path, 0o755)
	})
	if userStrata.err != nil {
		t.Fatalf("copy strata for other users: %v", userStrata.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, userStrata.path, args...)
	cmd.Dir = "/"
	if u.uid != 0 || u.gid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
