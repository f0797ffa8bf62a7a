package client

// ReadView is the data of one read left where the client holds it:
// File.ReadAtView lends readahead buffers instead of copying them into the
// caller's buffer, and reads what they lack into the caller's buffer. The
// caller sends Bufs on (the FUSE mount writes them to the kernel with one
// writev) and then calls Release. A ReadView is reusable after Release; its
// zero value is ready to use.
type ReadView struct {
	// Bufs holds the bytes read, in file order.
	Bufs [][]byte

	ra   *readAhead
	segs []segment // the read's plan, kept to be reused
	held []*raBuf  // readahead pieces lent to Bufs
}

// Len returns the number of bytes in Bufs.
func (v *ReadView) Len() int {
	n := 0
	for _, b := range v.Bufs {
		n += len(b)
	}
	return n
}

// Release gives the lent buffers back; Bufs is empty afterwards. It may be
// called more than once.
func (v *ReadView) Release() {
	for _, b := range v.held {
		v.ra.unref(b)
	}
	clear(v.held)
	clear(v.Bufs)
	clear(v.segs)
	v.held, v.Bufs, v.segs = v.held[:0], v.Bufs[:0], v.segs[:0]
	v.ra = nil
}
