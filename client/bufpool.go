package client

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Buffers for write-behind chunks and readahead are pooled in power-of-two
// size classes from minChunk to maxChunk, so that a sequential stream
// recycles the same few megabytes instead of feeding the garbage collector.
// A pool holds a pointer to a buffer's first byte, which an interface holds
// without allocating; the class gives the capacity back.
const (
	minChunk   = 64 << 10
	maxChunk   = 4 << 20
	numClasses = 7 // 64 KiB << 0 ... 64 KiB << 6 = 4 MiB
)

var bufPools [numClasses]sync.Pool

// sizeClass returns the class whose buffers hold n bytes, or -1 if n is
// larger than maxChunk.
func sizeClass(n int) int {
	if n <= minChunk {
		return 0
	}
	c := bits.Len(uint(n-1)) - bits.Len(uint(minChunk-1))
	if c >= numClasses {
		return -1
	}
	return c
}

// getBuf returns a buffer of length n, pooled when n fits a size class.
func getBuf(n int) []byte {
	c := sizeClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*byte); ok {
		return unsafe.Slice(p, minChunk<<c)[:n]
	}
	return make([]byte, n, minChunk<<c)
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b []byte) {
	c := sizeClass(cap(b))
	if c < 0 || cap(b) != minChunk<<c {
		return
	}
	bufPools[c].Put(unsafe.SliceData(b))
}

// budget bounds the dirty bytes held over all files of a client. Writers
// wait in acquire until completed flushes release enough.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	used  int64
	peak  int64 // the most used has been
	limit int64
}

func (b *budget) init(limit int64) {
	b.limit = limit
	b.cond = sync.NewCond(&b.mu)
}

// acquire takes n bytes, waiting while that would exceed the limit (unless
// nothing is held, so a single request larger than the limit still goes).
// While it waits it calls kick, with no lock held, so that buffered data of
// every file starts flushing and frees budget.
func (b *budget) acquire(n int64, kick func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit {
		b.mu.Unlock()
		kick()
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			break
		}
		b.cond.Wait()
	}
	b.used += n
	b.peak = max(b.peak, b.used)
}

// release returns n bytes.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// WriteBehindStats is the memory a client holds for write-behind.
type WriteBehindStats struct {
	// Dirty is the bytes written through the client that the OSSes have
	// not yet acknowledged (buffered or in flight), over all files.
	Dirty int64
	// Peak is the most Dirty has been since the client started.
	Peak int64
	// Limit is Config.WriteBehindTotal. Dirty stays within it, except
	// that a single write larger than the whole limit is taken when
	// nothing else is held.
	Limit int64
}

// WriteBehindStats returns the client's write-behind counters.
func (c *Client) WriteBehindStats() WriteBehindStats {
	b := &c.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	return WriteBehindStats{Dirty: b.used, Peak: b.peak, Limit: b.limit}
}
