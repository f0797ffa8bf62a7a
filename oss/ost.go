package oss

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Names inside an OST directory.
const (
	identityFile = "ost.json" // the OST's identity
	lockFile     = "ost.lock" // flock'd while an OSS serves the directory
	objectsDir   = "O"        // root of the object fan-out
)

// Errors about an OST's identity.
var (
	ErrOSTBusy       = errors.New("oss: OST directory is in use by another process")
	ErrIndexMismatch = errors.New("oss: OST already has a different index")
	ErrFSMismatch    = errors.New("oss: OST belongs to another filesystem")
	ErrNoIdentity    = errors.New("oss: OST directory has lost its identity file")
)

// Identity is what DIR/ost.json records about an OST. Index is -1 until the
// MDS assigns one at the OST's first registration; FSName is empty until the
// OST joins a filesystem.
type Identity struct {
	FSName string `json:"fsname"`
	Index  int64  `json:"index"`
	UUID   string `json:"uuid"`
}

// OST is one object storage target: a directory of object files and its
// identity. Its methods are safe for concurrent use.
type OST struct {
	dir  string
	fs   vfs
	lock *os.File // holds the flock on DIR/ost.lock

	idMu sync.Mutex // serializes identity updates
	id   atomic.Pointer[Identity]

	log          *slog.Logger
	xattrWarning sync.Once // ENOTSUP on the owner xattr is logged once

	handles *handleCache
	flush   *flusher                   // closes what leaves the cache
	shards  [objectShards]sync.RWMutex // see shardOf
	tomb    *tombstones                // objects destroyed lately
	listed  listCache                  // the directory a listing pages through

	// verifier is the write verifier (proto.ObjWriteResp): the storage's
	// boot id and the OST's UUID, hashed.
	verifier uint64

	stats ostCounters
}

// OSTOption configures OpenOST.
type OSTOption func(*OST)

// WithLogger sets the logger an OST warns on (default slog.Default()).
func WithLogger(l *slog.Logger) OSTOption {
	return func(o *OST) {
		if l != nil {
			o.log = l
		}
	}
}

// WithHandleCache bounds the number of open object files an OST keeps
// (default 1024).
func WithHandleCache(n int) OSTOption {
	return func(o *OST) {
		if n > 0 {
			o.handles = newHandleCache(n)
		}
	}
}

// withFS substitutes the file system objects are stored on (tests).
func withFS(fs vfs) OSTOption { return func(o *OST) { o.fs = fs } }

// DefaultHandleCache is the default number of open object files per OST.
const DefaultHandleCache = 1024

