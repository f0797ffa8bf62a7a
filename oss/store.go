package oss

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/stratafs/strata/layout"
)

// MaxRead is the largest read an OST serves in one request.
const MaxRead = 16 << 20

// OwnerXattr is the extended attribute recording an object's owner, as
// "ino:seq:stripe" in decimal (see Object.Owner and ParseOwner).
const OwnerXattr = "user.strata.owner"

// Object locks are striped over 1<<objectShardBits mutexes.
const (
	objectShardBits = 8
	objectShards    = 1 << objectShardBits
)

// Object names an object and the stripe of its file that it holds. The
// stripe is recorded as part of the owner when the object is created.
type Object struct {
	ID     layout.ObjectID
	Stripe uint32
}

// Owner formats the object's owner as stored in OwnerXattr.
func (obj Object) Owner() string {
	return fmt.Sprintf("%d:%d:%d", obj.ID.Ino, obj.ID.Seq, obj.Stripe)
}

// ParseOwner parses the value of OwnerXattr.
func ParseOwner(s string) (Object, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Object{}, fmt.Errorf("oss: bad owner %q", s)
	}
	ino, err1 := strconv.ParseUint(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 32)
	stripe, err3 := strconv.ParseUint(parts[2], 10, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Object{}, fmt.Errorf("oss: bad owner %q: %w", s, err)
	}
	return Object{ID: layout.ObjectID{Ino: ino, Seq: uint32(seq)}, Stripe: uint32(stripe)}, nil
}

// ObjectPath returns the path of an object's file relative to its OST
// directory: O/<ino&0xff %02x>/<ino %016x>.<seq %08x>.
func ObjectPath(id layout.ObjectID) string {
	return filepath.Join(objectsDir, fanoutDir(id), fmt.Sprintf("%016x.%08x", id.Ino, id.Seq))
}

func fanoutDir(id layout.ObjectID) string { return fmt.Sprintf("%02x", id.Ino&0xff) }

// ObjAttr is an object's size and allocation.
type ObjAttr struct {
	Exists bool
	Size   int64
	Blocks int64 // 512-byte blocks allocated
}

// Usage is an OST's space and inode usage.
type Usage struct {
	Total uint64 // bytes
	Used  uint64
	Avail uint64 // bytes available to the server
	Files uint64 // inodes
	FFree uint64
}

// Write writes data at off in the object, creating it (and recording its
// owner) if it does not exist. With sync the data is durable before Write
// returns; otherwise it is at least in the page cache. It returns the
// object's size after the write.
func (o *OST) Write(obj Object, off int64, data []byte, sync bool) (int64, error) {
	o.stats.writes.Add(1)
	if off < 0 {
		return 0, o.fail(fmt.Errorf("oss: write %s: offset %d: %w", obj.ID, off, syscall.EINVAL))
	}
	if off > math.MaxInt64-int64(len(data)) {
		return 0, o.fail(fmt.Errorf("oss: write %s: offset %d: %w", obj.ID, off, syscall.EFBIG))
	}
	var size int64
	_, err := o.withObject(obj, true, func(h *handle) error {
		if _, err := h.f.WriteAt(data, off); err != nil {
			return err
		}
		h.dirty.Store(true)
		if sync {
			if err := o.syncHandle(h); err != nil {
				return err
			}
		}
		attr, err := statHandle(h)
		size = attr.Size
		return err
	})
	if err != nil {
		return 0, o.fail(fmt.Errorf("oss: write %s at %d: %w", obj.ID, off, err))
	}
	o.stats.bytesWritten.Add(uint64(len(data)))
	return size, nil
}

// Read reads up to len(buf) bytes at off. It returns the bytes read (fewer
// at the object's end; none for a missing object, which is not an error)
// and the object's size.
func (o *OST) Read(id layout.ObjectID, off int64, buf []byte) (n int, size int64, err error) {
	o.stats.reads.Add(1)
	if off < 0 || len(buf) > MaxRead {
		return 0, 0, o.fail(fmt.Errorf("oss: read %s: offset %d length %d: %w", id, off, len(buf), syscall.EINVAL))
	}
	_, err = o.withObject(Object{ID: id}, false, func(h *handle) error {
		var err error
		n, err = h.f.ReadAt(buf, off)
		if err == io.EOF {
			err = nil
		}
		if err != nil {
			return err
		}
		attr, err := statHandle(h)
		size = attr.Size
		return err
	})
	if err != nil {
		return 0, 0, o.fail(fmt.Errorf("oss: read %s at %d: %w", id, off, err))
	}
	o.stats.bytesRead.Add(uint64(n))
	return n, size, nil
}

