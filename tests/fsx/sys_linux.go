package fsx

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

var pageSize = int64(os.Getpagesize())

// retry repeats a call that failed with EINTR. Every call retried here is
// idempotent (positioned I/O, fstat, ftruncate, fallocate, fsync); the Go
// runtime's preemption signals can interrupt calls on a FUSE mount.
func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func openRetry(path string, flags int, mode uint32) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Open(path, flags|unix.O_CLOEXEC, mode)
		return err
	})
	return fd, err
}

// preadFull reads into buf at off until it is full or the file ends.
func preadFull(fd int, buf []byte, off int64) (int, error) {
	done := 0
	for done < len(buf) {
		var n int
		err := retry(func() (err error) {
			n, err = unix.Pread(fd, buf[done:], off+int64(done))
			return err
		})
		if err != nil {
			return done, err
		}
		if n == 0 {
			break
		}
		done += n
	}
	return done, nil
}

// pwriteFull writes all of p at off.
func pwriteFull(fd int, p []byte, off int64) error {
	done := 0
	for done < len(p) {
		var n int
		err := retry(func() (err error) {
			n, err = unix.Pwrite(fd, p[done:], off+int64(done))
			return err
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("pwrite wrote nothing at %#x", off+int64(done))
		}
		done += n
	}
	return nil
}

// mapRange maps the pages holding [off, off+n) of fd and returns the
// mapping and where off lies in it.
func mapRange(fd int, off, n int64, prot int) ([]byte, int64, error) {
	pg := off &^ (pageSize - 1)
	m, err := unix.Mmap(fd, pg, int(off+n-pg), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, 0, fmt.Errorf("mmap %#x +%#x: %w", pg, off+n-pg, err)
	}
	return m, off - pg, nil
}

// faultSafe runs f, turning a SIGBUS or SIGSEGV from touching a mapping
// (the filesystem failing to supply a page inside the file) into an error
// instead of a crash of the test binary.
func faultSafe(what string, f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: fault touching the mapping: %v", what, r)
		}
	}()
	f()
	return nil
}

// mapRead copies [off, off+n) out of a shared mapping of fd.
func mapRead(fd int, off, n int64) ([]byte, error) {
	m, at, err := mapRange(fd, off, n, unix.PROT_READ)
	if err != nil {
		return nil, err
	}
	got := make([]byte, n)
	ferr := faultSafe("mapped read", func() { copy(got, m[at:at+n]) })
	if err := unix.Munmap(m); err != nil && ferr == nil {
		ferr = fmt.Errorf("munmap: %w", err)
	}
	return got, ferr
}

// mapWrite stores p at off through a shared mapping of fd and makes it
// reach the file with msync(MS_SYNC) before unmapping.
func mapWrite(fd int, off int64, p []byte) error {
	m, at, err := mapRange(fd, off, int64(len(p)), unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		return err
	}
	ferr := faultSafe("mapped write", func() { copy(m[at:], p) })
	if ferr == nil {
		if err := retry(func() error { return unix.Msync(m, unix.MS_SYNC) }); err != nil {
			ferr = fmt.Errorf("msync: %w", err)
		}
	}
	if err := unix.Munmap(m); err != nil && ferr == nil {
		ferr = fmt.Errorf("munmap: %w", err)
	}
	return ferr
}
