package oss

import (
	"math/bits"
	"sync"
)

// Read buffers come in power-of-two size classes from minBufClass to
// MaxRead, so a 4 KiB read does not hold a 16 MiB buffer.
const (
	minBufShift = 16 // 64 KiB
	maxBufShift = 24 // 16 MiB == MaxRead
	bufClasses  = maxBufShift - minBufShift + 1
)

// bufPool recycles read buffers between requests: a read reply's buffer
// goes back to the pool once rpc has written it to the connection.
type bufPool struct {
	classes [bufClasses]sync.Pool
}

// classOf returns the size class holding n bytes (n <= MaxRead).
func classOf(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// get returns a buffer of length n (0 <= n <= MaxRead).
func (p *bufPool) get(n int) *[]byte {
	c := classOf(n)
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

// put returns a buffer obtained from get.
func (p *bufPool) put(b *[]byte) {
	p.classes[classOf(cap(*b))].Put(b)
}
