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
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// MaxRead is the largest read an OST serves in one request.
const MaxRead = 16 << 20

// OwnerXattr is the extended attribute recording an object's owner, as
// "ino:seq:stripe" in decimal (see Object.Owner and ParseOwner).
const OwnerXattr = "user.strata.owner"

// VersionXattr records, as "gen:epoch" in decimal, the layout generation an
// object was created for and the truncate epoch of the last punch; absent
// means 0:0.
const VersionXattr = "user.strata.version"

// ErrStale is what I/O gets for an object that was destroyed, that belongs
// to a newer layout than the capability names, or (writes) that a newer
// truncate cut: the client must fetch the file's current layout and epoch.
var ErrStale = fmt.Errorf("oss: object destroyed or changed since the capability was issued: %w", syscall.ESTALE)

// Access is what a request's capability says its holder knows of the file:
// the layout generation and the truncate epoch (see proto.Capability).
type Access struct {
	Gen   uint32
	Epoch uint64
}

// objMode says what an operation does to an object.
type objMode int

const (
	// readOnly uses an existing object; a missing one is left missing.
	readOnly objMode = iota
	// update changes an existing object, creating it if missing; the
	// truncate epoch must not be newer than the request's.
	update
)

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
func (o *OST) Write(obj Object, off int64, data []byte, sync bool, acc Access) (int64, error) {
	o.stats.writes.Add(1)
	if off < 0 {
		return 0, o.fail(fmt.Errorf("oss: write %s: offset %d: %w", obj.ID, off, syscall.EINVAL))
	}
	if off > math.MaxInt64-int64(len(data)) {
		return 0, o.fail(fmt.Errorf("oss: write %s: offset %d: %w", obj.ID, off, syscall.EFBIG))
	}
	var size int64
	_, err := o.withObject(obj, update, &acc, func(h *handle) error {
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
// at the object's end; none for a missing object, which is not an error,
// unless it was destroyed: ErrStale) and the object's size.
func (o *OST) Read(id layout.ObjectID, off int64, buf []byte, acc Access) (n int, size int64, err error) {
	o.stats.reads.Add(1)
	if off < 0 || len(buf) > MaxRead {
		return 0, 0, o.fail(fmt.Errorf("oss: read %s: offset %d length %d: %w", id, off, len(buf), syscall.EINVAL))
	}
	_, err = o.withObject(Object{ID: id}, readOnly, &acc, func(h *handle) error {
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

// Punch truncates the object to size, or extends it with a hole, for the
// truncate of epoch acc.Epoch, and makes that durable before it returns:
// a truncate the MDS commits must not come undone in a crash. The object
// remembers the epoch, so that writes of older epochs (a writer that has not
// learnt of this truncate) get ErrStale instead of bringing back what the
// truncate cut. Punching a missing object creates it, to hold the epoch,
// unless both size and epoch are zero.
func (o *OST) Punch(obj Object, size int64, acc Access) error {
	o.stats.punches.Add(1)
	if size < 0 {
		return o.fail(fmt.Errorf("oss: punch %s: size %d: %w", obj.ID, size, syscall.EINVAL))
	}
	mode := update
	if size == 0 && acc.Epoch == 0 {
		mode = readOnly
	}
	_, err := o.withObject(obj, mode, &acc, func(h *handle) error {
		if acc.Epoch > h.epoch.Load() {
			if err := o.setVersion(h, h.gen.Load(), acc.Epoch); err != nil {
				return err
			}
		}
		if err := h.f.Truncate(size); err != nil {
			return err
		}
		// fsync, not fdatasync: the epoch xattr must be durable too.
		if err := h.f.Sync(); err != nil {
			h.dirty.Store(true)
			return err
		}
		return nil
	})
	if err != nil {
		return o.fail(fmt.Errorf("oss: punch %s to %d: %w", obj.ID, size, err))
	}
	return nil
}

// Fallocate applies a proto.Falloc* mode to [off, off+length) of the object:
// preallocation (growing the object unless keepSize), a punched hole or a
// zeroed range. A missing object is created. It returns the object's size.
func (o *OST) Fallocate(obj Object, mode uint32, off, length int64, acc Access) (int64, error) {
	o.stats.writes.Add(1)
	if off < 0 || length <= 0 || off > math.MaxInt64-length {
		return 0, o.fail(fmt.Errorf("oss: fallocate %s: range %d+%d: %w", obj.ID, off, length, syscall.EINVAL))
	}
	var size int64
	_, err := o.withObject(obj, update, &acc, func(h *handle) error {
		if err := fallocate(h.f, mode, off, length); err != nil {
			return err
		}
		h.dirty.Store(true)
		attr, err := statHandle(h)
		size = attr.Size
		return err
	})
	if err != nil {
		return 0, o.fail(fmt.Errorf("oss: fallocate %s mode %d at %d+%d: %w", obj.ID, mode, off, length, err))
	}
	return size, nil
}

// Copy copies n bytes of object src at srcOff into object dst at dstOff on
// this OST, stopping at src's end (a missing src copies nothing), so the data
// of a copy_file_range between objects of one OST never crosses the network.
// It goes in copyChunk pieces, each read under the source's lock and written
// under the destination's, never both held. It returns how many bytes it
// copied and dst's size.
func (o *OST) Copy(src Object, srcOff int64, srcAcc Access, dst Object, dstOff, n int64, dstAcc Access) (copied, size int64, err error) {
	if srcOff < 0 || dstOff < 0 || n < 0 || srcOff > math.MaxInt64-n || dstOff > math.MaxInt64-n {
		return 0, 0, o.fail(fmt.Errorf("oss: copy %s to %s: range: %w", src.ID, dst.ID, syscall.EINVAL))
	}
	buf := make([]byte, min(n, copyChunk))
	for copied < n {
		chunk := buf[:min(int64(len(buf)), n-copied)]
		m, _, err := o.Read(src.ID, srcOff+copied, chunk, srcAcc)
		if err != nil {
			return copied, 0, err
		}
		if m == 0 {
			break
		}
		if size, err = o.Write(dst, dstOff+copied, chunk[:m], false, dstAcc); err != nil {
			return copied, 0, err
		}
		copied += int64(m)
		if m < len(chunk) {
			break
		}
	}
	return copied, size, nil
}

// copyChunk is the piece a Copy moves at a time.
const copyChunk = 4 << 20

// Sync makes the object's data durable (fdatasync). It also reports a
// write-back error met when the object's file was closed earlier, so an
// error is never lost between a write and the sync that covers it.
func (o *OST) Sync(id layout.ObjectID) error {
	o.stats.syncs.Add(1)
	found, err := o.withObject(Object{ID: id}, readOnly, nil, o.syncHandle)
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
	_, err := o.withObject(Object{ID: id}, readOnly, nil, func(h *handle) error {
		var err error
		attr, err = statHandle(h)
		return err
	})
	if errors.Is(err, ErrStale) {
		return ObjAttr{}, nil // destroyed: it does not exist
	}
	if err != nil {
		return ObjAttr{}, o.fail(fmt.Errorf("oss: getattr %s: %w", id, err))
	}
	return attr, nil
}

// Destroy deletes objects; missing ones are not an error. The objects are
// remembered as destroyed (tombstones, durable before any file goes) so
// that I/O with an old capability gets ErrStale rather than a hole or a
// new object, and the directories that held them are synced before Destroy
// returns, so a destroyed object never reappears after a crash. It goes on
// past a failure and returns every error joined.
func (o *OST) Destroy(ids ...layout.ObjectID) error {
	o.stats.destroys.Add(1)
	if err := o.tomb.add(ids, time.Now()); err != nil {
		return o.fail(fmt.Errorf("oss: destroy %d objects: %w", len(ids), err))
	}
	var errs []error
	dirs := map[string]bool{}
	for _, id := range ids {
		removed, err := o.destroy(id)
		if err != nil {
			errs = append(errs, fmt.Errorf("oss: destroy %s: %w", id, err))
		}
		if removed {
			dirs[filepath.Join(o.dir, objectsDir, fanoutDir(id))] = true
		}
	}
	for dir := range dirs {
		if err := o.fs.SyncDir(dir); err != nil {
			errs = append(errs, fmt.Errorf("oss: destroy: sync %s: %w", dir, err))
		}
	}
	if len(errs) > 0 {
		return o.fail(errors.Join(errs...))
	}
	return nil
}

// destroy removes one object's file and reports whether there was one.
func (o *OST) destroy(id layout.ObjectID) (bool, error) {
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
		return false, nil
	}
	return err == nil, err
}

// Verifier returns the OST's write verifier (proto.ObjWriteResp): it
// changes only when acknowledged but unsynced data may have been lost.
func (o *OST) Verifier() uint64 { return o.verifier }

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
// the object so a concurrent Destroy waits. acc, if not nil, is checked
// against the object (see acquireChecked). A missing object is created
// first in update mode; otherwise withObject reports found false and does
// not call fn, or fails with ErrStale if the object was destroyed.
// Creation and use are two lock acquisitions, so a Destroy may slip between
// them; the object is then found destroyed.
func (o *OST) withObject(obj Object, mode objMode, acc *Access, fn func(*handle) error) (found bool, err error) {
	for {
		found, err = o.tryObject(obj.ID, mode, acc, fn)
		if found || err != nil || mode != update {
			return found, err
		}
		if err := o.create(obj, acc); err != nil {
			return false, err
		}
	}
}

// tryObject runs fn on the object's file if it exists.
func (o *OST) tryObject(id layout.ObjectID, mode objMode, acc *Access, fn func(*handle) error) (bool, error) {
	sh := o.shardOf(id)
	sh.RLock()
	defer sh.RUnlock()
	h, err := o.acquireChecked(id, mode, acc)
	if h == nil || err != nil {
		return false, err
	}
	defer o.put(h)
	return true, fn(h)
}

// acquireChecked is acquire for a request: a destroyed object, an object
// of a newer layout generation than acc's, and in update mode an object
// truncated at a newer epoch than acc's, fail with ErrStale (nil acc checks
// nothing but destruction). Call with the object's shard locked.
func (o *OST) acquireChecked(id layout.ObjectID, mode objMode, acc *Access) (*handle, error) {
	h, err := o.acquire(id)
	if err != nil {
		return nil, err
	}
	if h == nil {
		if o.tomb.isDead(id) {
			return nil, ErrStale
		}
		return nil, nil
	}
	if acc != nil && (h.gen.Load() > acc.Gen || mode == update && h.epoch.Load() > acc.Epoch) {
		o.put(h)
		return nil, ErrStale
	}
	return h, nil
}

// acquire returns the object's handle with a reference taken, opening the
// file if it is not cached, or nil if the object does not exist. A file of a
// destroyed object (one a crash brought back before its directory was
// synced) is removed again and reported missing.
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
	if o.tomb.isDead(id) {
		f.Close()
		if err := o.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, nil
	}
	h := &handle{key: id, path: path, f: f}
	gen, epoch, err := o.readVersion(path)
	if err != nil {
		f.Close()
		return nil, err
	}
	h.gen.Store(gen)
	h.epoch.Store(epoch)
	return o.cache(h), nil
}

// readVersion reads an object's VersionXattr (0, 0 when absent).
func (o *OST) readVersion(path string) (gen uint32, epoch uint64, err error) {
	b, err := o.fs.Getxattr(path, VersionXattr)
	if errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOTSUP) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d:%d", &gen, &epoch); err != nil {
		return 0, 0, fmt.Errorf("oss: bad %s %q on %s", VersionXattr, b, path)
	}
	return gen, epoch, nil
}

// setVersion records an object's layout generation and truncate epoch.
func (o *OST) setVersion(h *handle, gen uint32, epoch uint64) error {
	if err := o.fs.Setxattr(h.path, VersionXattr, fmt.Appendf(nil, "%d:%d", gen, epoch)); err != nil {
		return err
	}
	h.gen.Store(gen)
	h.epoch.Store(epoch)
	return nil
}

// create creates the object's file and records its owner and, from acc,
// the layout generation and truncate epoch it is created at. It holds the
// object's lock exclusively, so no request sees the file before its owner
// is set and a failed creation is undone before anyone wrote to it. A
// destroyed object is never created again: ErrStale.
func (o *OST) create(obj Object, acc *Access) error {
	sh := o.shardOf(obj.ID)
	sh.Lock()
	defer sh.Unlock()
	if o.tomb.isDead(obj.ID) {
		return ErrStale
	}
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
	h := &handle{key: obj.ID, path: path, f: f}
	if acc != nil && (acc.Gen != 0 || acc.Epoch != 0) {
		if err := o.setVersion(h, acc.Gen, acc.Epoch); err != nil && !errors.Is(err, syscall.ENOTSUP) {
			f.Close()
			o.fs.Remove(path)
			return err
		}
	}
	o.put(o.cache(h))
	return nil
}

// fallocate applies a proto.Falloc* mode to a file, falling back where the
// local file system lacks a mode: zeroes are written for a hole it cannot
// punch or a range it cannot zero.
func fallocate(f vfile, mode uint32, off, length int64) error {
	var flags uint32
	switch mode {
	case proto.FallocAlloc:
	case proto.FallocKeepSize:
		flags = unix.FALLOC_FL_KEEP_SIZE
	case proto.FallocPunchHole:
		flags = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	case proto.FallocZeroRange:
		flags = unix.FALLOC_FL_ZERO_RANGE
	default:
		return fmt.Errorf("oss: fallocate mode %d: %w", mode, syscall.EOPNOTSUPP)
	}
	err := f.Fallocate(flags, off, length)
	if err == nil || !errors.Is(err, syscall.EOPNOTSUPP) || mode == proto.FallocAlloc || mode == proto.FallocKeepSize {
		return err
	}
	// Punch and zero without file system support: write zeros over what
	// the file holds (a punch past the end changes nothing), and let a
	// zero range grow the file as fallocate would.
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := off + length
	if mode == proto.FallocPunchHole {
		end = min(end, fi.Size())
	}
	zeros := make([]byte, min(max(end-off, 0), 1<<20))
	for pos := off; pos < end; pos += int64(len(zeros)) {
		n := min(int64(len(zeros)), end-pos)
		if _, err := f.WriteAt(zeros[:n], pos); err != nil {
			return err
		}
	}
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
