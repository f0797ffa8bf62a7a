package tikv

import (
	"context"
	"sync"
	"sync/atomic"
)

// tsShare hands read-only transactions their snapshot timestamps, sharing
// one fetch from PD among all that ask while it is outstanding (writers
// need a start timestamp of their own: it names their locks) — but never a fetch
// that began before a transaction asked: that one may predate a commit
// the asking client has already seen acknowledged, and reading below it
// would show the client the past. A transaction arriving while a fetch is
// in flight therefore joins the next round, which starts as soon as the
// current one returns and serves everyone who arrived meanwhile. Every
// timestamp is at least the commit timestamp of every transaction
// acknowledged before its readers asked; a burst of N begins costs two
// fetches, not N.
type tsShare struct {
	fetch func(context.Context) (uint64, error)

	mu       sync.Mutex
	next     *tsRound // the round arrivals join; nil until one arrives
	inflight bool     // a round's fetch is running
	fetches  atomic.Uint64
}

// tsRound is one fetch and everyone waiting for it.
type tsRound struct {
	done   chan struct{}
	joined int
	ts     uint64
	err    error
}

// get returns a timestamp fetched after get was called.
func (s *tsShare) get(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	if s.next == nil {
		s.next = &tsRound{done: make(chan struct{})}
	}
	r := s.next
	r.joined++
	start := !s.inflight
	if start {
		s.inflight, s.next = true, nil
	}
	s.mu.Unlock()
	if start {
		s.run(r)
	}
	select {
	case <-r.done:
		return r.ts, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run fetches for r, then for each round that gathered meanwhile, in the
// background, until none did.
func (s *tsShare) run(r *tsRound) {
	// The round's fetch must not end with the first waiter's context:
	// the others share it.
	r.ts, r.err = s.fetch(context.Background())
	s.fetches.Add(1)
	close(r.done)
	s.mu.Lock()
	next := s.next
	if next == nil {
		s.inflight = false
	} else {
		s.next = nil
	}
	s.mu.Unlock()
	if next != nil {
		go s.run(next)
	}
}

// joinedNext reports how many are waiting for the round after the one in
// flight (for tests).
func (s *tsShare) joinedNext() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		return 0
	}
	return s.next.joined
}
