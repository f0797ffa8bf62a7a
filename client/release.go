package client

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// Deferred releases. Closing a file opened read-only needs nothing back
// from the MDS (no size, no error to report), so the close is queued and
// sent with others in one OpCloseMany a moment later: a small-file reader
// pays for an open and a read, not a third round trip. Until the release
// arrives the MDS counts the file as open here, as if the close came a few
// milliseconds later (an unlinked file's space comes back then).

// releaseDelay is how long a deferred release waits for others to share
// its request; releaseBatch releases fill a request at once.
const (
	releaseDelay = 5 * time.Millisecond
	releaseBatch = 256
)

// releaser holds the deferred releases.
type releaser struct {
	mu      sync.Mutex
	pending []proto.CloseReq
	kick    chan struct{}
	idle    *sync.Cond // signalled when a flush ends
	sending int
}

func (r *releaser) init() {
	r.kick = make(chan struct{}, 1)
	r.idle = sync.NewCond(&r.mu)
}

// deferRelease queues the close of a read-only handle.
func (c *Client) deferRelease(req proto.CloseReq) {
	r := &c.rel
	r.mu.Lock()
	r.pending = append(r.pending, req)
	n := len(r.pending)
	r.mu.Unlock()
	if n == 1 || n >= releaseBatch {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// releaseLoop sends deferred releases until the client closes.
func (c *Client) releaseLoop() {
	defer c.wg.Done()
	r := &c.rel
	for {
		select {
		case <-c.bg.Done():
			return
		case <-r.kick:
		}
		select {
		case <-c.bg.Done():
		case <-time.After(releaseDelay):
		}
		c.flushReleases(c.bg)
	}
}

// flushReleases sends every deferred release and waits for them (and for
// a flush already under way).
func (c *Client) flushReleases(ctx context.Context) {
	r := &c.rel
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	if len(batch) == 0 {
		for r.sending > 0 {
			r.idle.Wait()
		}
		r.mu.Unlock()
		return
	}
	r.sending++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.sending--
		r.idle.Broadcast()
		for r.sending > 0 {
			r.idle.Wait()
		}
		r.mu.Unlock()
	}()
	byMDS := map[string][]proto.CloseReq{}
	for _, req := range batch {
		addr := c.mdsFor(req.Ino)
		byMDS[addr] = append(byMDS[addr], req)
	}
	for addr, reqs := range byMDS {
		for len(reqs) > 0 {
			n := min(len(reqs), releaseBatch)
			err := c.rpc.Call(ctx, addr, proto.OpCloseMany, &proto.CloseManyReq{Closes: reqs[:n]}, nil)
			if err != nil {
				// An MDS restarting, an MDT moved: one at a time,
				// through the resending path.
				for i := range reqs[:n] {
					err := c.mdsCall(ctx, reqs[i].Ino, proto.OpClose, &reqs[i], nil)
					if err != nil && !errors.Is(err, syscall.EBADF) && ctx.Err() == nil {
						c.log.Debug("client: deferred release", "ino", reqs[i].Ino, "err", err)
					}
				}
			}
			reqs = reqs[n:]
		}
	}
}
