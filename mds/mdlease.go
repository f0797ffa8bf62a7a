package mds

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratafs/strata/proto"
)

// Metadata leases (see proto/lease.go for the protocol). This MDS keeps, in
// memory, which sessions hold leases on the inodes of its MDTs; every
// transaction that changes an inode or a directory's names breaks the
// leases on them before it commits (mtx.breakLeases): it marks the inodes
// busy, so that no lease is granted on them until it ends, calls the
// holders back and waits for their acknowledgements, or for their leases
// to run out (they are then evicted). A grant is made only if no break
// touched the inodes since the reader took its token (before its snapshot):
// a snapshot older than a change must not be leased out.
//
// Nothing here outlives the process: a new owner of an MDT (a restart, a
// takeover) takes every session the store knows as holding everything on
// it until the session says it dropped its leases (LeaseWaitReq.Reset) or
// a term has passed since the takeover.

// DefaultMetaLease is how long a client's metadata leases stay good after
// the sending of its last answered poll.
const DefaultMetaLease = 10 * time.Second

// leaseContention is how long after calling a holder back an inode gets no
// new lease: two clients changing and reading one directory in turn would
// otherwise pay a callback for every change.
const leaseContention = 500 * time.Millisecond

// leasePruneAt bounds the per-inode change marks kept for grants in flight.
const leasePruneAt = 1 << 16

// maxHeldPerSession bounds the leases one session holds here (a client
// that stats a huge tree): past it, it gets no more until it resets.
const maxHeldPerSession = 1 << 21

// leaseTable is the lease state of one MDS.
type leaseTable struct {
	term time.Duration
	now  func() time.Time

	mu        sync.Mutex
	seq       uint64                         // bumped at each break's start and end
	floor     uint64                         // tokens below it are too old to grant with
	changed   map[uint64]uint64              // ino -> seq of the last break event on it
	busy      map[uint64]int                 // ino -> breaks in progress
	contended map[uint64]time.Time           // ino -> no grants until
	holders   map[uint64]map[uint64]struct{} // ino -> holding sessions
	sessions  map[uint64]*leaseSession
	nextID    uint64
	waits     map[uint64]chan struct{} // revoke id -> closed on ack

	// wild: MDT -> session -> until when the session may hold anything on
	// the MDT (leases from a previous owner).
	wild   map[uint32]map[uint64]time.Time
	wildCh chan struct{} // closed (and replaced) whenever a wildcard goes

	// evict ends a session that let its leases run out with a callback
	// unanswered.
	evict func(session uint64)
	// marks: session -> the token its lease flag in the store was set
	// with here, until its first poll takes it (leaseSession.mark).
	marks map[uint64]uint64
	// gone is told of a session whose leases were dropped because its
	// poll's connection closed (with the token of its flag), to clear
	// the flag (Service.unmarkLeasing).
	gone func(session, mark uint64)

	grants, revokes, acks, expired atomic.Uint64
}

// leaseSession is a polling session's lease state.
type leaseSession struct {
	lastPoll time.Time      // arrival of its last poll: its leases end a term later at most
	held     map[uint64]int // inos held -> 1
	pending  []proto.Revoke // callbacks not acknowledged
	wake     chan struct{}  // a parked poll waits on it; closed to wake it
	mark     uint64         // the token of its lease flag set here (0: set by another MDS or process)
}

func (l *leaseTable) init(term time.Duration, now func() time.Time, evict func(uint64)) {
	l.term, l.now, l.evict = term, now, evict
	l.changed = map[uint64]uint64{}
	l.busy = map[uint64]int{}
	l.contended = map[uint64]time.Time{}
	l.holders = map[uint64]map[uint64]struct{}{}
	l.sessions = map[uint64]*leaseSession{}
	l.waits = map[uint64]chan struct{}{}
	l.wild = map[uint32]map[uint64]time.Time{}
	l.wildCh = make(chan struct{})
	l.marks = map[uint64]uint64{}
}

// setMark records the token a session's lease flag was just set with.
func (l *leaseTable) setMark(session, mark uint64) {
	l.mu.Lock()
	l.marks[session] = mark
	l.mu.Unlock()
}

// waitsFor reports whether a takeover here waits out leases session may
// hold from a previous owner of an MDT.
func (l *leaseTable) waitsFor(session uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.wild {
		if _, ok := m[session]; ok {
			return true
		}
	}
	return false
}

// wildGone wakes the waits for wildcard holders. Call with mu held.
func (l *leaseTable) wildGone() {
	close(l.wildCh)
	l.wildCh = make(chan struct{})
}

// newToken names a break run for another MDS.
func (l *leaseTable) newToken() uint64 { return rand.Uint64() }

