package oss

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/stratafs/strata/layout"
)

// objKey identifies an object within one OST.
type objKey = layout.ObjectID

// handle is an open object file shared by every request on the object.
// A request holds a reference (refs) for as long as it uses f; a handle
// dropped from the cache is closed when its last reference goes.
type handle struct {
	key  objKey
	path string
	f    vfile

	refs int           // guarded by handleCache.mu
	elem *list.Element // position in the LRU list; nil once dropped

	// dirty is set by writes and cleared by a successful fdatasync, so an
	// evicted handle with unsynced data is flushed before it is closed and
	// a write-back error is not lost with the descriptor.
	dirty atomic.Bool
	// dirSynced is set once the object's directory entry is known to be
	// durable (its fan-out directory was fsynced after this handle was
	// opened), so a sync never leaves a durable file that a crash unlinks.
	dirSynced atomic.Bool

	// gen and epoch are the object's VersionXattr, read when the handle
	// is opened and raised by punches, which hold the object's lock only
	// shared: hence atomics.
	gen   atomic.Uint32
	epoch atomic.Uint64
}

// handleCache is a bounded LRU cache of open object files, so a stream of
// writes to an object does not reopen it for every request.
type handleCache struct {
	mu  sync.Mutex
	max int
	m   map[objKey]*handle
	lru list.List // front: most recently used
}

func newHandleCache(max int) *handleCache {
	return &handleCache{max: max, m: make(map[objKey]*handle)}
}

// get returns the cached handle for key with a reference taken, or nil.
func (c *handleCache) get(key objKey) *handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[key]
	if h == nil {
		return nil
	}
	h.refs++
	c.lru.MoveToFront(h.elem)
	return h
}

// add caches h (just opened) with one reference taken. If another request
// cached the object first, add returns that handle instead and h is
// returned in closeNow for the caller to close. Handles evicted to make
// room, and no longer referenced, are returned in closeNow too; the caller
// closes them outside the lock.
func (c *handleCache) add(h *handle) (got *handle, closeNow []*handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[h.key]; old != nil {
		old.refs++
		c.lru.MoveToFront(old.elem)
		return old, []*handle{h}
	}
	h.refs = 1
	h.elem = c.lru.PushFront(h)
	c.m[h.key] = h
	for len(c.m) > c.max {
		victim := c.lru.Back().Value.(*handle)
		if c.dropLocked(victim) {
			closeNow = append(closeNow, victim)
		}
	}
	return h, closeNow
}

// release drops a reference to h. It reports whether h must now be closed
// by the caller (it was dropped from the cache and this was the last use).
func (c *handleCache) release(h *handle) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.refs--
	return h.refs == 0 && h.elem == nil
}

// remove drops key from the cache. It returns the handle if the caller
// must close it now, or nil if it was not cached or is still in use (the
// last user closes it).
func (c *handleCache) remove(key objKey) *handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.m[key]
	if h == nil || !c.dropLocked(h) {
		return nil
	}
	return h
}

// dropLocked removes h from the map and the LRU list and reports whether
// it is unreferenced (so it can be closed).
func (c *handleCache) dropLocked(h *handle) bool {
	delete(c.m, h.key)
	c.lru.Remove(h.elem)
	h.elem = nil
	return h.refs == 0
}

// drain empties the cache and returns the unreferenced handles to close.
func (c *handleCache) drain() []*handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*handle
	for _, h := range c.m {
		if c.dropLocked(h) {
			out = append(out, h)
		}
	}
	return out
}

// len returns the number of cached handles.
func (c *handleCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
