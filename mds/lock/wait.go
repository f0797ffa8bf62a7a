package lock

import (
	"context"
	"slices"
	"sync"
	"syscall"
)

// waiter is a blocked request, queued on its inode until it is granted or
// fails. Whoever finishes it sets err and then closes done, under the
// inode's mutex and only once.
type waiter struct {
	ctx   context.Context
	req   Request // normalized
	owner ownerKey
	done  chan struct{}
	err   error // nil once granted

	// blockers are the owners of the locks the request waits for; fcntl
	// requests only, guarded by waitGraph.mu.
	blockers []ownerKey
}

// waitGraph is the wait-for graph of fcntl requests across every inode: an
// owner waits for the owners listed in its waiters' blockers. Each inode
// keeps the edges of its own waiters current, under its mutex, whenever its
// locks or its queue change; so a cycle can only close when a request is
// about to block, which is when enqueue looks for one. flock requests are
// not in the graph: Linux does not detect flock deadlocks either.
type waitGraph struct {
	mu      sync.Mutex
	waiting map[ownerKey][]*waiter // guarded by mu
}

// enqueue records w as waiting for blockers, unless some blocker already
// waits, directly or through others, for w's owner: then waiting would
// deadlock and enqueue returns false. The caller holds w's inode mutex.
func (g *waitGraph) enqueue(w *waiter, blockers []ownerKey) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reachesLocked(blockers, w.owner) {
		return false
	}
	w.blockers = blockers
	g.waiting[w.owner] = append(g.waiting[w.owner], w)
	return true
}

// removeLocked forgets w; g.mu is held.
func (g *waitGraph) removeLocked(w *waiter) {
	ws := slices.DeleteFunc(g.waiting[w.owner], func(x *waiter) bool { return x == w })
	if len(ws) == 0 {
		delete(g.waiting, w.owner)
	} else {
		g.waiting[w.owner] = ws
	}
}

// reachesLocked reports whether target is one of from or is waited for,
// through any chain of waiting owners, by one of them; g.mu is held.
func (g *waitGraph) reachesLocked(from []ownerKey, target ownerKey) bool {
	if len(g.waiting) == 0 {
		return false
	}
	seen := make(map[ownerKey]bool)
	stack := slices.Clone(from)
	for len(stack) > 0 {
		o := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if o == target {
			return true
		}
		if seen[o] {
			continue
		}
		seen[o] = true
		for _, w := range g.waiting[o] {
			stack = append(stack, w.blockers...)
		}
	}
	return false
}

// wake walks st's queue in arrival order: it fails the waiters whose context
// is done, grants those nothing blocks any more and refreshes the edges of
// the rest. A grant that frees ranges (a downgrade) may unblock a waiter the
// walk has passed, so the walk then starts over; any other grant may block
// such a waiter more, so its edges are refreshed again. The caller holds
// st.mu, and the graph's mutex if st has fcntl waiters.
func (m *Manager) wake(st *inodeState) {
	for len(st.waiters) > 0 {
		freed, granted := false, false
		kept := st.waiters[:0]
		for _, w := range st.waiters {
			if w.ctx.Err() != nil {
				m.finish(st, w, syscall.EINTR)
				continue
			}
			if w.req.Flock {
				if st.flockBlocked(w.owner, w.req.Type) {
					kept = append(kept, w)
					continue
				}
			} else if w.blockers = st.posixBlockers(w.owner, w.req, w.blockers[:0]); len(w.blockers) > 0 {
				kept = append(kept, w)
				continue
			}
			freed = st.apply(w.owner, w.req) || freed
			granted = true
			m.finish(st, w, nil)
		}
		clear(st.waiters[len(kept):])
		st.waiters = kept
		if freed {
			continue
		}
		if granted {
			for _, w := range st.waiters {
				if !w.req.Flock {
					w.blockers = st.posixBlockers(w.owner, w.req, w.blockers[:0])
				}
			}
		}
		return
	}
}

// finish completes w with err; the caller has taken w off st's queue and
// holds st.mu, and the graph's mutex for an fcntl waiter.
func (m *Manager) finish(st *inodeState, w *waiter, err error) {
	if !w.req.Flock {
		st.posixWaiters--
		m.graph.removeLocked(w)
	}
	w.err = err
	close(w.done)
}
