package oss

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// crashFS is the real file system with a simulated power loss (pebble's
// strict file system, in spirit): it remembers what the last fdatasync or
// fsync of each file and the last fsync of each directory made durable, and
// Crash puts the tree back to exactly that, dropping every write, create,
// remove and rename not yet synced. Its BootID changes with each Crash, as
// a host's does with each reboot. Extended attributes are taken as durable
// when set (the object code syncs after the one it must keep).
type crashFS struct {
	osFS
	mu    sync.Mutex
	boots int
	files map[string]*crashState     // files touched since the last Crash
	dirs  map[string]map[string]bool // directory -> durable entry names
	gone  map[string]*crashState     // removed files whose removal is not durable
}

// crashState is what a file durably holds: its contents at the last sync
// (durable false: never synced since created, so nothing of it is).
type crashState struct {
	durable bool
	data    []byte
}

func newCrashFS() *crashFS {
	return &crashFS{files: map[string]*crashState{}, dirs: map[string]map[string]bool{}, gone: map[string]*crashState{}}
}

// BootID implements vfs: it changes with every simulated crash.
func (fs *crashFS) BootID() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fmt.Sprintf("crashfs-boot-%d", fs.boots)
}

// watchDir records dir's entries as durable the first time it is touched:
// what existed before the test's writes is on disk.
func (fs *crashFS) watchDir(dir string) {
	if _, ok := fs.dirs[dir]; ok {
		return
	}
	names := map[string]bool{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			names[e.Name()] = true
		}
	}
	fs.dirs[dir] = names
}

// watchFile starts tracking a file that existed before, taking its present
// contents as durable.
func (fs *crashFS) watchFile(path string) {
	if _, ok := fs.files[path]; ok {
		return
	}
	data, err := os.ReadFile(path)
	fs.files[path] = &crashState{durable: err == nil, data: data}
}

func (fs *crashFS) OpenFile(name string, flag int, perm os.FileMode) (vfile, error) {
	fs.mu.Lock()
	fs.watchDir(filepath.Dir(name))
	_, statErr := os.Stat(name)
	existed := statErr == nil
	if existed {
		fs.watchFile(name)
	}
	fs.mu.Unlock()
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if !existed {
		fs.mu.Lock()
		fs.files[name] = &crashState{}
		delete(fs.gone, name)
		fs.mu.Unlock()
	}
	return &crashFile{vfile: f, fs: fs, path: name}, nil
}

func (fs *crashFS) Remove(name string) error {
	fs.mu.Lock()
	fs.watchDir(filepath.Dir(name))
	fs.watchFile(name)
	st := fs.files[name]
	fs.mu.Unlock()
	if err := fs.osFS.Remove(name); err != nil {
		return err
	}
	fs.mu.Lock()
	fs.gone[name] = st
	delete(fs.files, name)
	fs.mu.Unlock()
	return nil
}

func (fs *crashFS) Rename(oldpath, newpath string) error {
	fs.mu.Lock()
	fs.watchDir(filepath.Dir(oldpath))
	fs.watchDir(filepath.Dir(newpath))
	fs.watchFile(oldpath)
	fs.watchFile(newpath)
	st, old := fs.files[oldpath], fs.files[newpath]
	fs.mu.Unlock()
	if err := fs.osFS.Rename(oldpath, newpath); err != nil {
		return err
	}
	fs.mu.Lock()
	fs.gone[oldpath] = st
	if old != nil {
		fs.gone[newpath] = old
	}
	fs.files[newpath] = st
	delete(fs.files, oldpath)
	fs.mu.Unlock()
	return nil
}

func (fs *crashFS) Mkdir(name string, perm os.FileMode) error {
	fs.mu.Lock()
	fs.watchDir(filepath.Dir(name))
	fs.mu.Unlock()
	return fs.osFS.Mkdir(name, perm)
}

// SyncDir makes dir's present entries durable.
func (fs *crashFS) SyncDir(dir string) error {
	if err := fs.osFS.SyncDir(dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	fs.dirs[dir] = names
	for p := range fs.gone {
		if filepath.Dir(p) == dir {
			delete(fs.gone, p)
		}
	}
	return nil
}

// Crash drops everything not synced and starts a new "boot".
func (fs *crashFS) Crash() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for dir, durable := range fs.dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		present := map[string]bool{}
		for _, e := range entries {
			present[e.Name()] = true
			if !durable[e.Name()] && !e.IsDir() {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
		for name := range durable {
			if present[name] {
				continue
			}
			p := filepath.Join(dir, name)
			if st := fs.gone[p]; st != nil && st.durable {
				if err := os.WriteFile(p, st.data, 0o644); err != nil {
					return err
				}
			}
		}
	}
	for p, st := range fs.files {
		if !fs.dirs[filepath.Dir(p)][filepath.Base(p)] {
			continue // removed above: its entry was never durable
		}
		data := st.data
		if !st.durable {
			data = nil
		}
		if err := os.WriteFile(p, data, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	fs.files = map[string]*crashState{}
	fs.gone = map[string]*crashState{}
	fs.dirs = map[string]map[string]bool{}
	fs.boots++
	return nil
}

// synced records a file's present contents as durable.
func (fs *crashFS) synced(path string, f vfile) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	fs.mu.Lock()
	fs.files[path] = &crashState{durable: true, data: data}
	fs.mu.Unlock()
	return nil
}

// crashFile is an open file of a crashFS.
type crashFile struct {
	vfile
	fs   *crashFS
	path string
}

func (f *crashFile) Datasync() error {
	if err := f.vfile.Datasync(); err != nil {
		return err
	}
	return f.fs.synced(f.path, f.vfile)
}

func (f *crashFile) Sync() error {
	if err := f.vfile.Sync(); err != nil {
		return err
	}
	return f.fs.synced(f.path, f.vfile)
}
