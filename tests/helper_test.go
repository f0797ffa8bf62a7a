package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a helper process: run with $STRATA_TEST_HELPER
// set it does one small job instead of running tests, so a test can act as
// another user (exec.Cmd's Credential) or as another process holding locks.
// "op" performs one system call named by its arguments and prints "ok" or
// the errno's name; "locker" serves lock commands read from stdin
// (locker_test.go).
const helperEnv = "STRATA_TEST_HELPER"

// runHelper is TestMain's branch for helper mode.
func runHelper(mode string, args []string) int {
	switch mode {
	case "op":
		return runOp(args)
	case "locker":
		return runLocker(os.Stdin, os.Stdout)
	}
	fmt.Fprintf(os.Stderr, "%s: unknown helper mode %q\n", helperEnv, mode)
	return 2
}

// cred is an identity a helper runs as.
type cred struct {
	uid, gid uint32
	groups   []uint32
}

// The unprivileged identities of the permission tests. nobody is also a
// member of group staff, which no one else is in.
const staffGid = 4242

var (
	nobody = cred{uid: 65534, gid: 65534, groups: []uint32{65534, staffGid}}
	other  = cred{uid: 2002, gid: 2002, groups: []uint32{2002}}
	root   = cred{}
)

// helper is the test binary, copied where every user may execute it: go
// test builds it in a directory only its owner can enter.
var helper struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func helperBin(t *testing.T) string {
	t.Helper()
	helper.once.Do(func() {
		self, err := os.Executable()
		if err != nil {
			helper.err = err
			return
		}
		if helper.dir, helper.err = os.MkdirTemp("", "strata-helper-"); helper.err != nil {
			return
		}
		if helper.err = os.Chmod(helper.dir, 0o755); helper.err != nil {
			return
		}
		helper.path = filepath.Join(helper.dir, "tests.test")
		helper.err = copyFile(self, helper.path, 0o755)
	})
	if helper.err != nil {
		t.Fatalf("helper binary: %v", helper.err)
	}
	return helper.path
}

// removeHelperBin removes the copy made by helperBin, at the end of the run.
func removeHelperBin() {
	if helper.dir != "" {
		os.RemoveAll(helper.dir)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// helperCmd is a command running the helper binary in mode as u.
func helperCmd(t *testing.T, ctx context.Context, u cred, mode string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, helperBin(t), args...)
	// No preemption signals: they could interrupt the helper's calls on
	// the mount (see retryEINTR).
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GODEBUG=asyncpreemptoff=1")
	cmd.Dir = "/"
	if u.uid != 0 || u.gid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	}
	return cmd
}

// runAs performs one operation as u in a helper process and returns nil or
// the syscall.Errno it failed with.
func runAs(t *testing.T, u cred, op string, args ...string) error {
	t.Helper()
	_, err := runAsOutput(t, u, op, args...)
	return err
}

// runAsOutput is runAs for an operation that reports something (such as
// "mode:4755"): it returns what the helper printed before its status line.
func runAsOutput(t *testing.T, u cred, op string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := helperCmd(t, ctx, u, "op", append([]string{op}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	res := lines[len(lines)-1]
	report := strings.Join(lines[:len(lines)-1], "\n")
	if err != nil {
		t.Fatalf("helper %s %v as uid %d: %v: %s %s", op, args, u.uid, err, out, stderr.String())
	}
	if res == "ok" {
		return report, nil
	}
	if e, ok := errnoByName(res); ok {
		return report, e
	}
	t.Fatalf("helper %s %v as uid %d printed %q (stderr %q)", op, args, u.uid, out, stderr.String())
	return "", nil
}

// errnoByName maps "EACCES" back to syscall.EACCES.
func errnoByName(name string) (syscall.Errno, bool) {
	for e := syscall.Errno(1); e < 256; e++ {
		if unix.ErrnoName(e) == name {
			return e, true
		}
	}
	return 0, false
}

// errName is the errno's name for replies and messages.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}

// runOp is the "op" helper: args are an operation and its operands.
func runOp(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "op: no operation")
		return 2
	}
	err := doOp(args[0], args[1:])
	if _, ok := err.(syscall.Errno); err != nil && !ok {
		fmt.Fprintf(os.Stderr, "op %s: %v\n", args[0], err)
		return 2
	}
	fmt.Println(errName(err))
	return 0
}

