package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// Metadata leases, the client side (the protocol is in proto/lease.go).
// With Config.MetaLeases the client polls every MDS that owns an MDT for
// callbacks; while its leases there are good it answers lookups and
// getattrs from what the MDS granted (and the FUSE layer lets the kernel
// cache them as long). A callback drops what it names, hands the names and
// inodes to the invalidation hook (the FUSE layer queues kernel
// invalidations: it must not block), and is acknowledged in the next poll.
//
// A reply is cached only if no callback arrived between the sending of
// its request and its arrival (a generation count): the grant may predate
// a change whose callback overtook the reply.

// maxLeased bounds the inodes whose attributes are cached; past it the
// cache starts over (the MDS still counts the leases, harmlessly).
const maxLeased = 1 << 20

// maxName is the longest name the MDS accepts (NAME_MAX).
const maxName = 255

// leaseMarks bounds the change marks kept for replies in flight.
const leaseMarks = 1 << 16

// leasePollError is how long a poller waits after a failed poll.
const leasePollError = 200 * time.Millisecond

// invalWait bounds how long a callback's acknowledgement waits for the
// kernel invalidations it queued: in the common case the kernel drops the
// old entries before the change commits; if an invalidation is stuck
// behind a request that waits for the change (see fuse/inval.go), the
// change goes ahead and the kernel catches up a moment later.
const invalWait = time.Second

// note is an invalidation for the notify hook.
type note struct {
	ino   uint64
	names []string
}

// leaseCache is what the client holds under leases.
type leaseCache struct {
	mu sync.Mutex
	// gen counts changes: a request takes it before it is sent, and its
	// reply is cached only where no mark is newer (attrGen: attributes,
	// dirGen: a directory's names, by callback; nameGen: one name, by
	// this client's change) and gen is not below floor.
	gen     uint64
	floor   uint64
	attrGen map[uint64]uint64
	dirGen  map[uint64]uint64
	nameGen map[dirName]uint64
	until   map[uint32]time.Time         // MDT -> its leases are good until
	attrs   map[uint64]proto.Attr        // leased attributes
	names   map[uint64]map[string]uint64 // leased directories -> name -> inode
	// complete: leased directories whose every name is in names (made
	// here, empty, and under lease since): a name not there does not
	// exist, and a create's lookup needs no MDS.
	complete map[uint64]bool
	resets   map[uint32]bool     // MDTs dropped, to tell their owner
	acks     map[string][]uint64 // per MDS: callbacks handled, to acknowledge
	notify   func(ino uint64, names []string) <-chan struct{}
	notes    []note // invalidations to hand to notify, outside mu

	on      atomic.Bool // EnableMetaLeases was called
	pollers map[string]context.CancelFunc
	session uint64 // the session the leases are of

	hits, misses, revokes atomic.Uint64
}

func (l *leaseCache) init() {
	l.attrGen = map[uint64]uint64{}
	l.dirGen = map[uint64]uint64{}
	l.nameGen = map[dirName]uint64{}
	l.until = map[uint32]time.Time{}
	l.attrs = map[uint64]proto.Attr{}
	l.names = map[uint64]map[string]uint64{}
	l.complete = map[uint64]bool{}
	l.resets = map[uint32]bool{}
	l.acks = map[string][]uint64{}
	l.pollers = map[string]context.CancelFunc{}
}

func mdtOf(ino uint64) uint32 { return uint32(ino >> 48) }

// ttlLocked returns how long the leases on the MDTs of inos stay good.
func (l *leaseCache) ttlLocked(now time.Time, inos ...uint64) time.Duration {
	ttl := time.Duration(-1)
	for _, ino := range inos {
		d := l.until[mdtOf(ino)].Sub(now)
		if ttl < 0 || d < ttl {
			ttl = d
		}
	}
	return max(ttl, 0)
}

// SetLeaseNotify installs the hook told of every callback: an inode whose
// attributes changed, and for a directory the names that may have. It runs
// on the poller and must not block; the channel it returns (nil: none)
// closes once the invalidation is done, and the callback's acknowledgement
// waits for it a moment (invalWait).
func (c *Client) SetLeaseNotify(fn func(ino uint64, names []string) <-chan struct{}) {
	c.leases.mu.Lock()
	c.leases.notify = fn
	c.leases.mu.Unlock()
}

// leaseGen returns the callback generation, taken before a request whose
// reply may be cached.
func (c *Client) leaseGen() uint64 {
	c.leases.mu.Lock()
	defer c.leases.mu.Unlock()
	return c.leases.gen
}

