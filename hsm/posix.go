package hsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// posixBackend keeps objects as files under a directory (lhsmtool_posix's
// archive), a key's slashes making subdirectories.
type posixBackend struct {
	dir string
}

func openPosix(dir string) (Backend, error) {
	if dir == "" {
		return nil, errors.New("hsm: posix backend: no directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("hsm: posix backend %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("hsm: posix backend: %w", err)
	}
	return &posixBackend{dir: abs}, nil
}

func (b *posixBackend) String() string { return "posix:" + b.dir }

func (b *posixBackend) Root() string { return "" }

// path returns the file of a key: relative to the directory, or absolute
// for a key that is (an imported file's).
func (b *posixBackend) path(key string) (string, error) {
	if strings.HasPrefix(key, "/") && !strings.Contains(key, "\x00") {
		return filepath.Clean(key), nil
	}
	clean := filepath.Clean("/" + key)
	if clean == "/" || strings.Contains(key, "\x00") {
		return "", fmt.Errorf("hsm: bad archive key %q", key)
	}
	return filepath.Join(b.dir, clean), nil
}

// posixUpload writes a temporary file beside the object and renames it in
// at Commit, so a reader never sees a partial object and a killed copytool
// leaves the previous copy whole.
type posixUpload struct {
	f        *os.File
	path     string
	partSize int64
}

func (b *posixBackend) Create(_ context.Context, key string, size, partSize int64) (Upload, error) {
	p, err := b.path(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("hsm: create %s: %w", key, err)
	}
	tmp := fmt.Sprintf("%s.part.%x", p, rand.Uint64())
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("hsm: create %s: %w", key, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("hsm: create %s: %w", key, err)
	}
	return &posixUpload{f: f, path: p, partSize: partSize}, nil
}

func (u *posixUpload) WritePart(_ context.Context, index int, data []byte) error {
	if _, err := u.f.WriteAt(data, int64(index)*u.partSize); err != nil {
		return fmt.Errorf("hsm: write part %d of %s: %w", index, u.path, err)
	}
	return nil
}

func (u *posixUpload) Commit(context.Context) error {
	err := u.f.Sync()
	if cerr := u.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(u.f.Name(), u.path)
	}
	if err != nil {
		os.Remove(u.f.Name())
		return fmt.Errorf("hsm: commit %s: %w", u.path, err)
	}
	if d, err := os.Open(filepath.Dir(u.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("hsm: commit %s: sync directory: %w", u.path, err)
		}
	}
	return nil
}

func (u *posixUpload) Abort(context.Context) error {
	u.f.Close()
	if err := os.Remove(u.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hsm: abort %s: %w", u.path, err)
	}
	return nil
}

func (b *posixBackend) ReadAt(_ context.Context, key string, p []byte, off int64) error {
	path, err := b.path(key)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hsm: read %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("hsm: read %s: %w", key, err)
	}
	defer f.Close()
	if _, err := f.ReadAt(p, off); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("hsm: read %d bytes at %d of %s: %w", len(p), off, key, err)
	}
	return nil
}

func (b *posixBackend) Stat(_ context.Context, key string) (ObjectInfo, error) {
	path, err := b.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, fmt.Errorf("hsm: stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("hsm: stat %s: %w", key, err)
	}
	return posixInfo(key, st), nil
}

// posixInfo describes a file; its ETag is its size and mtime.
func posixInfo(key string, st fs.FileInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: st.Size(), Mtime: st.ModTime(),
		ETag: fmt.Sprintf("%x-%x", st.Size(), st.ModTime().UnixNano())}
}

func (b *posixBackend) Put(ctx context.Context, key string, data []byte) error {
	u, err := b.Create(ctx, key, int64(len(data)), max(int64(len(data)), 1))
	if err != nil {
		return err
	}
	if err := u.WritePart(ctx, 0, data); err != nil {
		u.Abort(ctx)
		return err
	}
	return u.Commit(ctx)
}

func (b *posixBackend) Get(_ context.Context, key string) ([]byte, error) {
	path, err := b.path(key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("hsm: read %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: read %s: %w", key, err)
	}
	return data, nil
}

func (b *posixBackend) Delete(_ context.Context, key string) error {
	path, err := b.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hsm: delete %s: %w", key, err)
	}
	return nil
}

func (b *posixBackend) List(_ context.Context, prefix string, fn func(ObjectInfo) bool) error {
	var infos []ObjectInfo
	err := filepath.WalkDir(b.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		key, err := filepath.Rel(b.dir, path)
		if err != nil {
			return err
		}
		key = filepath.ToSlash(key)
		if !strings.HasPrefix(key, prefix) || strings.Contains(key, ".part.") {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		infos = append(infos, posixInfo(key, st))
		return nil
	})
	if err != nil {
		return fmt.Errorf("hsm: list %s: %w", prefix, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, in := range infos {
		if !fn(in) {
			break
		}
	}
	return nil
}
