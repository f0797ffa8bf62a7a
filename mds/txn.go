package mds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// mtx is one attempt of a metadata transaction: a kv.Txn plus a cache of
// the inodes it read, so that an operation touching one inode through two
// names (rename within a directory, a link in the same directory) sees and
// writes one copy. Writes to cached inodes are flushed when the body
// returns without error. Entries read or written are cached too, so that
// checking a name twice (create, then the shared newEntry) reads it once.
type mtx struct {
	ctx   context.Context
	kv    kv.Txn
	k     keys
	now   int64 // the operation's timestamp, unix nanoseconds
	cache map[uint64]*inode
	dirty []uint64 // inodes to write back, in first-touch order
	gone  []uint64 // inodes to delete
	dents []cachedEntry
	// shards are the directory change shards read or written (dirshard.go);
	// touched says a directory's entries changed (at now), replay that
	// the request was answered from its recorded reply.
	shards  map[shardKey]*dirShard
	touched bool
	replay  bool
	// queued are the destroy-queue keys the transaction wrote.
	queued [][]byte
	// For the break of metadata leases before the commit (leasing.go):
	// the names added or removed, and the inodes made.
	names []proto.LeaseName
	fresh []uint64
	// events are the changelog events of the operation, written by
	// update when it commits (changelog.go).
	events []changelogEvent
	// What the inodes read counted under for quotas, whether this
	// operation takes bytes at the MDS (a limit is then enforced on
	// them), and the service's cache of IDs without limits (quota.go).
	quotaBefore map[uint64]quotaKeyOf
	quotaBytes  bool
	quotaCache  *noLimits
}

// cachedEntry is a directory entry a transaction read or wrote.
type cachedEntry struct {
	parent uint64
	name   string
	d      dentry
	ok     bool // false: the entry does not exist
}

// update runs fn as one read-write transaction, retried on conflict, and
// bounded by this service's MDT leases (fencing: see ownership.go).
//
// Before each attempt commits, it breaks the metadata leases on what it
// changes (breakFor); the break ends once the update has.
func (s *Service) update(ctx context.Context, fn func(t *mtx) error) error {
	var tk changelogTicket // numbers in flight until the commit is over
	defer s.changelogRelease(&tk)
	var breaks []*leaseBreak
	var last *mtx
	err := s.db.UpdateBounded(ctx, s.leaseBound, func(tx kv.Txn) error {
		s.changelogRelease(&tk) // an earlier attempt did not commit
		t := s.newMtx(ctx, tx)
		last = t
		if err := fn(t); err != nil {
			return err
		}
		b, err := s.breakFor(ctx, t)
		if err != nil {
			return err
		}
		if b != nil {
			breaks = append(breaks, b)
		}
		if err := t.flush(); err != nil {
			return err
		}
		return s.changelogWrite(t, &tk)
	})
	for i, b := range breaks {
		last := i == len(breaks)-1
		granted := b.release(err == nil && last)
		if c := callerOf(ctx); c != nil && last {
			c.granted = granted
		}
	}
	if c := callerOf(ctx); c != nil && err == nil && last.touched && !last.replay {
		c.when = last.now
	}
	if err == nil && len(last.queued) > 0 {
		s.hints.add(last.queued)
	}
	if errors.Is(err, kv.ErrFenced) {
		// This MDS's lease ran out (it may have lost its MDTs): nothing
		// was committed, and the client resends to the owner (EREMOTE).
		return fmt.Errorf("mds: %w: %w: %w", err, ErrNotOwner, syscall.EREMOTE)
	}
	return err
}

// updateInode is update for an operation that changes one inode and no
// directory entry (size reports, closes, setattr, xattrs): it holds the
// inode's in-process lock, so that many clients closing one shared file
// queue instead of failing each other's commits. BenchmarkSharedFileCloses
// (64 ranks closing one file at once): 27 us per close with the lock, 410 us
// and 2.5 conflict retries per close without it.
func (s *Service) updateInode(ctx context.Context, ino uint64, fn func(t *mtx) error) error {
	mu := s.inoLocks.of(ino)
	mu.Lock()
	defer mu.Unlock()
	return s.update(ctx, fn)
}

// view runs fn in a read-only snapshot.
func (s *Service) view(ctx context.Context, fn func(t *mtx) error) error {
	return s.db.View(ctx, func(tx kv.Txn) error { return fn(s.newMtx(ctx, tx)) })
}