// EnableMetaLeases makes the client take metadata leases and cache under
// them (nothing in strict mode).
func (c *Client) EnableMetaLeases() {
	if c.strict || c.leases.on.Swap(true) {
		return
	}
	c.syncPollers(nil)
}

// leaseSession returns the session to ask for leases in, or 0 when this
// client takes none.
func (c *Client) leaseSession() uint64 {
	if !c.leases.on.Load() {
		return 0
	}
	return c.sessionID()
}

// cachedAttr returns ino's leased attributes and how long they are good.
func (c *Client) cachedAttr(ino uint64) (proto.Attr, time.Duration, bool) {
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.attrs[ino]
	if !ok {
		return proto.Attr{}, 0, false
	}
	ttl := l.ttlLocked(time.Now(), ino)
	if ttl <= 0 {
		return proto.Attr{}, 0, false
	}
	return a, ttl, true
}

// cachedLookup returns the leased entry name of parent: its attributes and
// how long both stay good.
func (c *Client) cachedLookup(parent uint64, name string) (proto.Attr, time.Duration, bool) {
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	ino, ok := l.names[parent][name]
	if !ok {
		return proto.Attr{}, 0, false
	}
	a, ok := l.attrs[ino]
	if !ok {
		return proto.Attr{}, 0, false
	}
	ttl := l.ttlLocked(time.Now(), parent, ino)
	if ttl <= 0 {
		return proto.Attr{}, 0, false
	}
	return a, ttl, true
}

// leased records what a reply granted, except what changed since gen
// (a callback, or this client's own change, since the request was sent),
// and returns how long the kernel may cache the reply (0: not all of it is
// cached). dir, if not zero, is the directory whose names are leased, with
// names mapping to the inodes of attrs.
func (c *Client) leased(gen uint64, lease uint32, dir uint64, names map[string]uint64, attrs ...proto.Attr) time.Duration {
	if c.leaseSession() == 0 {
		return 0
	}
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	// A directory known completely stays so only if the names this reply
	// made known are recorded: on any way out below that does not record
	// them, a later lookup of one would be answered "no such file" here.
	recorded := false
	if dir != 0 {
		defer func() {
			if !recorded {
				delete(l.complete, dir)
			}
		}()
	}
	if lease == 0 || gen < l.floor {
		return 0
	}
	inos := make([]uint64, 0, len(attrs)+1)
	if dir != 0 {
		inos = append(inos, dir)
	}
	for _, a := range attrs {
		inos = append(inos, a.Ino)
	}
	ttl := l.ttlLocked(time.Now(), inos...)
	if ttl <= 0 {
		return 0
	}
	if len(l.attrs) >= maxLeased {
		// Start over, and have the MDSes forget what they leased
		// here (a reset), or they would keep calling it back.
		clear(l.attrs)
		clear(l.names)
		clear(l.complete)
		for m := range l.until {
			l.resets[m] = true
			delete(l.until, m)
		}
		l.floor = l.touchLocked()
		return 0
	}
	whole := true
	fresh := map[uint64]bool{}
	for _, a := range attrs {
		if l.attrGen[a.Ino] > gen {
			whole = false
			continue
		}
		l.attrs[a.Ino] = a
		fresh[a.Ino] = true
	}
	if dir != 0 {
		if l.dirGen[dir] > gen {
			return 0
		}
		m := l.names[dir]
		if m == nil {
			m = map[string]uint64{}
			l.names[dir] = m
		}
		for n, ino := range names {
			if !fresh[ino] || l.nameGen[dirName{dir, n}] > gen {
				whole = false
				continue
			}
			m[n] = ino
		}
	}
	if !whole {
		return 0 // a name may be missing now
	}
	recorded = true
	return ttl
}

// leasedEmptyDir marks dir, which this client just made and holds a lease
// on, as known completely (see complete).
func (c *Client) leasedEmptyDir(dir uint64) {
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.names[dir]; !ok && l.dirGen[dir] == 0 {
		l.names[dir] = map[string]uint64{}
		l.complete[dir] = true
	}
}

// cachedAbsent reports whether name is known not to exist in parent: the
// client knows parent completely, under a lease still good.
func (c *Client) cachedAbsent(parent uint64, name string) bool {
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(name) > maxName || !l.complete[parent] || l.ttlLocked(time.Now(), parent) <= 0 {
		return false // (the MDS says what is wrong with a bad name)
	}
	_, ok := l.names[parent][name]
	return !ok
}

// dirName is a name in a directory.
type dirName struct {
	dir  uint64
	name string
}