func doOp(op string, a []string) error {
	want := map[string]int{
		"open-read": 1, "open-write": 1, "open-trunc": 1, "create": 2, "write": 2, "exec": 1,
		"chmod": 2, "chown": 3, "unlink": 1, "rmdir": 1, "mkdir": 2, "rename": 2, "mknod-chr": 1,
		"readdir": 1, "stat": 1, "access": 2, "utime-now": 1, "utime-set": 1, "truncate": 2,
		"write-mode": 2, "ftruncate-mode": 2, "open-trunc-mode": 1, "cat": 1,
	}
	n, ok := want[op]
	if !ok {
		return fmt.Errorf("unknown operation %q", op)
	}
	if len(a) != n {
		return fmt.Errorf("%s takes %d operands, got %d", op, n, len(a))
	}
	num := func(s string, base int) (int, error) {
		v, err := strconv.ParseInt(s, base, 64)
		return int(v), err
	}
	switch op {
	case "open-read":
		return openClose(a[0], unix.O_RDONLY, 0)
	case "open-write":
		return openClose(a[0], unix.O_WRONLY, 0)
	case "open-trunc":
		return openClose(a[0], unix.O_WRONLY|unix.O_TRUNC, 0)
	case "create":
		mode, err := num(a[1], 8)
		if err != nil {
			return err
		}
		return openClose(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(mode))
	case "write":
		fd, err := unix.Open(a[0], unix.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, []byte(a[1])); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Close(fd)
	case "exec":
		// On success the program runs in this process and prints its own
		// "ok"; only a failed exec reaches the return.
		return unix.Exec(a[0], []string{a[0]}, []string{"PATH=/usr/bin:/bin"})
	case "chmod":
		mode, err := num(a[1], 8)
		if err != nil {
			return err
		}
		return unix.Chmod(a[0], uint32(mode))
	case "chown":
		uid, err := num(a[1], 10)
		if err != nil {
			return err
		}
		gid, err := num(a[2], 10)
		if err != nil {
			return err
		}
		return unix.Lchown(a[0], uid, gid)
	case "unlink":
		return unix.Unlink(a[0])
	case "rmdir":
		return unix.Rmdir(a[0])
	case "mkdir":
		mode, err := num(a[1], 8)
		if err != nil {
			return err
		}
		return unix.Mkdir(a[0], uint32(mode))
	case "rename":
		return unix.Rename(a[0], a[1])
	case "mknod-chr":
		return unix.Mknod(a[0], unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	case "readdir":
		fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.ReadDirent(fd, make([]byte, 8192))
		return err
	case "stat":
		var st unix.Stat_t
		return unix.Lstat(a[0], &st)
	case "access":
		mode, err := num(a[1], 10)
		if err != nil {
			return err
		}
		return unix.Access(a[0], uint32(mode))
	case "utime-now":
		return unix.UtimesNanoAt(unix.AT_FDCWD, a[0], []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}, 0)
	case "utime-set":
		return unix.UtimesNanoAt(unix.AT_FDCWD, a[0], []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}, 0)
	case "truncate":
		size, err := num(a[1], 10)
		if err != nil {
			return err
		}
		return unix.Truncate(a[0], int64(size))
	case "write-mode", "ftruncate-mode", "open-trunc-mode":
		return modeAfter(op, a)
	case "cat":
		b, err := os.ReadFile(a[0])
		if err != nil {
			return err
		}
		fmt.Printf("data:%s\n", b)
		return nil
	}
	return fmt.Errorf("operation %q not implemented", op)
}

// modeAfter writes a[1] to a[0], truncates it to a[1] bytes, or opens it
// with O_TRUNC, and prints the mode fstat reports right after, before the
// descriptor is closed: "mode:4755".
func modeAfter(op string, a []string) error {
	flags := unix.O_WRONLY
	if op == "open-trunc-mode" {
		flags |= unix.O_TRUNC
	}
	fd, err := unix.Open(a[0], flags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	switch op {
	case "write-mode":
		_, err = unix.Write(fd, []byte(a[1]))
	case "ftruncate-mode":
		var size int64
		if size, err = strconv.ParseInt(a[1], 10, 64); err == nil {
			err = unix.Ftruncate(fd, size)
		}
	}
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	fmt.Printf("mode:%o\n", st.Mode&0o7777)
	return nil
}

func openClose(path string, flags int, mode uint32) error {
	fd, err := unix.Open(path, flags, mode)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}