func (s *Service) newMtx(ctx context.Context, tx kv.Txn) *mtx {
	return &mtx{ctx: ctx, kv: tx, k: s.keys, now: s.now().UnixNano(), cache: map[uint64]*inode{}, quotaCache: &s.quota}
}

// inode returns ino's record, or ENOENT.
func (t *mtx) inode(ino uint64) (*inode, error) { return t.readInode(ino, false) }

// inodeAttrs is inode for a reader that needs no file layout: it leaves
// Layout nil, sparing its decode, and the record it returns must not be
// written back (flush fails on it).
func (t *mtx) inodeAttrs(ino uint64) (*inode, error) { return t.readInode(ino, true) }

// readInode reads ino's record through the cache, without the layout if
// attrsOnly.
func (t *mtx) readInode(ino uint64, attrsOnly bool) (*inode, error) {
	if in, ok := t.cache[ino]; ok && (in == nil || attrsOnly || !in.partial) {
		if in == nil {
			return nil, fmt.Errorf("mds: inode %#x: %w", ino, syscall.ENOENT)
		}
		return in, nil
	}
	b, err := t.kv.Get(t.ctx, t.k.inode(ino))
	if err != nil {
		return nil, fmt.Errorf("mds: read inode %#x: %w", ino, err)
	}
	if b == nil {
		return nil, fmt.Errorf("mds: inode %#x: %w", ino, syscall.ENOENT)
	}
	in := &inode{}
	if attrsOnly {
		err = decodeInodeAttrs(b, in)
	} else {
		err = decode(b, in)
	}
	if err != nil {
		return nil, err
	}
	in.Ino = ino
	t.cache[ino] = in
	t.noteQuota(in)
	return in, nil
}

// inodesAttrs is inodeAttrs for many inodes, reading those not cached in
// one batch, for readdirplus; a missing inode is ENOENT.
func (t *mtx) inodesAttrs(inos []uint64) ([]*inode, error) {
	out := make([]*inode, len(inos))
	var miss []int
	var keys [][]byte
	for i, ino := range inos {
		if in, ok := t.cache[ino]; ok {
			if in == nil {
				return nil, fmt.Errorf("mds: inode %#x: %w", ino, syscall.ENOENT)
			}
			out[i] = in
			continue
		}
		miss = append(miss, i)
		keys = append(keys, t.k.inode(ino))
	}
	if len(keys) == 0 {
		return out, nil
	}
	vals, err := t.kv.BatchGet(t.ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("mds: read %d inodes: %w", len(keys), err)
	}
	for j, b := range vals {
		ino := inos[miss[j]]
		if b == nil {
			return nil, fmt.Errorf("mds: inode %#x: %w", ino, syscall.ENOENT)
		}
		in := &inode{}
		if err := decodeInodeAttrs(b, in); err != nil {
			return nil, err
		}
		in.Ino = ino
		t.cache[ino] = in
		t.noteQuota(in)
		out[miss[j]] = in
	}
	return out, nil
}

// dir returns ino's record if it is a directory, else ENOTDIR.
func (t *mtx) dir(ino uint64) (*inode, error) { return checkDir(t.inode(ino)) }

// dirAttrs is dir for a reader (see inodeAttrs).
func (t *mtx) dirAttrs(ino uint64) (*inode, error) { return checkDir(t.inodeAttrs(ino)) }

// checkDir passes on a record read if it is a directory, else fails with
// ENOTDIR.
func checkDir(in *inode, err error) (*inode, error) {
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("mds: inode %#x: %w", in.Ino, syscall.ENOTDIR)
	}
	return in, nil
}

// put records a new or changed inode for write-back.
func (t *mtx) put(in *inode) {
	t.cache[in.Ino] = in
	if !slices.Contains(t.dirty, in.Ino) {
		t.dirty = append(t.dirty, in.Ino)
	}
	t.gone = slices.DeleteFunc(t.gone, func(i uint64) bool { return i == in.Ino })
}