// touchLocked advances the generation; what changes now is marked with it.
// Call with mu held.
func (l *leaseCache) touchLocked() uint64 {
	l.gen++
	if len(l.attrGen)+len(l.nameGen)+len(l.dirGen) > leaseMarks {
		// Forget the marks: a reply in flight from before is not
		// cached.
		l.floor = l.gen
		clear(l.attrGen)
		clear(l.nameGen)
		clear(l.dirGen)
	}
	return l.gen
}

// forget drops what this client's own change made stale: the attributes of
// inos, and names of dir (with the attributes of what they named).
func (c *Client) forget(dir uint64, names []string, inos ...uint64) {
	if !c.leases.on.Load() {
		return
	}
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.touchLocked()
	for _, ino := range inos {
		delete(l.attrs, ino)
		l.attrGen[ino] = g
	}
	if len(names) > 0 {
		// (The change may have failed: whether the name exists is
		// not known here any more.)
		delete(l.complete, dir)
	}
	for _, n := range names {
		l.nameGen[dirName{dir, n}] = g
		if m := l.names[dir]; m != nil {
			if ino, ok := m[n]; ok {
				delete(l.attrs, ino)
				l.attrGen[ino] = g
				delete(m, n)
			}
		}
	}
}

// parentChanged records this client's own change of entries in dir, which
// the MDS made at when (the reply's ParentTime; 0: unknown), moving dir's
// link count by delta. If dir's attributes are cached and no callback or
// change touched them since gen (taken before the request), the change is
// the only one since they were leased: they take the new times in place,
// and a stat of the directory after a create needs no MDS. Otherwise they
// are forgotten.
func (c *Client) parentChanged(gen uint64, dir uint64, when int64, delta int32) {
	if !c.leases.on.Load() {
		return
	}
	l := &c.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.attrs[dir]; ok && when != 0 && l.attrGen[dir] <= gen && gen >= l.floor {
		a.Mtime, a.Ctime = max(a.Mtime, when), max(a.Ctime, when)
		a.Nlink = uint32(max(int64(a.Nlink)+int64(delta), 2))
		l.attrs[dir] = a
		return
	}
	g := l.touchLocked()
	delete(l.attrs, dir)
	l.attrGen[dir] = g
}

// refreshAttr replaces the cached attributes of a file this client just
// changed (a close or size report; gen taken before the request) with
// those of the reply, when the reply carries a lease on them; otherwise
// (an error, no lease, a callback meanwhile) it forgets them.
func (c *Client) refreshAttr(gen, ino uint64, err error, resp *proto.AttrResp) {
	if err == nil && resp.Attr.Ino == ino && c.leased(gen, resp.Lease, 0, nil, resp.Attr) > 0 {
		return
	}
	c.forget(0, nil, ino)
}

