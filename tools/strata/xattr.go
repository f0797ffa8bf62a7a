package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Virtual xattrs served by the Strata FUSE client (docs/internals.md): the
// control channel lfs-style verbs use on a mounted path.
const (
	xattrLayout  = "user.strata.layout"
	xattrTargets = "user.strata.targets"
	// xattrFindPrefix names the searches of strata find (find.go).
	xattrFindPrefix = "user.strata.find."
	// xattrMigrate restripes a file; reading it shows progress.
	xattrMigrate = "user.strata.migrate"
)

// errNotStrata explains an xattr failure on a path outside Strata.
var errNotStrata = errors.New("not on a Strata filesystem")

// getJSONXattr reads a virtual xattr and decodes its JSON into v.
func getJSONXattr(path, name string, v any) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return errNotStrata
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(buf[:n], v); err != nil {
			return fmt.Errorf("decode %s: %w", name, err)
		}
		return nil
	}
}

// setJSONXattr encodes v as JSON into a virtual xattr.
func setJSONXattr(path, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = unix.Setxattr(path, name, b, 0)
	if errors.Is(err, unix.ENOTSUP) {
		return errNotStrata
	}
	return err
}

// mountFor returns the Strata mount point holding path.
func mountFor(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	mounts, err := strataMounts()
	if err != nil {
		return "", err
	}
	best := ""
	for _, m := range mounts {
		if (abs == m.point || len(abs) > len(m.point) && abs[:len(m.point)] == m.point && (m.point == "/" || abs[len(m.point)] == '/')) && len(m.point) > len(best) {
			best = m.point
		}
	}
	if best == "" {
		return "", errNotStrata
	}
	return best, nil
}

// defaultMounts returns the mount points a verb without a path works on.
func defaultMounts() ([]string, error) {
	mounts, err := strataMounts()
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		return nil, errors.New("no Strata filesystem is mounted")
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.point)
	}
	return out, nil
}

// statOK reports whether path exists.
func statOK(path string) (os.FileInfo, bool) {
	fi, err := os.Stat(path)
	return fi, err == nil
}
