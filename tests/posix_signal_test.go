package tests

import (
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var signalCases = []posixCase{
	// A signal whose handler has SA_RESTART (every signal the Go runtime
	// handles, SIGURG among them) must not make stat, mknod, rename or
	// unlink fail with EINTR: POSIX lists no EINTR for them, and local
	// filesystems never return it. Over FUSE the kernel forwards the signal
	// to the daemon as an interrupt of the request in flight; a daemon that
	// answers a quick request with EINTR breaks programs that use timers or
	// signals, Go programs included.
	{"no EINTR from quick calls under SA_RESTART signals", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		const rounds = 300
		type result struct {
			eintr map[string]int
			err   error
		}
		tid := make(chan int, 1)
		stop := make(chan struct{})
		defer close(stop)
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid <- unix.Gettid()
			res := result{eintr: map[string]int{}}
			defer func() { done <- res }()
			count := func(op string, err error) bool {
				if err == syscall.EINTR {
					res.eintr[op]++
					return true
				}
				if err != nil && res.err == nil {
					res.err = fmt.Errorf("%s: %w", op, err)
				}
				return false
			}
			var st unix.Stat_t
			for i := 0; i < rounds; i++ {
				a := filepath.Join(d, fmt.Sprint("a", i))
				b := filepath.Join(d, fmt.Sprint("b", i))
				if count("mknod", unix.Mknod(a, unix.S_IFREG|0o644, 0)) {
					continue
				}
				count("stat", unix.Lstat(a, &st))
				if count("rename", unix.Rename(a, b)) {
					continue
				}
				count("stat", unix.Lstat(b, &st))
				count("unlink", unix.Unlink(b))
			}
		}()
		self, thread := unix.Getpid(), <-tid
		go func() {
			tick := time.NewTicker(200 * time.Microsecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					// SIGURG: the Go runtime handles it, with SA_RESTART,
					// and ignores it outside preemption.
					_ = unix.Tgkill(self, thread, syscall.SIGURG)
				}
			}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%d rounds of namespace calls did not finish in 60s", rounds)
		}
		if len(res.eintr) > 0 {
			t.Errorf("calls failed with EINTR under SIGURG (SA_RESTART) every 200µs: %v", res.eintr)
		}
		if res.err != nil {
			t.Errorf("unexpected error: %v", res.err)
		}
	}},
}
