package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The locker helper holds files open and takes locks when told to, so a
// test controls the timing of lock requests from several processes on
// several mounts. It reads one command a line from stdin and answers each
// with one line on stdout; its first line is "ready PID".
//
//	open SLOT PATH               open (O_RDWR|O_CREAT) PATH as fd SLOT
//	close SLOT                   close fd SLOT
//	setlk SLOT r|w|u START LEN   fcntl(F_SETLK)
//	setlkw SLOT r|w|u START LEN  fcntl(F_SETLKW); no answer while it blocks
//	setlkw-intr SLOT r|w START LEN
//	                             F_SETLKW while SIGUSR1 (a handler without
//	                             SA_RESTART) hits the blocked thread every
//	                             250 ms from 500 ms on
//	getlk SLOT r|w START LEN     fcntl(F_GETLK): "unlck" or "lock T START LEN PID"
//	flock SLOT ex|sh|un [nb]     flock(2)
//
// Answers are "ok", an errno name such as "EAGAIN", or getlk's report.

// runLocker is the helper side.
func runLocker(in io.Reader, out io.Writer) int {
	// One thread makes every lock call, so the interrupting signal can be
	// aimed at it.
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1)
	go func() {
		for range sigs {
		}
	}()
	if err := clearSARestart(syscall.SIGUSR1); err != nil {
		fmt.Fprintln(os.Stderr, "locker: sigaction:", err)
		return 2
	}
	fds := map[string]int{}
	fmt.Fprintf(out, "ready %d\n", os.Getpid())
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		reply, err := lockerCommand(fds, f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "locker: %q: %v\n", sc.Text(), err)
			return 2
		}
		fmt.Fprintln(out, reply)
	}
	return 0
}

// clearSARestart re-installs the Go runtime's handler of sig without
// SA_RESTART, so a blocking system call that the signal interrupts returns
// EINTR instead of being restarted by the kernel.
func clearSARestart(sig syscall.Signal) error {
	// The kernel's struct sigaction on amd64 and arm64.
	type sigaction struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	}
	const saRestart = 0x10000000
	var sa sigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&sa)), 8, 0, 0); e != 0 {
		return e
	}
	sa.flags &^= saRestart
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0); e != 0 {
		return e
	}
	return nil
}

func lockerCommand(fds map[string]int, f []string) (string, error) {
	argc := map[string]int{"open": 3, "close": 2, "setlk": 5, "setlkw": 5, "setlkw-intr": 5, "getlk": 5, "flock": 3}
	n, ok := argc[f[0]]
	if !ok || (len(f) != n && !(f[0] == "flock" && len(f) == 4)) {
		return "", fmt.Errorf("bad command")
	}
	if f[0] == "open" {
		fd, err := unix.Open(f[2], unix.O_RDWR|unix.O_CREAT, 0o666)
		if err == nil {
			fds[f[1]] = fd
		}
		return errName(err), nil
	}
	fd, ok := fds[f[1]]
	if !ok {
		return "", fmt.Errorf("no fd %s", f[1])
	}
	switch f[0] {
	case "close":
		delete(fds, f[1])
		return errName(unix.Close(fd)), nil
	case "flock":
		how := map[string]int{"ex": unix.LOCK_EX, "sh": unix.LOCK_SH, "un": unix.LOCK_UN}[f[2]]
		if how == 0 {
			return "", fmt.Errorf("bad flock mode %q", f[2])
		}
		if len(f) == 4 {
			how |= unix.LOCK_NB
		}
		return errName(unix.Flock(fd, how)), nil
	}
	lk, err := parseLock(f[2], f[3], f[4])
	if err != nil {
		return "", err
	}
	switch f[0] {
	case "setlk":
		return errName(unix.FcntlFlock(uintptr(fd), unix.F_SETLK, lk)), nil
	case "setlkw":
		return errName(unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, lk)), nil
	case "setlkw-intr":
		return errName(interruptedSetlkw(fd, lk)), nil
	default: // getlk
		if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, lk); err != nil {
			return errName(err), nil
		}
		if lk.Type == unix.F_UNLCK {
			return "unlck", nil
		}
		typ := map[int16]string{unix.F_RDLCK: "r", unix.F_WRLCK: "w"}[lk.Type]
		return fmt.Sprintf("lock %s %d %d %d", typ, lk.Start, lk.Len, lk.Pid), nil
	}
}

