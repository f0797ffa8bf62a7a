package fuse

import (
	"sync"
	"sync/atomic"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// Kernel invalidations. While the client holds metadata leases the kernel
// caches entries and attributes for as long as they last; a lease callback
// must take them back out of the kernel. Those writes to /dev/fuse may
// block: invalidating a name takes the directory's lock in the kernel,
// which a request in flight on that directory holds while it waits for
// the MDS, which may be waiting for this very callback to be acknowledged.
// So the callback only queues here (the client acknowledges it once its
// own cache is marked invalid), and one goroutine writes the queue out,
// never from inside a FUSE handler and under no lock a handler takes.

// inval is one queued invalidation: an inode's attributes, and names in it
// if it is a directory.
type inval struct {
	ino   uint64
	names []string
	done  chan struct{} // closed once written
}

// invalQueue is the queue and its writer.
type invalQueue struct {
	mu      sync.Mutex
	items   []inval
	wake    chan struct{} // a token when items were added
	stop    chan struct{}
	stopped bool // unmounted: nothing starts any more
	server  *gofuse.Server

	sent, failed atomic.Uint64
}

// startInval starts writing invalidations to server's kernel.
func (fs *fileSystem) startInval(server *gofuse.Server) {
	q := &fs.inval
	// Under mu: a mount unmounted at once may see OnUnmount (stopInval)
	// run concurrently with this.
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	q.server = server
	q.wake = make(chan struct{}, 1)
	q.stop = make(chan struct{})
	go fs.runInval()
	fs.c.SetLeaseNotify(fs.queueInval)
}

// queueInval queues an invalidation; it never blocks (see above). The
// channel closes once the kernel has it.
func (fs *fileSystem) queueInval(ino uint64, names []string) <-chan struct{} {
	q := &fs.inval
	done := make(chan struct{})
	q.mu.Lock()
	q.items = append(q.items, inval{ino: ino, names: names, done: done})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return done
}

// stopInval ends the writer (at unmount).
func (fs *fileSystem) stopInval() {
	q := &fs.inval
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped && q.stop != nil {
		close(q.stop)
	}
	q.stopped = true
}

// runInval writes queued invalidations to the kernel, for the inodes the
// kernel holds, until stopInval.
func (fs *fileSystem) runInval() {
	q := &fs.inval
	for {
		select {
		case <-q.stop:
			return
		case <-q.wake:
		}
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		for _, it := range items {
			fs.nodesMu.Lock()
			_, known := fs.nodes[it.ino]
			fs.nodesMu.Unlock()
			if known || it.ino == fs.root {
				id := fs.nodeID(it.ino)
				fs.count(q.server.InodeNotify(id, -1, 0))
				for _, n := range it.names {
					fs.count(q.server.EntryNotify(id, n))
				}
			}
			close(it.done)
		}
	}
}

// count tallies an invalidation's outcome: ENOENT (nothing cached) is
// fine.
func (fs *fileSystem) count(st gofuse.Status) {
	if st == gofuse.OK || st == gofuse.ENOENT {
		fs.inval.sent.Add(1)
		return
	}
	fs.inval.failed.Add(1)
}
