package rdma

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMemlockError(t *testing.T) {
	err := MemlockError(1<<20, syscall.ENOMEM)
	if !errors.Is(err, ErrMemlock) || !errors.Is(err, syscall.ENOMEM) {
		t.Fatalf("%v does not wrap ErrMemlock and ENOMEM", err)
	}
	for _, want := range []string{"1 MiB", "RLIMIT_MEMLOCK is ", "ulimit -l"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestCheckMemlock(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		t.Skip(err)
	}
	if err := CheckMemlock(1); err != nil {
		t.Fatalf("one byte: %v", err)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		t.Skip("RLIMIT_MEMLOCK is unlimited here")
	}
	if err := CheckMemlock(int64(rl.Cur) + 1); !errors.Is(err, ErrMemlock) {
		t.Fatalf("above the limit: %v, want ErrMemlock", err)
	}
}

func TestMapMemory(t *testing.T) {
	b, err := MapMemory(10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 10000 {
		t.Fatalf("len %d", len(b))
	}
	b[9999] = 1
	if err := UnmapMemory(b); err != nil {
		t.Fatal(err)
	}
	if _, err := MapMemory(0); err == nil {
		t.Fatal("mapped zero bytes")
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{8 << 20: "8 MiB", 4096: "4 KiB", 1 << 30: "1 GiB", 1000: "1000 bytes", 3<<20 + 1: "3145729 bytes"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