// token returns the mark a reader takes before its snapshot, for grant.
func (l *leaseTable) token() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// grant gives session leases on inos if no break touched any of them since
// tok, the session polls, and none is contended; it returns the term in
// milliseconds, or 0 for no lease.
func (l *leaseTable) grant(session, tok uint64, inos ...uint64) uint32 {
	if session == 0 || len(inos) == 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ss := l.sessions[session]
	now := l.now()
	if ss == nil || now.Sub(ss.lastPoll) >= l.term || tok < l.floor || len(ss.held)+len(inos) > maxHeldPerSession {
		return 0
	}
	for _, ino := range inos {
		if l.busy[ino] > 0 || l.changed[ino] > tok || now.Before(l.contended[ino]) {
			return 0
		}
	}
	for _, ino := range inos {
		l.hold(ss, session, ino)
	}
	l.grants.Add(1)
	return uint32(l.term / time.Millisecond)
}

// hold records session ss as a holder of ino. Call with mu held.
func (l *leaseTable) hold(ss *leaseSession, session, ino uint64) {
	h := l.holders[ino]
	if h == nil {
		h = map[uint64]struct{}{}
		l.holders[ino] = h
	}
	h[session] = struct{}{}
	ss.held[ino] = 1
}

// leaseBreak is a break in progress: what release needs.
type leaseBreak struct {
	l      *leaseTable
	inos   []uint64
	start  map[uint64]uint64 // ino -> seq the break started at
	except uint64
	fresh  []uint64 // inodes the change creates: the changer may lease them
	keep   []uint64 // inodes the changer keeps its leases on
	// grantKeep: the changer's reply carries the attributes of keep
	// (close, size report), so it may be granted leases on them even
	// when the change creates nothing.
	grantKeep bool
	after     func() // ends the break at other MDSes, if any
	done      bool   // released
}

// breakLeases starts a break of the leases on inos (and the names listed,
// for the holders' kernels) for a change by session except, which keeps
// its leases on keep and is told of the rest without being waited for. It
// waits until every other holder acknowledged or ran out (and is evicted),
// or ctx ends. The caller must call release once the change committed or
// failed.
func (l *leaseTable) breakLeases(ctx context.Context, inos []uint64, names []proto.LeaseName, except uint64, keep []uint64) (*leaseBreak, error) {
	return l.breakQuiet(ctx, inos, names, except, keep, nil)
}

// breakQuiet is breakLeases where the changer's leases on gone (inodes the
// change deletes) end without a callback: the changer removed the names
// that led to them and forgets what it cached through those names itself,
// and the inodes are reached no other way (with a handle open they would
// not be deleted). A mass delete then costs the deleting client no
// callback per file.
func (l *leaseTable) breakQuiet(ctx context.Context, inos []uint64, names []proto.LeaseName, except uint64, keep, gone []uint64) (*leaseBreak, error) {
	b := &leaseBreak{l: l, start: map[uint64]uint64{}, except: except, keep: keep}
	l.mu.Lock()
	now := l.now()
	type wait struct {
		ch       chan struct{}
		session  uint64
		deadline time.Time
	}
	var waits []wait
	wild := map[[2]uint64]bool{}         // {mdt, session} to wait for
	calls := map[uint64][]proto.Revoke{} // by session
	for _, ino := range inos {
		if _, dup := b.start[ino]; dup {
			continue
		}
		b.inos = append(b.inos, ino)
		l.seq++
		l.changed[ino] = l.seq
		b.start[ino] = l.seq
		l.busy[ino]++
		for session := range l.holders[ino] {
			if session == except && slices.Contains(keep, ino) {
				continue
			}
			if session == except && slices.Contains(gone, ino) {
				delete(l.holders[ino], session)
				if ss := l.sessions[session]; ss != nil {
					delete(ss.held, ino)
				}
				continue
			}
			r := proto.Revoke{Ino: ino}
			for _, n := range names {
				if n.Dir == ino {
					r.Names = append(r.Names, n.Name)
				}
			}
			calls[session] = append(calls[session], r)
			delete(l.holders[ino], session)
			if ss := l.sessions[session]; ss != nil {
				delete(ss.held, ino)
			}
			if session != except {
				l.contended[ino] = now.Add(leaseContention)
			}
		}
		if len(l.holders[ino]) == 0 {
			delete(l.holders, ino)
		}
		for session, until := range l.wild[inoMDT(ino)] {
			if session != except && now.Before(until) {
				wild[[2]uint64{uint64(inoMDT(ino)), session}] = true
			}
		}
	}
	for session, rs := range calls {
		ss := l.sessions[session]
		for i := range rs {
			l.nextID++
			rs[i].ID = l.nextID
			l.revokes.Add(1)
			if session == except || ss == nil {
				continue
			}
			ch := make(chan struct{})
			l.waits[rs[i].ID] = ch
			waits = append(waits, wait{ch: ch, session: session, deadline: ss.lastPoll.Add(l.term)})
		}
		if ss != nil {
			ss.pending = append(ss.pending, rs...)
			ss.poke()
		}
	}
	l.mu.Unlock()

	fail := func(err error) (*leaseBreak, error) {
		b.release(false)
		return nil, err
	}
	for _, w := range waits {
		if err := l.await(ctx, w.ch, w.deadline); err != nil {
			return fail(err)
		} else if !l.acked(w.ch) {
			l.ranOut(w.session)
		}
	}
	for k := range wild {
		if err := l.awaitReset(ctx, uint32(k[0]), k[1]); err != nil {
			return fail(err)
		}
	}
	return b, nil
}

