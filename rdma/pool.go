package rdma

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// Pool size classes: powers of two from 4 KiB to 1 GiB.
const (
	minPoolShift = 12
	maxPoolShift = 30
)

// ErrPoolExhausted: a Pool would exceed its limit on registered bytes.
var ErrPoolExhausted = errors.New("rdma: registered memory limit reached")

// Pool hands out registered buffers by power-of-two size class. Each buffer
// is registered once, when first needed, and reused until the pool closes:
// registration costs a system call and pins pages, far too slow per request.
// It is safe for concurrent use.
type Pool struct {
	dom    Domain
	access Access
	limit  int64 // registered bytes at most; 0: no limit

	mu         sync.Mutex
	free       [maxPoolShift + 1][]*Buffer
	registered int64
	inUse      int
	closed     bool
}

// Buffer is a registered buffer lent by a Pool.
type Buffer struct {
	pool   *Pool
	region Region
	shift  int
	n      int
	lent   bool
}

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	Registered int64 // bytes registered now
	InUse      int   // buffers lent and not yet returned
}

// NewPool returns a pool registering buffers in dom with access; limit
// bounds the bytes it keeps registered (0: no bound).
func NewPool(dom Domain, access Access, limit int64) *Pool {
	return &Pool{dom: dom, access: access, limit: limit}
}

// Domain returns the domain the pool registers in.
func (p *Pool) Domain() Domain { return p.dom }

// Get lends a buffer of n bytes (n > 0). It registers a new one when no
// idle buffer of n's class is left, freeing idle buffers of other classes
// first if the limit requires; it fails with ErrPoolExhausted when even
// that is not enough, and with ErrClosed after Close.
func (p *Pool) Get(n int) (*Buffer, error) {
	shift := poolClass(n)
	if n <= 0 || shift > maxPoolShift {
		return nil, fmt.Errorf("rdma: buffer of %d bytes: size out of range", n)
	}
	size := int64(1) << shift
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if l := p.free[shift]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[shift] = l[:len(l)-1]
		p.lend(b, n)
		p.mu.Unlock()
		return b, nil
	}
	var evict []*Buffer
	if p.limit > 0 {
		for s := range p.free {
			for p.registered+size > p.limit && len(p.free[s]) > 0 {
				l := p.free[s]
				evict = append(evict, l[len(l)-1])
				p.free[s] = l[:len(l)-1]
				p.registered -= int64(1) << s
			}
		}
		if p.registered+size > p.limit {
			p.mu.Unlock()
			closeBuffers(evict)
			return nil, fmt.Errorf("%w: %s of %s registered, %s more wanted", ErrPoolExhausted,
				byteSize(p.registered), byteSize(p.limit), byteSize(size))
		}
	}
	// Count the registration before making it, so concurrent Gets respect
	// the limit; undo it if registration fails.
	p.registered += size
	p.mu.Unlock()
	closeBuffers(evict)

	r, err := p.dom.Register(int(size), p.access)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.registered -= size
		return nil, err
	}
	b := &Buffer{pool: p, region: r, shift: shift}
	if p.closed {
		p.registered -= size
		_ = r.Close()
		return nil, ErrClosed
	}
	p.lend(b, n)
	return b, nil
}

// lend marks b lent for n bytes; p.mu is held.
func (p *Pool) lend(b *Buffer, n int) {
	b.n, b.lent = n, true
	p.inUse++
}

// Put returns a buffer. Only a buffer no work request refers to any more
// may be returned; after Close it is deregistered instead.
func (p *Pool) Put(b *Buffer) {
	if b == nil {
		return
	}
	p.mu.Lock()
	if !b.lent {
		p.mu.Unlock()
		return
	}
	b.lent = false
	p.inUse--
	if p.closed {
		p.registered -= int64(1) << b.shift
		p.mu.Unlock()
		_ = b.region.Close()
		return
	}
	p.free[b.shift] = append(p.free[b.shift], b)
	p.mu.Unlock()
}

// Close deregisters the idle buffers; buffers still lent are deregistered
// as they come back.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var idle []*Buffer
	for s := range p.free {
		idle = append(idle, p.free[s]...)
		p.registered -= int64(len(p.free[s])) << s
		p.free[s] = nil
	}
	p.mu.Unlock()
	return closeBuffers(idle)
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Registered: p.registered, InUse: p.inUse}
}

// Bytes returns the buffer's n bytes.
func (b *Buffer) Bytes() []byte { return b.region.Bytes()[:b.n] }

// Cap returns the registered size of the buffer, at least Len.
func (b *Buffer) Cap() int { return 1 << b.shift }

// Region returns the registered region the buffer is.
func (b *Buffer) Region() Region { return b.region }

// Remote describes the buffer's n bytes for a peer.
func (b *Buffer) Remote() Remote { return b.region.Remote().Slice(0, b.n) }

// poolClass returns the shift of the smallest class holding n bytes.
func poolClass(n int) int {
	if n <= 1<<minPoolShift {
		return minPoolShift
	}
	return bits.Len(uint(n - 1))
}

// closeBuffers deregisters buffers and returns the first error.
func closeBuffers(bs []*Buffer) error {
	var first error
	for _, b := range bs {
		if err := b.region.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
