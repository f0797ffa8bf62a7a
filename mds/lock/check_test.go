package lock

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// checked is a Manager whose every change is followed by an invariant check
// of the changed inode, under its mutex.
type checked struct {
	*Manager
	t       testing.TB
	changed chan struct{} // poked after every change
	fails   atomic.Int64
}

func newChecked(t testing.TB) *checked {
	c := &checked{Manager: NewManager(), t: t, changed: make(chan struct{}, 1)}
	c.afterChange = func(st *inodeState) {
		if err := c.checkInode(st); err != nil && c.fails.Add(1) <= 10 {
			t.Errorf("ino %d: %v", st.ino, err)
		}
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			c.checkQuiet()
		}
	})
	return c
}

// checkInode verifies st's invariants; the caller holds st.mu.
func (c *checked) checkInode(st *inodeState) error {
	for i, a := range st.posix {
		if a.start < 0 || a.end < a.start || (a.typ != proto.LockRead && a.typ != proto.LockWrite) {
			return fmt.Errorf("bad lock %+v", a)
		}
		if i > 0 && compareHeld(st.posix[i-1], a) > 0 {
			return fmt.Errorf("posix list unsorted at %d", i)
		}
		for _, b := range st.posix[i+1:] {
			switch {
			case a.owner == b.owner && a.overlaps(b.start, b.end):
				return fmt.Errorf("owner's own locks overlap: %+v %+v", a, b)
			case a.owner == b.owner && a.typ == b.typ && a.touches(b.start, b.end):
				return fmt.Errorf("owner's locks not merged: %+v %+v", a, b)
			case a.owner != b.owner && a.overlaps(b.start, b.end) && exclusive(a.typ, b.typ):
				return fmt.Errorf("conflicting locks both granted: %+v %+v", a, b)
			}
		}
	}
	for i, a := range st.flock {
		for _, b := range st.flock[i+1:] {
			if a.owner == b.owner {
				return fmt.Errorf("two flock locks of one owner: %+v %+v", a, b)
			}
			if exclusive(a.typ, b.typ) {
				return fmt.Errorf("conflicting flock locks both granted: %+v %+v", a, b)
			}
		}
	}
	c.graph.mu.Lock()
	defer c.graph.mu.Unlock()
	posix := 0
	for _, w := range st.waiters {
		select {
		case <-w.done:
			return fmt.Errorf("finished waiter still queued: %+v", w.req)
		default:
		}
		if w.req.Flock {
			if !st.flockBlocked(w.owner, w.req.Type) {
				return fmt.Errorf("grantable flock waiter left waiting: %+v", w.req)
			}
			continue
		}
		posix++
		want := st.posixBlockers(w.owner, w.req, nil)
		if len(want) == 0 {
			return fmt.Errorf("grantable waiter left waiting: %+v", w.req)
		}
		if !sameOwners(want, w.blockers) {
			return fmt.Errorf("stale wait-for edges of %+v: have %v, want %v", w.req, w.blockers, want)
		}
		if !slices.Contains(c.graph.waiting[w.owner], w) {
			return fmt.Errorf("waiter %+v missing from the graph", w.req)
		}
	}
	if posix != st.posixWaiters {
		return fmt.Errorf("posixWaiters %d, queue holds %d", st.posixWaiters, posix)
	}
	return nil
}

func sameOwners(a, b []ownerKey) bool {
	if len(a) != len(b) {
		return false
	}
	for _, o := range a {
		if !slices.Contains(b, o) {
			return false
		}
	}
	return true
}

// checkQuiet verifies that a manager whose callers all returned and
// released their locks holds nothing: no inode state, no graph node.
func (c *checked) checkQuiet() {
	c.t.Helper()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for ino, st := range sh.inodes {
			if st.refs != 0 || len(st.posix)+len(st.flock) == 0 {
				c.t.Errorf("ino %d: leftover state: refs %d, %d locks", ino, st.refs, len(st.posix)+len(st.flock))
			}
		}
		sh.mu.Unlock()
	}
	c.graph.mu.Lock()
	defer c.graph.mu.Unlock()
	if len(c.graph.waiting) != 0 {
		c.t.Errorf("wait-for graph not empty: %d owners", len(c.graph.waiting))
	}
}

// waitQueued waits until ino has n queued waiters.
func (c *checked) waitQueued(ino uint64, n int) {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if c.queued(ino) == n {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			c.t.Fatalf("ino %d: %d waiters queued, want %d", ino, c.queued(ino), n)
		}
	}
}

func (c *checked) queued(ino uint64) int {
	st := c.pin(ino, 0, false)
	if st == nil {
		return 0
	}
	defer c.unlockAndUnpin(st)
	return len(st.waiters)
}
