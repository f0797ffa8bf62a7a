package lock

import (
	"cmp"
	"math"
	"slices"
	"sync"

	"github.com/stratafs/strata/proto"
)

// held is one granted lock.
type held struct {
	owner      ownerKey
	pid        uint32
	typ        uint8 // proto.LockRead or proto.LockWrite
	start, end int64 // inclusive; end math.MaxInt64 is to EOF
}

// overlaps reports whether h shares a byte with [start, end].
func (h held) overlaps(start, end int64) bool {
	return h.start <= end && start <= h.end
}

// touches reports whether h ends right before start or begins right after
// end, so that a lock of the same type merges with it.
func (h held) touches(start, end int64) bool {
	return (h.end != math.MaxInt64 && h.end+1 == start) ||
		(end != math.MaxInt64 && end+1 == h.start)
}

func (h held) conflict(flock bool) Conflict {
	return Conflict{
		Type:  h.typ,
		Start: h.start,
		End:   h.end,
		Pid:   h.pid,
		Owner: Owner{Session: h.owner.session, Owner: h.owner.owner, Pid: h.pid},
		Flock: flock,
	}
}

// exclusive reports whether locks of types a and b held by different owners
// on a common byte conflict: only two read locks share.
func exclusive(a, b uint8) bool {
	return a == proto.LockWrite || b == proto.LockWrite
}

// inodeState is the lock table of one inode.
//
// posix holds the fcntl locks sorted by start. An owner's own locks never
// overlap, and two of its locks of one type never touch (they are merged).
// Locks of different owners overlap only if both are read locks. flock holds
// at most one lock per owner, each over the whole file, and an exclusive one
// alone. waiters is the FIFO queue of blocked requests.
type inodeState struct {
	ino uint64

	mu           sync.Mutex
	posix        []held    // guarded by mu
	flock        []held    // guarded by mu
	waiters      []*waiter // guarded by mu
	posixWaiters int       // guarded by mu; fcntl requests among waiters

	refs     int      // guarded by the shard's mu; pins outstanding
	sessions []uint64 // guarded by the shard's mu; may hold locks or wait here
}

// apply grants r to o, which must not conflict with anyone, and reports
// whether it freed anything another owner could be waiting for.
func (st *inodeState) apply(o ownerKey, r Request) (freed bool) {
	if r.Flock {
		return st.setFlock(o, r.Owner.Pid, r.Type)
	}
	return st.setPosix(o, r.Owner.Pid, r.Type, r.Start, r.End)
}

// setPosix makes o's fcntl locks in [start, end] be of type typ (none for
// proto.LockUnlock), splitting o's locks that straddle the range and merging
// the new lock with o's overlapping and touching locks of the same type.
func (st *inodeState) setPosix(o ownerKey, pid uint32, typ uint8, start, end int64) (freed bool) {
	// Each lock yields at most one lock in place, so the list is filtered
	// in place; the piece of a lock beyond the range, of which there is at
	// most one, and the new lock are inserted afterwards.
	var right held
	hasRight := false
	kept := st.posix[:0]
	for _, h := range st.posix {
		switch {
		case h.owner != o:
			kept = append(kept, h)
		case typ != proto.LockUnlock && h.typ == typ && (h.overlaps(start, end) || h.touches(start, end)):
			// Only o's locks of another type can overlap the grown range,
			// and those overlap [start, end] alike, so the order in which
			// the loop meets them does not matter.
			start, end = min(start, h.start), max(end, h.end)
		case !h.overlaps(start, end):
			kept = append(kept, h)
		default:
			// Another type or an unlock: keep what lies outside the range.
			freed = freed || typ == proto.LockUnlock || h.typ == proto.LockWrite
			if h.end > end {
				right, hasRight = h, true
				right.start = end + 1
			}
			if h.start < start {
				h.end = start - 1
				kept = append(kept, h)
			}
		}
	}
	st.posix = kept
	if hasRight {
		st.insertPosix(right)
	}
	if typ != proto.LockUnlock {
		st.insertPosix(held{owner: o, pid: pid, typ: typ, start: start, end: end})
	}
	return freed
}

// insertPosix adds h to the sorted fcntl list.
func (st *inodeState) insertPosix(h held) {
	i, _ := slices.BinarySearchFunc(st.posix, h, compareHeld)
	st.posix = slices.Insert(st.posix, i, h)
}

// compareHeld orders locks by start, then by owner, for a stable listing.
func compareHeld(a, b held) int {
	return cmp.Or(
		cmp.Compare(a.start, b.start),
		cmp.Compare(a.owner.session, b.owner.session),
		cmp.Compare(a.owner.owner, b.owner.owner),
	)
}

// setFlock replaces o's flock lock by one of type typ (none for
// proto.LockUnlock).
func (st *inodeState) setFlock(o ownerKey, pid uint32, typ uint8) (freed bool) {
	if i := slices.IndexFunc(st.flock, func(h held) bool { return h.owner == o }); i >= 0 {
		freed = typ == proto.LockUnlock || (st.flock[i].typ == proto.LockWrite && typ != proto.LockWrite)
		st.flock = slices.Delete(st.flock, i, i+1)
	}
	if typ != proto.LockUnlock {
		st.flock = append(st.flock, held{owner: o, pid: pid, typ: typ, start: 0, end: math.MaxInt64})
	}
	return freed
}

// posixBlockers appends to dst, once each, the owners of the fcntl locks
// that keep r from o.
func (st *inodeState) posixBlockers(o ownerKey, r Request, dst []ownerKey) []ownerKey {
	for _, h := range st.posix {
		if h.owner != o && h.overlaps(r.Start, r.End) && exclusive(h.typ, r.Type) &&
			!slices.Contains(dst, h.owner) {
			dst = append(dst, h.owner)
		}
	}
	return dst
}

// flockBlocked reports whether another owner's flock lock keeps a lock of
// type typ from o.
func (st *inodeState) flockBlocked(o ownerKey, typ uint8) bool {
	return slices.ContainsFunc(st.flock, func(h held) bool {
		return h.owner != o && exclusive(h.typ, typ)
	})
}

// holdsFlock reports whether o holds a flock lock.
func (st *inodeState) holdsFlock(o ownerKey) bool {
	return slices.ContainsFunc(st.flock, func(h held) bool { return h.owner == o })
}

// firstConflict returns the lock with the lowest start that keeps r from o.
func (st *inodeState) firstConflict(o ownerKey, r Request) (held, bool) {
	list := st.posix
	if r.Flock {
		list = st.flock
	}
	for _, h := range list {
		if h.owner != o && h.overlaps(r.Start, r.End) && exclusive(h.typ, r.Type) {
			return h, true
		}
	}
	return held{}, false
}

// dropOwner removes every lock of o in one namespace.
func (st *inodeState) dropOwner(o ownerKey, flock bool) {
	mine := func(h held) bool { return h.owner == o }
	if flock {
		st.flock = slices.DeleteFunc(st.flock, mine)
	} else {
		st.posix = slices.DeleteFunc(st.posix, mine)
	}
}

// dropSession removes every lock held by an owner of session.
func (st *inodeState) dropSession(session uint64) {
	theirs := func(h held) bool { return h.owner.session == session }
	st.posix = slices.DeleteFunc(st.posix, theirs)
	st.flock = slices.DeleteFunc(st.flock, theirs)
}