// revoke applies a callback. Call with mu held.
func (l *leaseCache) revokeLocked(r proto.Revoke) {
	g := l.touchLocked()
	l.revokes.Add(1)
	delete(l.attrs, r.Ino)
	l.attrGen[r.Ino] = g
	l.dirGen[r.Ino] = g
	names := r.Names
	if m, ok := l.names[r.Ino]; ok {
		// The lease on the directory is gone: so is every name the
		// kernel was let cache under it, changed or not.
		for n := range m {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		delete(l.names, r.Ino)
	}
	delete(l.complete, r.Ino)
	l.notes = append(l.notes, note{r.Ino, names})
}

// deliver hands the pending invalidations to the notify hook (with mu not
// held: the hook is the caller's code) and returns what to wait for.
func (l *leaseCache) deliver() []<-chan struct{} {
	l.mu.Lock()
	notes, notify := l.notes, l.notify
	l.notes = nil
	l.mu.Unlock()
	if notify == nil {
		return nil
	}
	var chs []<-chan struct{}
	for _, n := range notes {
		if ch := notify(n.ino, n.names); ch != nil {
			chs = append(chs, ch)
		}
	}
	return chs
}

// dropMDTsLocked drops every lease on mdts (their owner changed, or its
// polls fail) and marks them to be reset at the owner. Call with mu held.
func (l *leaseCache) dropMDTsLocked(mdts []uint32) {
	if len(mdts) == 0 {
		return
	}
	l.floor = l.touchLocked() // nothing in flight is cached
	for _, m := range mdts {
		delete(l.until, m)
		l.resets[m] = true
	}
	for ino := range l.attrs {
		if slices.Contains(mdts, mdtOf(ino)) {
			delete(l.attrs, ino)
			l.notes = append(l.notes, note{ino, nil})
		}
	}
	for dir, m := range l.names {
		if slices.Contains(mdts, mdtOf(dir)) {
			names := make([]string, 0, len(m))
			for n := range m {
				names = append(names, n)
			}
			delete(l.names, dir)
			delete(l.complete, dir)
			l.notes = append(l.notes, note{dir, names})
		}
	}
	for dir := range l.complete {
		if slices.Contains(mdts, mdtOf(dir)) {
			delete(l.complete, dir)
		}
	}
}

// syncPollers runs one poller per MDS that owns an MDT, and drops the
// leases of MDTs whose owner changed.
func (c *Client) syncPollers(changed []uint32) {
	if c.leaseSession() == 0 || c.bg == nil {
		return
	}
	owners := c.mdsOwners()
	l := &c.leases
	defer l.deliver()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropMDTsLocked(changed)
	for addr, stop := range l.pollers {
		if !slices.Contains(owners, addr) {
			stop()
			delete(l.pollers, addr)
		}
	}
	for _, addr := range owners {
		if l.pollers[addr] != nil {
			continue
		}
		ctx, stop := context.WithCancel(c.bg)
		l.pollers[addr] = stop
		c.wg.Add(1)
		go c.pollLeases(ctx, addr)
	}
}

// pollLeases polls addr for callbacks until ctx ends.
func (c *Client) pollLeases(ctx context.Context, addr string) {
	defer c.wg.Done()
	l := &c.leases
	var owned []uint32 // the MDTs addr vouched for last
	for ctx.Err() == nil {
		session := c.sessionID()
		l.mu.Lock()
		if l.session != session {
			// A new session holds nothing the old one did.
			all := make([]uint32, 0, len(l.until))
			for m := range l.until {
				all = append(all, m)
			}
			l.dropMDTsLocked(all)
			clear(l.acks)
			l.session = session
		}
		if len(l.notes) > 0 {
			l.mu.Unlock()
			l.deliver()
			l.mu.Lock()
		}
		req := &proto.LeaseWaitReq{Session: session, Acks: l.acks[addr], WaitMillis: 5000}
		for m := range l.resets {
			req.Reset = append(req.Reset, m)
		}
		l.mu.Unlock()

		sent := time.Now()
		var resp proto.LeaseWaitResp
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.rpc.Call(cctx, addr, proto.OpLeaseWait, req, &resp)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Whatever addr leased may be called back unheard: drop
			// it, and say so when addr answers again.
			l.mu.Lock()
			l.dropMDTsLocked(owned)
			if errors.Is(err, syscall.ENOTCONN) {
				l.session = 0 // evicted: the renewer starts a new session
			}
			l.mu.Unlock()
			l.deliver()
			c.log.Debug("client: lease poll", "mds", addr, "err", err)
			if recoverable(err) {
				// The MDS may be gone for good and its MDTs
				// taken over: learn the owners now (an idle
				// client would only at its next renewal), so
				// that the new owner hears the reset soon.
				if rerr := c.recoverSession(ctx, c.rec.gen.Load()); rerr != nil {
					c.log.Debug("client: recover after a failed lease poll", "err", rerr)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(leasePollError):
			}
			continue
		}
		term := time.Duration(resp.TermMilli) * time.Millisecond
		l.mu.Lock()
		if l.session != session {
			l.mu.Unlock()
			continue
		}
		l.acks[addr] = l.acks[addr][:0]
		for _, r := range resp.Revokes {
			l.revokeLocked(r)
			l.acks[addr] = append(l.acks[addr], r.ID)
		}
		for _, m := range owned {
			if !slices.Contains(resp.MDTs, m) {
				delete(l.until, m) // no longer addr's to renew
			}
		}
		for _, m := range resp.MDTs {
			if slices.Contains(req.Reset, m) {
				delete(l.resets, m)
			}
			if !l.resets[m] {
				l.until[m] = sent.Add(term)
			}
		}
		owned = resp.MDTs
		l.mu.Unlock()
		waitInvals(ctx, l.deliver())
	}
}

// waitInvals waits up to invalWait for the kernel invalidations of the
// callbacks about to be acknowledged.
func waitInvals(ctx context.Context, invals []<-chan struct{}) {
	if len(invals) == 0 {
		return
	}
	t := time.NewTimer(invalWait)
	defer t.Stop()
	for _, ch := range invals {
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// LeaseStats counts the client's metadata cache traffic, for metrics.
type LeaseStats struct {
	Hits, Misses, Revokes uint64
	Cached                int
}

// LeaseStats returns the metadata cache counters.
func (c *Client) LeaseStats() LeaseStats {
	l := &c.leases
	l.mu.Lock()
	n := len(l.attrs)
	l.mu.Unlock()
	return LeaseStats{Hits: l.hits.Load(), Misses: l.misses.Load(), Revokes: l.revokes.Load(), Cached: n}
}