func parseLock(typ, start, length string) (*unix.Flock_t, error) {
	t, ok := map[string]int16{"r": unix.F_RDLCK, "w": unix.F_WRLCK, "u": unix.F_UNLCK}[typ]
	if !ok {
		return nil, fmt.Errorf("bad lock type %q", typ)
	}
	s, err := strconv.ParseInt(start, 10, 64)
	if err != nil {
		return nil, err
	}
	l, err := strconv.ParseInt(length, 10, 64)
	if err != nil {
		return nil, err
	}
	return &unix.Flock_t{Type: t, Whence: io.SeekStart, Start: s, Len: l}, nil
}

// interruptedSetlkw blocks in F_SETLKW while another goroutine signals this
// thread until the call returns: a signal that lands before the call is
// entered is harmless, the next one interrupts it.
func interruptedSetlkw(fd int, lk *unix.Flock_t) error {
	pid, tid := unix.Getpid(), unix.Gettid()
	done := make(chan struct{})
	go func() {
		time.Sleep(500 * time.Millisecond)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = unix.Tgkill(pid, tid, syscall.SIGUSR1)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, lk)
	close(done)
	return err
}

// locker is the test's handle on one locker helper process.
type locker struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan string
	pid     int
}

// startLocker starts a locker helper as root.
func startLocker(t *testing.T, name string) *locker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &locker{t: t, name: name, replies: make(chan string, 16)}
	l.cmd = helperCmd(t, ctx, root, "locker")
	l.cmd.Stderr = os.Stderr
	var err error
	if l.in, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l.replies <- sc.Text()
		}
		close(l.replies)
	}()
	t.Cleanup(func() {
		cancel() // kills the helper if it is still running
		_ = l.cmd.Wait()
	})
	ready, ok := l.reply(30 * time.Second)
	if !ok || !strings.HasPrefix(ready, "ready ") {
		t.Fatalf("locker %s did not start: %q", name, ready)
	}
	l.pid, _ = strconv.Atoi(strings.TrimPrefix(ready, "ready "))
	return l
}

// send writes one command without waiting for its answer.
func (l *locker) send(command string) {
	l.t.Helper()
	if _, err := io.WriteString(l.in, command+"\n"); err != nil {
		l.t.Fatalf("locker %s: %s: %v", l.name, command, err)
	}
}

// reply waits up to timeout for the next answer; ok is false if none came.
func (l *locker) reply(timeout time.Duration) (r string, ok bool) {
	select {
	case r, open := <-l.replies:
		if !open {
			return "(helper exited)", true
		}
		return r, true
	case <-time.After(timeout):
		return "", false
	}
}

// do sends a command and returns its answer, which must come within 20 s.
func (l *locker) do(command string) string {
	l.t.Helper()
	l.send(command)
	r, ok := l.reply(20 * time.Second)
	if !ok {
		l.t.Fatalf("locker %s: no answer to %q within 20s", l.name, command)
	}
	return r
}

// want sends a command and fails the test unless it answers want.
func (l *locker) want(command, want string) {
	l.t.Helper()
	if got := l.do(command); got != want {
		l.t.Fatalf("locker %s (%s): %q = %q, want %q", l.name, l.where(), command, got, want)
	}
}

// wantBlocked checks that the last command has not been answered for d.
func (l *locker) wantBlocked(command string, d time.Duration) {
	l.t.Helper()
	if r, ok := l.reply(d); ok {
		l.t.Fatalf("locker %s: %q answered %q at once, want it to block", l.name, command, r)
	}
}

// where names the process for messages.
func (l *locker) where() string { return "pid " + strconv.Itoa(l.pid) }

// kill ends the helper with SIGKILL and waits for it.
func (l *locker) kill() {
	l.t.Helper()
	if err := l.cmd.Process.Kill(); err != nil {
		l.t.Fatalf("kill locker %s: %v", l.name, err)
	}
	_ = l.cmd.Wait()
}