// remove deletes an inode and its xattrs, and a directory's change shards.
func (t *mtx) remove(in *inode) error {
	if in.isDir() {
		if err := t.dropShards(in.Ino); err != nil {
			return err
		}
	}
	t.cache[in.Ino] = nil
	t.dirty = slices.DeleteFunc(t.dirty, func(i uint64) bool { return i == in.Ino })
	t.gone = append(t.gone, in.Ino)
	start, end := t.k.xattrRange(in.Ino)
	var names [][]byte
	err := t.kv.Scan(t.ctx, start, end, 0, func(k, _ []byte) bool {
		names = append(names, slices.Clone(k))
		return true
	})
	if err != nil {
		return fmt.Errorf("mds: scan xattrs of %#x: %w", in.Ino, err)
	}
	for _, k := range names {
		if err := t.kv.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// flush writes back dirty inodes and deletes removed ones.
func (t *mtx) flush() error {
	if err := t.quotaFlush(); err != nil {
		return err
	}
	for _, ino := range t.dirty {
		b, err := encode(t.cache[ino])
		if err != nil {
			return err
		}
		if err := t.kv.Set(t.k.inode(ino), b); err != nil {
			return fmt.Errorf("mds: write inode %#x: %w", ino, err)
		}
	}
	for _, ino := range t.gone {
		if err := t.kv.Delete(t.k.inode(ino)); err != nil {
			return fmt.Errorf("mds: delete inode %#x: %w", ino, err)
		}
	}
	return nil
}

// lookup returns the entry name of parent, and whether it exists.
func (t *mtx) lookup(parent uint64, name string) (dentry, bool, error) {
	if e := t.findEntry(parent, name); e != nil {
		return e.d, e.ok, nil
	}
	b, err := t.kv.Get(t.ctx, t.k.dentry(parent, name))
	if err != nil {
		return dentry{}, false, fmt.Errorf("mds: read entry %q of %#x: %w", name, parent, err)
	}
	var d dentry
	if b != nil {
		if err := decode(b, &d); err != nil {
			return dentry{}, false, err
		}
	}
	t.cacheEntry(parent, name, d, b != nil)
	return d, b != nil, nil
}

// findEntry returns the cached entry name of parent, or nil. A
// transaction touches a few entries, so a list does.
func (t *mtx) findEntry(parent uint64, name string) *cachedEntry {
	for i := range t.dents {
		if e := &t.dents[i]; e.parent == parent && e.name == name {
			return e
		}
	}
	return nil
}

// cacheEntry remembers an entry read or written (ok false: absent).
func (t *mtx) cacheEntry(parent uint64, name string, d dentry, ok bool) {
	if e := t.findEntry(parent, name); e != nil {
		e.d, e.ok = d, ok
		return
	}
	t.dents = append(t.dents, cachedEntry{parent: parent, name: name, d: d, ok: ok})
}

// link writes the entry name of parent pointing at in.
func (t *mtx) link(parent uint64, name string, in *inode) error {
	d := dentry{Ino: in.Ino, Type: in.Mode & modeType}
	b, err := encode(&d)
	if err != nil {
		return err
	}
	if err := t.kv.Set(t.k.dentry(parent, name), b); err != nil {
		return err
	}
	t.cacheEntry(parent, name, d, true)
	t.names = append(t.names, proto.LeaseName{Dir: parent, Name: name})
	return nil
}

// unlinkEntry deletes the entry name of parent.
func (t *mtx) unlinkEntry(parent uint64, name string) error {
	if err := t.kv.Delete(t.k.dentry(parent, name)); err != nil {
		return err
	}
	t.cacheEntry(parent, name, dentry{}, false)
	t.names = append(t.names, proto.LeaseName{Dir: parent, Name: name})
	return nil
}

// empty reports whether directory ino has no entries.
func (t *mtx) empty(ino uint64) (bool, error) {
	start, end := t.k.dentryRange(ino, "")
	found := false
	err := t.kv.Scan(t.ctx, start, end, 1, func(_, _ []byte) bool {
		found = true
		return false
	})
	if err != nil {
		return false, fmt.Errorf("mds: scan directory %#x: %w", ino, err)
	}
	return !found, nil
}

// touch marks a directory's contents changed: mtime and ctime now.
func (t *mtx) touch(dir *inode) {
	dir.Mtime, dir.Ctime = t.now, t.now
	t.put(dir)
}

// changed marks an inode's metadata changed: ctime now.
func (t *mtx) changed(in *inode) {
	in.Ctime = t.now
	t.put(in)
}

// setRecord encodes v under key.
func (t *mtx) setRecord(key []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	return t.kv.Set(key, b)
}

// getRecord decodes key into v and reports whether it exists.
func (t *mtx) getRecord(key []byte, v any) (bool, error) {
	b, err := t.kv.Get(t.ctx, key)
	if err != nil || b == nil {
		return false, err
	}
	return true, decode(b, v)
}

// isErrno reports whether err carries errno.
func isErrno(err error, errno syscall.Errno) bool { return errors.Is(err, errno) }
