package oss

import (
	"os"
	"sync"
	"syscall"
)

// faultFS is the real file system with errors injected by path: each hook,
// if set, is asked before the operation and its non-nil error is returned
// instead of performing it.
type faultFS struct {
	osFS
	mu       sync.Mutex
	write    func(path string) error // WriteAt and Truncate
	datasync func(path string) error
	setxattr func(path string) error
}

func (fs *faultFS) hook(h *func(string) error, path string) error {
	fs.mu.Lock()
	f := *h
	fs.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(path)
}

func (fs *faultFS) set(h *func(string) error, f func(string) error) {
	fs.mu.Lock()
	*h = f
	fs.mu.Unlock()
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (vfile, error) {
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{vfile: f, fs: fs, path: name}, nil
}

func (fs *faultFS) Setxattr(path, attr string, value []byte) error {
	if err := fs.hook(&fs.setxattr, path); err != nil {
		return &os.PathError{Op: "setxattr", Path: path, Err: err}
	}
	return fs.osFS.Setxattr(path, attr, value)
}

type faultFile struct {
	vfile
	fs   *faultFS
	path string
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.hook(&f.fs.write, f.path); err != nil {
		return 0, &os.PathError{Op: "write", Path: f.path, Err: err}
	}
	return f.vfile.WriteAt(p, off)
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.fs.hook(&f.fs.write, f.path); err != nil {
		return &os.PathError{Op: "truncate", Path: f.path, Err: err}
	}
	return f.vfile.Truncate(size)
}

func (f *faultFile) Datasync() error {
	if err := f.fs.hook(&f.fs.datasync, f.path); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.path, Err: err}
	}
	return f.vfile.Datasync()
}

// always returns a hook that fails every call with errno.
func always(errno syscall.Errno) func(string) error {
	return func(string) error { return errno }
}
