package fsx

import "golang.org/x/sys/unix"

// model is what the file under test must hold: its bytes, whose length is
// its size. Every operation the engine performs on the real file it also
// applies here, with the semantics Linux gives it on a local filesystem.
type model struct {
	data []byte
}

// size is the file size the model expects.
func (m *model) size() int64 { return int64(len(m.data)) }

// write stores p at off, extending the file (with zeros in any gap).
func (m *model) write(off int64, p []byte) {
	if end := off + int64(len(p)); end > m.size() {
		m.truncate(end)
	}
	copy(m.data[off:], p)
}

// truncate sets the size; bytes past the old end read as zeros.
func (m *model) truncate(size int64) {
	if size <= m.size() {
		m.data = m.data[:size]
		return
	}
	if int64(cap(m.data)) >= size {
		old := len(m.data)
		m.data = m.data[:size]
		clear(m.data[old:])
		return
	}
	grown := make([]byte, size, size+size/4)
	copy(grown, m.data)
	m.data = grown
}

// zero clears [off, off+n) within the current size.
func (m *model) zero(off, n int64) {
	end := min(off+n, m.size())
	if off < end {
		clear(m.data[off:end])
	}
}

// fallocate applies fallocate(2) with mode to [off, off+n): mode 0 and
// ZERO_RANGE extend the size unless KEEP_SIZE is set, PUNCH_HOLE and
// ZERO_RANGE read back as zeros, and preallocation leaves data alone.
func (m *model) fallocate(mode uint32, off, n int64) {
	if mode&unix.FALLOC_FL_PUNCH_HOLE != 0 || mode&unix.FALLOC_FL_ZERO_RANGE != 0 {
		m.zero(off, n)
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+n > m.size() {
		m.truncate(off + n)
	}
}

// slice returns a copy of [off, off+n) clipped to the size, as a read of
// the file returns it.
func (m *model) slice(off, n int64) []byte {
	end := min(off+n, m.size())
	if off >= end {
		return nil
	}
	return append([]byte(nil), m.data[off:end]...)
}

// pattern fills p with the bytes step writes at file offset off: the low
// byte of the step number plus the offset modulo a prime, so that a wrong
// byte found later tells which step (modulo 256) wrote it.
func pattern(p []byte, step int, off int64) {
	for i := range p {
		p[i] = byte(step) + byte((off+int64(i))%251)
	}
}
