package lock

import (
	"slices"
	"sync"
)

// shardCount spreads inodes over independent maps so that requests on
// different inodes rarely meet on one mutex.
const shardCount = 64

// shard maps inode numbers to their lock state. An inode has an entry while
// it has locks or while some goroutine has it pinned (which every waiter
// does), and no longer.
type shard struct {
	mu     sync.Mutex
	inodes map[uint64]*inodeState // guarded by mu
}

// Lock order: shard.mu, then inodeState.mu, then waitGraph.mu. A goroutine
// never takes a shard's mutex while it holds an inode's.

func (m *Manager) shardOf(ino uint64) *shard {
	return &m.shards[(ino^ino>>17)%shardCount]
}

// pin returns ino's state, referenced and with its mutex held. With create
// it makes the state if ino has none and records session as one that may
// hold locks there; without, it returns nil if ino has no state.
func (m *Manager) pin(ino, session uint64, create bool) *inodeState {
	sh := m.shardOf(ino)
	sh.mu.Lock()
	st := sh.inodes[ino]
	if st == nil {
		if !create {
			sh.mu.Unlock()
			return nil
		}
		st = &inodeState{ino: ino}
		sh.inodes[ino] = st
	}
	if create && !slices.Contains(st.sessions, session) {
		st.sessions = append(st.sessions, session)
	}
	st.refs++
	sh.mu.Unlock()
	st.mu.Lock()
	return st
}

// unlockAndUnpin releases st's mutex and then its reference.
func (m *Manager) unlockAndUnpin(st *inodeState) {
	st.mu.Unlock()
	m.unpin(st)
}

// unpin drops a reference taken by pin; st's mutex must not be held. The
// last reference removes a state without locks from its shard, or else
// trims its sessions to those that still hold locks there.
func (m *Manager) unpin(st *inodeState) {
	sh := m.shardOf(st.ino)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st.refs--
	if st.refs > 0 {
		return
	}
	// With no reference left no goroutine can reach st but through the
	// shard, whose mutex every changer took after its last change.
	if len(st.posix) == 0 && len(st.flock) == 0 {
		delete(sh.inodes, st.ino)
		return
	}
	st.sessions = st.sessions[:0]
	for _, list := range [][]held{st.posix, st.flock} {
		for _, h := range list {
			if !slices.Contains(st.sessions, h.owner.session) {
				st.sessions = append(st.sessions, h.owner.session)
			}
		}
	}
}

// change applies mutate to st, whose mutex the caller holds, then hands
// whatever became free to the inode's waiters and brings their wait-for
// edges up to date. While st has fcntl waiters the graph's mutex is held
// across both, so that no deadlock check sees their edges stale.
func (m *Manager) change(st *inodeState, mutate func()) {
	graphHeld := st.posixWaiters > 0
	if graphHeld {
		m.graph.mu.Lock()
	}
	mutate()
	m.wake(st)
	if graphHeld {
		m.graph.mu.Unlock()
	}
	if m.afterChange != nil {
		m.afterChange(st)
	}
}
