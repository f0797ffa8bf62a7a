// Package hsm moves file data between Strata and archives: the backends
// (a POSIX directory, any S3-compatible object store), the copytool agent
// that carries out the actions the MDS's coordinator queues (archive,
// restore, remove) with parallel streams and per-chunk checksums, the
// import of objects already in an archive, and the archive and release
// policies. It runs in the copytool and the strata command, never in the
// MDS: the MDS keeps the states and the queue (mds/hsm.go).
package hsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotFound is what a backend returns for a key it does not hold.
var ErrNotFound = errors.New("hsm: no such archive object")

// ObjectInfo describes an archive object.
type ObjectInfo struct {
	Key   string
	Size  int64
	Mtime time.Time
	// ETag identifies the object's content as the backend knows it (the
	// S3 ETag; size and mtime for a POSIX file), to notice a change.
	ETag string
}

// Backend is an archive: a flat namespace of objects by key.
type Backend interface {
	// Create starts writing object key of size bytes in parts of
	// partSize, which may be written in any order and in parallel; the
	// object appears, whole, at Commit.
	Create(ctx context.Context, key string, size, partSize int64) (Upload, error)
	// ReadAt reads len(p) bytes at off of object key.
	ReadAt(ctx context.Context, key string, p []byte, off int64) error
	// Stat describes object key, or fails with ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Put stores a small object whole.
	Put(ctx context.Context, key string, data []byte) error
	// Get reads a small object whole.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes object key; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in
	// key order, until fn returns false.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) bool) error
	// Root is the key prefix archive copies go under ("" for none).
	Root() string
	// String names the backend as its spec does.
	String() string
}

// Upload is an object being written by Backend.Create.
type Upload interface {
	// WritePart writes part index (from 0) of the object.
	WritePart(ctx context.Context, index int, data []byte) error
	// Commit makes the object appear with every part written.
	Commit(ctx context.Context) error
	// Abort drops what was written.
	Abort(ctx context.Context) error
}

// Open returns the backend a spec names: "posix:DIR" (or a bare
// directory) or "s3://BUCKET/PREFIX", whose endpoint, region and
// credentials come from s3 (see S3Config).
func Open(spec string, s3 S3Config) (Backend, error) {
	switch {
	case strings.HasPrefix(spec, "s3://"):
		return openS3(spec, s3)
	case strings.HasPrefix(spec, "posix:"):
		return openPosix(strings.TrimPrefix(spec, "posix:"))
	case strings.HasPrefix(spec, "/"):
		return openPosix(spec)
	}
	return nil, fmt.Errorf("hsm: backend %q: want posix:DIR or s3://BUCKET/PREFIX", spec)
}

// joinKey joins key parts with "/", dropping empty ones.
func joinKey(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.Trim(p, "/"); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}
