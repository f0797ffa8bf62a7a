package client

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// The path-level API: conveniences for programs and tests that name files by
// slash-separated paths from the filesystem root. They act with the
// process's own credentials and follow symbolic links in every component but
// the last (which Stat follows too, and Lstat does not). Errors are
// *fs.PathError values; errors.Is matches them against both errno values and
// the io/fs sentinels (fs.ErrNotExist, ...).

// maxSymlinks bounds the symbolic links followed while resolving one path.
const maxSymlinks = 40

// errnoError carries an error's errno so that errors.Is(err,
// fs.ErrNotExist) works, while keeping the underlying error.
type errnoError struct {
	errno syscall.Errno
	err   error
}

func (e *errnoError) Error() string { return e.err.Error() }
func (e *errnoError) Unwrap() error { return e.err }

// Is matches the errno and the io/fs sentinels the errno stands for.
func (e *errnoError) Is(target error) bool { return e.errno == target || e.errno.Is(target) }

// pathError wraps err for the path API.
func pathError(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: &errnoError{errno: Errno(err), err: err}}
}

// resolve walks name from the root and returns the attributes of its last
// component, following a symbolic link there only if follow is set.
func (c *Client) resolve(ctx context.Context, name string, follow bool) (proto.Attr, error) {
	parent, last, err := c.resolveParent(ctx, name)
	if err != nil {
		return proto.Attr{}, err
	}
	if last == "" {
		return c.Getattr(ctx, parent.Ino)
	}
	a, err := c.Lookup(ctx, c.cred, parent.Ino, last)
	if err != nil || !follow || a.Mode&proto.ModeType != proto.ModeSymlink {
		return a, err
	}
	links := 0
	dir := parent.Ino
	for a.Mode&proto.ModeType == proto.ModeSymlink {
		if links++; links > maxSymlinks {
			return proto.Attr{}, syscall.ELOOP
		}
		target, err := c.Readlink(ctx, a.Ino)
		if err != nil {
			return proto.Attr{}, err
		}
		if a, err = c.walk(ctx, dir, target, &links); err != nil {
			return proto.Attr{}, err
		}
	}
	return a, nil
}

// resolveParent resolves every component of name but the last and returns
// the directory holding it and its name ("" when name is the root).
func (c *Client) resolveParent(ctx context.Context, name string) (proto.Attr, string, error) {
	clean := path.Clean("/" + name)
	dir, last := path.Split(clean)
	links := 0
	d, err := c.walk(ctx, c.Root(), dir, &links)
	if err != nil {
		return proto.Attr{}, "", err
	}
	if !d.IsDir() {
		return proto.Attr{}, "", syscall.ENOTDIR
	}
	return d, last, nil
}

// walk resolves p (absolute from the root, or relative to dir), following
// every symbolic link, and counts the links followed in links.
func (c *Client) walk(ctx context.Context, dir uint64, p string, links *int) (proto.Attr, error) {
	if strings.HasPrefix(p, "/") {
		dir = c.Root()
	}
	cur, err := c.Getattr(ctx, dir)
	if err != nil {
		return proto.Attr{}, err
	}
	stack := []uint64{} // the directories above cur, for ".."
	for _, comp := range strings.Split(p, "/") {
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				if cur, err = c.Getattr(ctx, stack[len(stack)-1]); err != nil {
					return proto.Attr{}, err
				}
				stack = stack[:len(stack)-1]
				continue
			}
			if cur.Ino == c.Root() {
				continue
			}
		}
		if !cur.IsDir() {
			return proto.Attr{}, syscall.ENOTDIR
		}
		next, err := c.Lookup(ctx, c.cred, cur.Ino, comp)
		if err != nil {
			return proto.Attr{}, err
		}
		if next.Mode&proto.ModeType == proto.ModeSymlink {
			if *links++; *links > maxSymlinks {
				return proto.Attr{}, syscall.ELOOP
			}
			target, err := c.Readlink(ctx, next.Ino)
			if err != nil {
				return proto.Attr{}, err
			}
			if next, err = c.walk(ctx, cur.Ino, target, links); err != nil {
				return proto.Attr{}, err
			}
		}
		stack = append(stack, cur.Ino)
		cur = next
	}
	return cur, nil
}

// Stat returns the attributes of the file name refers to, following a
// symbolic link in the last component.
func (c *Client) Stat(name string) (proto.Attr, error) {
	a, err := c.resolve(c.bg, name, true)
	return a, pathError("stat", name, err)
}