// Punch truncates the object to size, or extends it with a hole. Punching
// a missing object to a positive size creates it sparse; to zero, it does
// nothing.
func (o *OST) Punch(obj Object, size int64) error {
	o.stats.punches.Add(1)
	if size < 0 {
		return o.fail(fmt.Errorf("oss: punch %s: size %d: %w", obj.ID, size, syscall.EINVAL))
	}
	_, err := o.withObject(obj, size > 0, func(h *handle) error {
		if err := h.f.Truncate(size); err != nil {
			return err
		}
		h.dirty.Store(true)
		return nil
	})
	if err != nil {
		return o.fail(fmt.Errorf("oss: punch %s to %d: %w", obj.ID, size, err))
	}
	return nil
}

// Sync makes the object's data durable (fdatasync). It also reports a
// write-back error met when the object's file was closed earlier, so an
// error is never lost between a write and the sync that covers it.
func (o *OST) Sync(id layout.ObjectID) error {
	o.stats.syncs.Add(1)
	found, err := o.withObject(Object{ID: id}, false, o.syncHandle)
	if err == nil && !found {
		err = o.flush.takeErr(id)
	}
	if err != nil {
		return o.fail(fmt.Errorf("oss: sync %s: %w", id, err))
	}
	return nil
}

// Getattr reports the object's size and allocated blocks; a missing object
// has Exists false.
func (o *OST) Getattr(id layout.ObjectID) (ObjAttr, error) {
	o.stats.getattrs.Add(1)
	var attr ObjAttr
	_, err := o.withObject(Object{ID: id}, false, func(h *handle) error {
		var err error
		attr, err = statHandle(h)
		return err
	})
	if err != nil {
		return ObjAttr{}, o.fail(fmt.Errorf("oss: getattr %s: %w", id, err))
	}
	return attr, nil
}

// Destroy deletes objects; missing ones are not an error. It goes on past
// a failure and returns every error joined.
func (o *OST) Destroy(ids ...layout.ObjectID) error {
	o.stats.destroys.Add(1)
	var errs []error
	for _, id := range ids {
		if err := o.destroy(id); err != nil {
			errs = append(errs, fmt.Errorf("oss: destroy %s: %w", id, err))
		}
	}
	if len(errs) > 0 {
		return o.fail(errors.Join(errs...))
	}
	return nil
}