// await waits until ch closes, deadline passes or ctx ends (its error).
func (l *leaseTable) await(ctx context.Context, ch chan struct{}, deadline time.Time) error {
	d := deadline.Sub(l.now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// acked reports whether a callback's wait channel was closed (by its
// acknowledgement, or because its session went), and forgets it if not.
func (l *leaseTable) acked(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, c := range l.waits {
		if c == ch {
			delete(l.waits, id)
		}
	}
	return false
}

// awaitReset waits until session no longer may hold leases on mdt from a
// previous owner: it reset them, or the term since the takeover passed.
func (l *leaseTable) awaitReset(ctx context.Context, mdt uint32, session uint64) error {
	for {
		l.mu.Lock()
		until, ok := l.wild[mdt][session]
		ch := l.wildCh
		if ok && !l.now().Before(until) {
			delete(l.wild[mdt], session)
			ok = false
		}
		l.mu.Unlock()
		if !ok {
			return nil
		}
		if err := l.await(ctx, ch, until); err != nil {
			return err
		}
	}
}

// ranOut ends the lease state of a session that let a callback go
// unanswered until its leases ran out, and has it evicted.
func (l *leaseTable) ranOut(session uint64) {
	l.mu.Lock()
	_, known := l.sessions[session]
	l.dropLocked(session)
	for _, m := range l.wild {
		delete(m, session)
	}
	l.wildGone()
	l.mu.Unlock()
	if known {
		l.expired.Add(1)
		if l.evict != nil {
			go l.evict(session)
		}
	}
}

// release ends a break. If the change committed, the changer becomes a
// holder of the inodes it created (and its parents, of keep) on which no
// other break overlapped this one, and release reports whether it holds
// them all; the term in milliseconds, else 0.
func (b *leaseBreak) release(committed bool) uint32 {
	if b == nil {
		return 0
	}
	if b.after != nil {
		b.after()
		b.after = nil
	}
	l := b.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.done {
		return 0
	}
	b.done = true
	granted := committed && b.except != 0 && (len(b.fresh) > 0 || b.grantKeep && len(b.keep) > 0)
	ss := l.sessions[b.except]
	if ss == nil || l.now().Sub(ss.lastPoll) >= l.term {
		granted = false
	}
	if granted {
		for _, ino := range append(slices.Clone(b.fresh), b.keep...) {
			if start, ok := b.start[ino]; ok && (l.changed[ino] != start || l.busy[ino] != 1) {
				granted = false
				break
			}
			if _, ok := b.start[ino]; !ok && l.busy[ino] > 0 {
				granted = false
				break
			}
		}
	}
	for _, ino := range b.inos {
		l.seq++
		l.changed[ino] = l.seq
		if l.busy[ino]--; l.busy[ino] <= 0 {
			delete(l.busy, ino)
		}
	}
	if granted {
		for _, ino := range append(slices.Clone(b.fresh), b.keep...) {
			l.hold(ss, b.except, ino)
		}
		l.grants.Add(1)
	}
	if len(l.changed) > leasePruneAt && len(l.busy) == 0 {
		l.floor = l.seq + 1
		clear(l.changed)
		for ino, until := range l.contended {
			if !l.now().Before(until) {
				delete(l.contended, ino)
			}
		}
	}
	if granted {
		return uint32(l.term / time.Millisecond)
	}
	return 0
}

// poke wakes the session's parked poll, if any. Call with mu held.
func (ss *leaseSession) poke() {
	if ss.wake != nil {
		close(ss.wake)
		ss.wake = nil
	}
}

// dropLocked forgets every lease of a session. Call with mu held.
func (l *leaseTable) dropLocked(session uint64) {
	ss := l.sessions[session]
	if ss == nil {
		return
	}
	for ino := range ss.held {
		if h := l.holders[ino]; h != nil {
			delete(h, session)
			if len(h) == 0 {
				delete(l.holders, ino)
			}
		}
	}
	for _, r := range ss.pending {
		if ch := l.waits[r.ID]; ch != nil {
			close(ch)
			delete(l.waits, r.ID)
		}
	}
	ss.poke()
	delete(l.sessions, session)
}

// drop forgets a session's leases (it ended).
func (l *leaseTable) drop(session uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropLocked(session)
	for _, m := range l.wild {
		delete(m, session)
	}
	l.wildGone()
}

// takeOver records that sessions may hold leases on mdts from a previous
// owner until a term from now, unless they reset them first.
func (l *leaseTable) takeOver(mdts []uint32, sessions []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := l.now().Add(l.term)
	for _, m := range mdts {
		w := l.wild[m]
		if w == nil {
			w = map[uint64]time.Time{}
			l.wild[m] = w
		}
		for _, s := range sessions {
			w[s] = until
		}
	}
}

// disconnectGrace is how long after the connection of a session's parked
// poll closed its leases are dropped, if it has not polled again: a client
// whose poll fails drops every lease it had here at once (a dead one holds
// none), so a change need not wait out its term.
const disconnectGrace = time.Second

// disconnected notes that the connection of ss's parked poll closed.
func (l *leaseTable) disconnected(session uint64, ss *leaseSession) {
	l.mu.Lock()
	polled := ss.lastPoll
	l.mu.Unlock()
	time.AfterFunc(disconnectGrace, func() {
		l.mu.Lock()
		dropped := l.sessions[session] == ss && ss.lastPoll.Equal(polled)
		if dropped {
			l.dropLocked(session)
		}
		gone := l.gone
		l.mu.Unlock()
		if dropped && gone != nil && ss.mark != 0 {
			gone(session, ss.mark)
		}
	})
}

// polls reports whether session has polled this MDS.
func (l *leaseTable) polls(session uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[session] != nil
}

// poll handles one LeaseWaitReq: it applies the acknowledgements and
// resets, renews the session, and returns its pending callbacks, waiting up
// to wait for one if there are none.
func (l *leaseTable) poll(ctx context.Context, req *proto.LeaseWaitReq, wait time.Duration, owned func() []uint32, gone <-chan struct{}) *proto.LeaseWaitResp {
	l.mu.Lock()
	ss := l.sessions[req.Session]
	if ss == nil {
		// A first poll is answered at once: the client learns the
		// term, and its leases start.
		ss = &leaseSession{held: map[uint64]int{}, mark: l.marks[req.Session]}
		delete(l.marks, req.Session)
		l.sessions[req.Session] = ss
		wait = 0
	}
	if len(req.Reset) > 0 {
		wait = 0
	}
	ss.lastPoll = l.now()
	for _, id := range req.Acks {
		if ch := l.waits[id]; ch != nil {
			close(ch)
			delete(l.waits, id)
			l.acks.Add(1)
		}
		ss.pending = slices.DeleteFunc(ss.pending, func(r proto.Revoke) bool { return r.ID == id })
	}
	for _, m := range req.Reset {
		delete(l.wild[m], req.Session)
		for ino := range ss.held {
			if inoMDT(ino) == m {
				if h := l.holders[ino]; h != nil {
					delete(h, req.Session)
				}
				delete(ss.held, ino)
			}
		}
	}
	if len(req.Reset) > 0 {
		l.wildGone()
	}
	if len(ss.pending) == 0 && wait > 0 {
		ch := make(chan struct{})
		ss.poke()
		ss.wake = ch
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		case <-gone:
			l.disconnected(req.Session, ss)
		}
		t.Stop()
		l.mu.Lock()
		if ss.wake == ch {
			ss.wake = nil
		}
	}
	resp := &proto.LeaseWaitResp{TermMilli: uint32(l.term / time.Millisecond), MDTs: owned()}
	if l.sessions[req.Session] == ss {
		resp.Revokes = slices.Clone(ss.pending)
	}
	l.mu.Unlock()
	return resp
}

// LeaseStats counts lease traffic, for metrics.
type LeaseStats struct {
	Grants, Revokes, Acks, Expired uint64
	Holders                        int
}

func (l *leaseTable) stats() LeaseStats {
	l.mu.Lock()
	n := len(l.holders)
	l.mu.Unlock()
	return LeaseStats{Grants: l.grants.Load(), Revokes: l.revokes.Load(), Acks: l.acks.Load(), Expired: l.expired.Load(), Holders: n}
}