// Lstat returns the attributes of name without following a symbolic link in
// the last component.
func (c *Client) Lstat(name string) (proto.Attr, error) {
	a, err := c.resolve(c.bg, name, false)
	return a, pathError("lstat", name, err)
}

// OpenFile opens name with O_* flags (os.O_RDONLY, os.O_CREATE, ...),
// creating it with permission bits perm under O_CREATE, as os.OpenFile does.
func (c *Client) OpenFile(name string, flags int, perm os.FileMode) (*File, error) {
	f, err := c.openFile(c.bg, name, flags, perm, layout.Spec{})
	return f, pathError("open", name, err)
}

// CreateStriped creates (or truncates) name with layout spec, as
// `lfs setstripe` followed by a write.
func (c *Client) CreateStriped(name string, perm os.FileMode, spec layout.Spec) (*File, error) {
	f, err := c.openFile(c.bg, name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm, spec)
	return f, pathError("open", name, err)
}

func (c *Client) openFile(ctx context.Context, name string, flags int, perm os.FileMode, spec layout.Spec) (*File, error) {
	parent, last, err := c.resolveParent(ctx, name)
	if err != nil {
		return nil, err
	}
	if last == "" {
		return nil, syscall.EISDIR
	}
	a, err := c.Lookup(ctx, c.cred, parent.Ino, last)
	switch {
	case errors.Is(err, syscall.ENOENT) && flags&os.O_CREATE != 0:
		return c.Create(ctx, c.cred, parent.Ino, last, uint32(perm.Perm()), 0, flags, spec)
	case err != nil:
		return nil, err
	case flags&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, syscall.EEXIST
	}
	if a.Mode&proto.ModeType == proto.ModeSymlink {
		if a, err = c.resolve(ctx, name, true); err != nil {
			return nil, err
		}
	}
	if a.IsDir() {
		return nil, syscall.EISDIR
	}
	return c.Open(ctx, c.cred, a.Ino, flags&^(os.O_CREATE|os.O_EXCL))
}

// MkdirAll creates directory name and any missing parents with permission
// bits perm, as os.MkdirAll does.
func (c *Client) MkdirAll(name string, perm os.FileMode) error {
	ctx := c.bg
	cur, err := c.Getattr(ctx, c.Root())
	if err != nil {
		return pathError("mkdir", name, err)
	}
	links := 0
	for _, comp := range strings.Split(path.Clean("/"+name), "/") {
		if comp == "" {
			continue
		}
		next, err := c.walk(ctx, cur.Ino, comp, &links)
		if errors.Is(err, syscall.ENOENT) {
			next, err = c.Mkdir(ctx, c.cred, cur.Ino, comp, uint32(perm.Perm()), 0, -1)
			if errors.Is(err, syscall.EEXIST) {
				next, err = c.walk(ctx, cur.Ino, comp, &links)
			}
		}
		if err != nil {
			return pathError("mkdir", name, err)
		}
		if !next.IsDir() {
			return pathError("mkdir", name, syscall.ENOTDIR)
		}
		cur = next
	}
	return nil
}

// Remove removes the file or empty directory name, as os.Remove does.
func (c *Client) Remove(name string) error {
	ctx := c.bg
	parent, last, err := c.resolveParent(ctx, name)
	if err != nil {
		return pathError("remove", name, err)
	}
	if last == "" {
		return pathError("remove", name, syscall.EBUSY)
	}
	err = c.Unlink(ctx, c.cred, parent.Ino, last)
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EPERM) {
		if rerr := c.Rmdir(ctx, c.cred, parent.Ino, last); !errors.Is(rerr, syscall.ENOTDIR) {
			err = rerr
		}
	}
	return pathError("remove", name, err)
}

// ReadDir returns every entry of directory name in name order.
func (c *Client) ReadDir(name string) ([]proto.Dirent, error) {
	ctx := c.bg
	d, err := c.resolve(ctx, name, true)
	if err != nil {
		return nil, pathError("readdir", name, err)
	}
	var out []proto.Dirent
	after := ""
	for {
		page, more, err := c.Readdir(ctx, c.cred, d.Ino, after, 0, false)
		if err != nil {
			return nil, pathError("readdir", name, err)
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			return out, nil
		}
		after = page[len(page)-1].Name
	}
}
