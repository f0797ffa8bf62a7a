package fuse

import (
	"sync"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
)

// readReply answers a READ with the buffers of a client.ReadView. go-fuse
// writes a result that has Slices to /dev/fuse with one writev, header and
// data together, and then calls Done, which gives the view's readahead
// buffers back: the data reaches the kernel without a copy in user space.
type readReply struct {
	view client.ReadView
}

var _ = (gofuse.ReadResult)((*readReply)(nil))

// readReplies recycles replies, and with them the view's slices, so that a
// read allocates nothing.
var readReplies = sync.Pool{New: func() any { return new(readReply) }}

// Size returns the number of bytes read.
func (r *readReply) Size() int { return r.view.Len() }

// Slices returns the data as it lies in the view's buffers.
func (r *readReply) Slices() ([][]byte, gofuse.Status) { return r.view.Bufs, gofuse.OK }

// Bytes returns the data in one slice, copied into buf; go-fuse uses it only
// where it cannot write Slices.
func (r *readReply) Bytes(buf []byte) ([]byte, gofuse.Status) {
	buf = buf[:0]
	for _, b := range r.view.Bufs {
		buf = append(buf, b...)
	}
	return buf, gofuse.OK
}

// Done gives the view's buffers back once the reply has been written.
func (r *readReply) Done() {
	r.view.Release()
	readReplies.Put(r)
}