func (o *OST) destroy(id layout.ObjectID) error {
	sh := o.shardOf(id)
	sh.Lock()
	defer sh.Unlock()
	// Under the exclusive lock no request holds a reference to the
	// object's handle, so it can be dropped and closed here, and no later
	// request can reach the unlinked file through the cache.
	if h := o.handles.remove(id); h != nil {
		h.f.Close()
	}
	o.flush.takeErr(id) // the data is going; so is any error writing it
	err := o.fs.Remove(filepath.Join(o.dir, ObjectPath(id)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Statfs reports the OST's usage.
func (o *OST) Statfs() (Usage, error) {
	o.stats.statfs.Add(1)
	var st syscall.Statfs_t
	if err := o.fs.Statfs(o.dir, &st); err != nil {
		return Usage{}, o.fail(fmt.Errorf("oss: statfs %s: %w", o.dir, err))
	}
	bsize := uint64(st.Bsize)
	return Usage{
		Total: st.Blocks * bsize,
		Used:  (st.Blocks - st.Bfree) * bsize,
		Avail: st.Bavail * bsize,
		Files: st.Files,
		FFree: st.Ffree,
	}, nil
}

// fail counts a failed operation and returns err.
func (o *OST) fail(err error) error {
	o.stats.errors.Add(1)
	return err
}

// withObject runs fn on the object's open file, holding a shared lock on
// the object so a concurrent Destroy waits. A missing object is created
// first if create is set; otherwise withObject reports found false and
// does not call fn. Creation and use are two lock acquisitions, so a
// Destroy may slip between them; the object is then created again, as if
// the request had come after the Destroy.
func (o *OST) withObject(obj Object, create bool, fn func(*handle) error) (found bool, err error) {
	for {
		found, err = o.tryObject(obj.ID, fn)
		if found || err != nil || !create {
			return found, err
		}
		if err := o.create(obj); err != nil {
			return false, err
		}
	}
}

// tryObject runs fn on the object's file if it exists.
func (o *OST) tryObject(id layout.ObjectID, fn func(*handle) error) (bool, error) {
	sh := o.shardOf(id)
	sh.RLock()
	defer sh.RUnlock()
	h, err := o.acquire(id)
	if h == nil || err != nil {
		return false, err
	}
	defer o.put(h)
	return true, fn(h)
}

// acquire returns the object's handle with a reference taken, opening the
// file if it is not cached, or nil if the object does not exist.
func (o *OST) acquire(id layout.ObjectID) (*handle, error) {
	if h := o.handles.get(id); h != nil {
		return h, nil
	}
	path := filepath.Join(o.dir, ObjectPath(id))
	f, err := o.fs.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return o.cache(&handle{key: id, path: path, f: f}), nil
}

// create creates the object's file and records its owner. It holds the
// object's lock exclusively, so no request sees the file before its owner
// is set and a failed creation is undone before anyone wrote to it.
func (o *OST) create(obj Object) error {
	sh := o.shardOf(obj.ID)
	sh.Lock()
	defer sh.Unlock()
	path := filepath.Join(o.dir, ObjectPath(obj.ID))
	f, err := o.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := o.ensureDir(filepath.Dir(path), filepath.Join(o.dir, objectsDir)); err != nil {
			return err
		}
		f, err = o.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if errors.Is(err, os.ErrExist) {
		return nil // created by a request that held the lock before us
	}
	if err != nil {
		return err
	}
	if err := o.fs.Setxattr(path, OwnerXattr, []byte(obj.Owner())); err != nil {
		if !errors.Is(err, syscall.ENOTSUP) {
			f.Close()
			o.fs.Remove(path)
			return err
		}
		o.xattrWarning.Do(func() {
			o.log.Warn("file system does not support user xattrs; object owners are not recorded, fsck cannot attribute objects", "err", err)
		})
	}
	o.put(o.cache(&handle{key: obj.ID, path: path, f: f}))
	return nil
}

// ensureDir creates directory dir if it is missing and makes its entry in
// parent durable.
func (o *OST) ensureDir(dir, parent string) error {
	err := o.fs.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return o.fs.SyncDir(parent)
}

// cache adds a freshly opened handle to the cache and returns the handle
// to use (another request's, if it cached the object first) with a
// reference taken. It closes whatever the cache let go.
func (o *OST) cache(h *handle) *handle {
	got, closeNow := o.handles.add(h)
	for _, c := range closeNow {
		o.flush.close(c)
	}
	return got
}

// put releases a reference, closing the handle if it was evicted meanwhile.
func (o *OST) put(h *handle) {
	if o.handles.release(h) {
		o.flush.close(h)
	}
}

// syncHandle makes the handle's data, and the object's directory entry,
// durable.
func (o *OST) syncHandle(h *handle) error {
	// Clear dirty before the flush: a write that lands after the clear
	// sets it again, so it is never lost from the eviction path.
	h.dirty.Store(false)
	if err := h.f.Datasync(); err != nil {
		h.dirty.Store(true)
		return err
	}
	if !h.dirSynced.Load() {
		if err := o.fs.SyncDir(filepath.Dir(h.path)); err != nil {
			return err
		}
		h.dirSynced.Store(true)
	}
	return o.flush.takeErr(h.key)
}

// closeHandles closes every cached object file, flushing unsynced data,
// stops the flusher and returns the write-back errors no sync reported.
func (o *OST) closeHandles() error {
	for _, h := range o.handles.drain() {
		o.flush.close(h)
	}
	return o.flush.stop()
}

// statHandle returns the attributes of an open object.
func statHandle(h *handle) (ObjAttr, error) {
	fi, err := h.f.Stat()
	if err != nil {
		return ObjAttr{}, err
	}
	attr := ObjAttr{Exists: true, Size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		attr.Blocks = st.Blocks
	} else {
		attr.Blocks = (attr.Size + 511) / 512
	}
	return attr, nil
}

// shardOf returns the lock stripe guarding an object.
func (o *OST) shardOf(id layout.ObjectID) *sync.RWMutex {
	x := (id.Ino ^ uint64(id.Seq)<<32) * 0x9e3779b97f4a7c15
	return &o.shards[x>>(64-objectShardBits)]
}
