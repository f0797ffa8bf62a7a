package oss

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// vfs is the narrow slice of the local file system an OST's object store
// uses. The server always runs on osFS; tests substitute an implementation
// that injects I/O errors (ENOSPC, EIO) so the error paths are exercised by
// injection rather than by hoping for a full disk.
type vfs interface {
	// OpenFile opens name as os.OpenFile does.
	OpenFile(name string, flag int, perm os.FileMode) (vfile, error)
	// Mkdir creates one directory as os.Mkdir does.
	Mkdir(name string, perm os.FileMode) error
	// Remove removes name as os.Remove does.
	Remove(name string) error
	// Rename renames oldpath to newpath as os.Rename does.
	Rename(oldpath, newpath string) error
	// Setxattr sets an extended attribute on the file at path.
	Setxattr(path, attr string, value []byte) error
	// Getxattr returns an extended attribute of the file at path; a
	// missing attribute is an error wrapping ENODATA.
	Getxattr(path, attr string) ([]byte, error)
	// BootID names the life of the storage below: it changes whenever
	// data written but not synced may have been lost (the host rebooted),
	// and not when only the server process restarted.
	BootID() string
	// Statfs reports the usage of the file system holding path.
	Statfs(path string, st *syscall.Statfs_t) error
	// SyncDir makes the entries of directory dir durable (fsync).
	SyncDir(dir string) error
}

// vfile is an open object file.
type vfile interface {
	io.ReaderAt
	io.WriterAt
	// Truncate changes the file's size, as ftruncate(2).
	Truncate(size int64) error
	// Fallocate allocates, punches or zeroes a range, as fallocate(2)
	// with mode (unix.FALLOC_FL_* flags).
	Fallocate(mode uint32, off, length int64) error
	// Datasync makes the file's data durable, as fdatasync(2).
	Datasync() error
	// Sync makes the file's data and metadata (size, xattrs) durable, as
	// fsync(2).
	Sync() error
	// Stat returns the file's attributes; Sys() is a *syscall.Stat_t on
	// the real file system.
	Stat() (os.FileInfo, error)
	// Close closes the file.
	Close() error
}

// osFS is the real file system.
type osFS struct{}

var _ vfs = osFS{}

// OpenFile implements vfs.
func (osFS) OpenFile(name string, flag int, perm os.FileMode) (vfile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Mkdir implements vfs.
func (osFS) Mkdir(name string, perm os.FileMode) error { return os.Mkdir(name, perm) }

// Remove implements vfs.
func (osFS) Remove(name string) error { return os.Remove(name) }

// Rename implements vfs.
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Setxattr implements vfs.
func (osFS) Setxattr(path, attr string, value []byte) error {
	if err := syscall.Setxattr(path, attr, value, 0); err != nil {
		return &os.PathError{Op: "setxattr", Path: path, Err: err}
	}
	return nil
}

// Getxattr implements vfs.
func (osFS) Getxattr(path, attr string) ([]byte, error) {
	buf := make([]byte, 64)
	for {
		n, err := syscall.Getxattr(path, attr, buf)
		if errors.Is(err, syscall.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr", Path: path, Err: err}
		}
		return buf[:n], nil
	}
}

// BootID implements vfs: the kernel's boot id, which a process restart
// keeps (the page cache survives it) and a reboot changes.
func (osFS) BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// Statfs implements vfs.
func (osFS) Statfs(path string, st *syscall.Statfs_t) error {
	if err := syscall.Statfs(path, st); err != nil {
		return &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return nil
}

// SyncDir implements vfs.
func (osFS) SyncDir(dir string) error { return syncDir(dir) }

// syncDir fsyncs a directory so that entries created or renamed in it
// survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// osFile is an *os.File with fdatasync and fallocate.
type osFile struct{ *os.File }

// Fallocate implements vfile.
func (f osFile) Fallocate(mode uint32, off, length int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fallocate(int(fd), mode, off, length)
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: serr}
	}
	return nil
}

var _ vfile = osFile{}

// Datasync implements vfile. It goes through SyscallConn rather than Fd so
// the file is not switched to blocking mode behind the runtime's back.
func (f osFile) Datasync() error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
