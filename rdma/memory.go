package rdma

import (
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// MapMemory returns size bytes of anonymous memory outside the Go heap,
// page aligned, for registration. The garbage collector never moves or
// frees it; UnmapMemory does.
func MapMemory(size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("rdma: map %d bytes: size must be positive", size)
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("rdma: map %d bytes: %w", size, err)
	}
	return b, nil
}

// UnmapMemory releases memory from MapMemory.
func UnmapMemory(b []byte) error {
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("rdma: unmap %d bytes: %w", len(b), err)
	}
	return nil
}

// MemlockError explains a registration of size bytes that failed with
// cause because of the lock limit: it names RLIMIT_MEMLOCK's value and how
// to raise it, and wraps both ErrMemlock and cause.
func MemlockError(size int, cause error) error {
	return fmt.Errorf("%w: registering %s failed (%w): RLIMIT_MEMLOCK is %s; raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in the service unit)",
		ErrMemlock, byteSize(int64(size)), cause, memlockLimit())
}

// CheckMemlock fails with a MemlockError when the lock limit is below need
// bytes, so a process learns at start rather than at its first large
// registration that RDMA cannot work.
func CheckMemlock(need int64) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return nil
	}
	if rl.Cur == unix.RLIM_INFINITY || rl.Cur >= uint64(need) {
		return nil
	}
	return MemlockError(int(need), fmt.Errorf("limit below the %s RDMA needs at least", byteSize(need)))
}

// memlockLimit describes the soft RLIMIT_MEMLOCK.
func memlockLimit() string {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return "unknown"
	}
	if rl.Cur == unix.RLIM_INFINITY || rl.Cur > math.MaxInt64 {
		return "unlimited"
	}
	return byteSize(int64(rl.Cur))
}

// byteSize formats n bytes in the largest binary unit that divides it.
func byteSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