// OpenOST opens the OST in dir, creating the directory and a fresh identity
// (index -1, a new UUID) if it has none, and takes an exclusive lock on it so
// that two servers never serve the same OST. Close releases it.
func OpenOST(dir string, opts ...OSTOption) (*OST, error) {
	o := &OST{
		dir: dir,
		fs:  osFS{},
		log: slog.Default(),
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.handles == nil {
		o.handles = newHandleCache(DefaultHandleCache)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("oss: open OST: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("oss: open OST: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("oss: open OST %s: %w", dir, ErrOSTBusy)
		}
		return nil, fmt.Errorf("oss: open OST %s: flock: %w", dir, err)
	}
	o.lock = lock
	if err := o.loadIdentity(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := o.ensureDir(filepath.Join(dir, objectsDir), dir); err != nil {
		lock.Close()
		return nil, fmt.Errorf("oss: open OST %s: %w", dir, err)
	}
	if o.tomb, err = openTombstones(o.fs, dir, time.Now()); err != nil {
		lock.Close()
		return nil, err
	}
	h := fnv.New64a()
	h.Write([]byte(o.fs.BootID()))
	h.Write([]byte(o.UUID()))
	o.verifier = h.Sum64()
	o.log = o.log.With("ost", dir)
	o.flush = newFlusher(o.log)
	return o, nil
}

// loadIdentity reads DIR/ost.json, or writes a new identity if it is absent.
func (o *OST) loadIdentity() error {
	path := filepath.Join(o.dir, identityFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		// Objects without an identity are named in layouts by an index
		// nobody remembers: a fresh identity would orphan them all.
		if _, serr := os.Stat(filepath.Join(o.dir, objectsDir)); serr == nil {
			return fmt.Errorf("oss: %s holds objects but no %s: %w", o.dir, identityFile, ErrNoIdentity)
		}
		id := &Identity{Index: -1, UUID: newUUID()}
		if err := o.writeIdentity(id); err != nil {
			return err
		}
		o.id.Store(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("oss: read %s: %w", path, err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return fmt.Errorf("oss: parse %s: %w", path, err)
	}
	if id.UUID == "" || id.Index < -1 || id.Index > int64(^uint32(0)) {
		return fmt.Errorf("oss: %s: invalid identity %+v", path, id)
	}
	o.id.Store(&id)
	return nil
}

// writeIdentity replaces DIR/ost.json atomically and durably: write a
// temporary file, fsync it, rename it over the old one, fsync the directory.
func (o *OST) writeIdentity(id *Identity) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := filepath.Join(o.dir, identityFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("oss: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(o.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("oss: write %s: %w", path, err)
	}
	return nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Dir returns the OST's directory.
func (o *OST) Dir() string { return o.dir }

// Identity returns a copy of the OST's identity.
func (o *OST) Identity() Identity { return *o.id.Load() }

// Index returns the OST's index, or -1 if none has been assigned yet.
func (o *OST) Index() int64 { return o.id.Load().Index }

// UUID returns the OST's UUID.
func (o *OST) UUID() string { return o.id.Load().UUID }

// FSName returns the filesystem the OST belongs to ("" until known).
func (o *OST) FSName() string { return o.id.Load().FSName }

// SetIndex records the index the MDS assigned. Setting the index an OST
// already has is a no-op; changing an assigned index is refused with
// ErrIndexMismatch, since objects on the OST are named by it in layouts.
func (o *OST) SetIndex(index uint32) error {
	return o.updateIdentity(func(id *Identity) error {
		if id.Index >= 0 && id.Index != int64(index) {
			return fmt.Errorf("oss: OST %s has index %d, not %d: %w", o.dir, id.Index, index, ErrIndexMismatch)
		}
		id.Index = int64(index)
		return nil
	})
}

// SetFSName records the filesystem the OST belongs to. Setting the name the
// OST already has is a no-op; changing it is refused with ErrFSMismatch.
func (o *OST) SetFSName(name string) error {
	return o.updateIdentity(func(id *Identity) error {
		if id.FSName != "" && id.FSName != name {
			return fmt.Errorf("oss: OST %s belongs to %q, not %q: %w", o.dir, id.FSName, name, ErrFSMismatch)
		}
		id.FSName = name
		return nil
	})
}

// updateIdentity applies change to a copy of the identity and persists it
// if it changed.
func (o *OST) updateIdentity(change func(*Identity) error) error {
	o.idMu.Lock()
	defer o.idMu.Unlock()
	cur := o.id.Load()
	next := *cur
	if err := change(&next); err != nil {
		return err
	}
	if next == *cur {
		return nil
	}
	if err := o.writeIdentity(&next); err != nil {
		return err
	}
	o.id.Store(&next)
	return nil
}

// Close closes every cached object file, reporting write-back errors no
// sync has reported, and releases the OST directory's lock. No other method
// may run during or after Close; closing again is a no-op.
func (o *OST) Close() error {
	if o.lock == nil {
		return nil
	}
	err := o.closeHandles()
	if cerr := o.tomb.close(); err == nil {
		err = cerr
	}
	if cerr := o.lock.Close(); err == nil {
		err = cerr
	}
	o.lock = nil
	return err
}

// String names the OST for logs.
func (o *OST) String() string {
	id := o.id.Load()
	if id.Index < 0 {
		return fmt.Sprintf("OST(new %s)", o.dir)
	}
	return fmt.Sprintf("OST%04x", id.Index)
}
