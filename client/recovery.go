package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/mds/lock"
	"github.com/stratafs/strata/proto"
)

// Recovery, the client's half (Lustre's, in spirit). A request that fails
// because its server is unreachable or restarting is not an application's
// error: the client waits, reconnects and resends it, for up to
// Config.RecoveryTimeout per outage, and only then fails it with EIO (never
// with ECONNREFUSED or another network errno). Modifying MDS requests carry
// a proto.ReqTag, kept across resends, so that one that had committed
// before the failure returns its first result. When the MDS it reconnects
// to is a new run (ConnectResp.Instance changed) the client resumes its
// session there and replays what only it still knows: its read opens and
// its locks, then says it is done (OpRecovered). Each outage is logged once
// when it begins and once when it ends.

// DefaultRecoveryTimeout is how long a request waits for an unreachable
// server when Config.RecoveryTimeout is zero.
const DefaultRecoveryTimeout = 5 * time.Minute

// Resend backoff while a server is unreachable.
const (
	firstRetry = 50 * time.Millisecond
	maxRetry   = time.Second
)

// ErrEvicted means the MDS ended this client's session (its lease ran out
// while it could not be reached): its opens and locks are gone.
var ErrEvicted = errors.New("client: evicted by the MDS: open files and locks are lost")

// interruptKey carries a request's interrupt channel in its context (see
// WithInterrupt).
type interruptKey struct{}

// WithInterrupt returns ctx carrying intr, a channel closed when the caller
// gives up (a FUSE interrupt). Only the waits between resends during an
// outage watch it: a request in flight always runs to its answer, so
// nothing committed is misreported as interrupted.
func WithInterrupt(ctx context.Context, intr <-chan struct{}) context.Context {
	return context.WithValue(ctx, interruptKey{}, intr)
}

// recovery is the client's recovery state.
type recovery struct {
	mu  sync.Mutex    // one session recovery at a time
	gen atomic.Uint64 // counts completed session recoveries

	slots  chan uint16 // free reply slots
	nextID atomic.Uint64

	outMu   sync.Mutex
	outages map[string]time.Time // target -> when its outage began

	// held mirrors the locks the MDS granted this client, to replay them.
	heldMu   sync.Mutex
	held     *lock.Manager
	heldInos map[uint64]struct{}
}

func (r *recovery) init() {
	r.slots = make(chan uint16, proto.ReplySlots)
	for i := range proto.ReplySlots {
		r.slots <- uint16(i)
	}
	r.outages = map[string]time.Time{}
	r.held = lock.NewManager()
	r.heldInos = map[uint64]struct{}{}
}

// tagged is a request that carries a ReqTag.
type tagged interface {
	SetTag(proto.ReqTag)
}

// recoverable reports whether err means "the server is not there or not
// ready yet": the request is resent after a wait.
func recoverable(err error) bool {
	return transient(err) || errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.EINPROGRESS)
}

// beginOutage notes that target is unreachable and returns when its outage
// began, logging the first sight of it.
func (c *Client) beginOutage(target string, cause error) time.Time {
	c.rec.outMu.Lock()
	defer c.rec.outMu.Unlock()
	if t, ok := c.rec.outages[target]; ok {
		return t
	}
	now := time.Now()
	c.rec.outages[target] = now
	c.log.Warn("client: waiting for "+target+" recovery", "cause", cause)
	return now
}

// endOutage notes that target answered again, logging the outage's end.
func (c *Client) endOutage(target string) {
	c.rec.outMu.Lock()
	defer c.rec.outMu.Unlock()
	t, ok := c.rec.outages[target]
	if !ok {
		return
	}
	delete(c.rec.outages, target)
	c.log.Warn(fmt.Sprintf("client: %s recovered after %.1f s", target, time.Since(t).Seconds()))
}

// inOutage reports whether target is in an outage now.
func (c *Client) inOutage(target string) bool {
	c.rec.outMu.Lock()
	defer c.rec.outMu.Unlock()
	_, ok := c.rec.outages[target]
	return ok
}

// waitOutage waits before resending a request to target, which failed with
// cause; attempt counts the waits so far. It fails with EIO once the outage
// has lasted RecoveryTimeout, and with EINTR if the caller is interrupted.
func (c *Client) waitOutage(ctx context.Context, target string, cause error, attempt int) error {
	began := c.beginOutage(target, cause)
	if time.Since(began) > c.cfg.RecoveryTimeout {
		return fmt.Errorf("client: %s unreachable for %v (recovery timeout): %v: %w",
			target, c.cfg.RecoveryTimeout, cause, syscall.EIO)
	}
	wait := min(maxRetry, firstRetry<<min(attempt, 5))
	intr, _ := ctx.Value(interruptKey{}).(<-chan struct{})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-intr:
		return fmt.Errorf("client: interrupted while waiting for %s: %w", target, syscall.EINTR)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.bgDone():
		return ErrClosed
	}
}

// bgDone is closed when the client closes (nil before New finished).
func (c *Client) bgDone() <-chan struct{} {
	if c.bg == nil {
		return nil
	}
	return c.bg.Done()
}

// mdtName names the MDT that owns ino, for logs.
func mdtName(ino uint64) string { return fmt.Sprintf("MDT%04x", ino>>48) }

// mdsCall sends a metadata request to the MDS that owns ino, and through
// an outage of that MDS (or a move of its MDT to another) keeps resending it
// (same tag, if it has one) until it is answered or the recovery timeout
// passes.
func (c *Client) mdsCall(ctx context.Context, ino uint64, op uint16, req, resp any) error {
	if t, ok := req.(tagged); ok {
		slot := <-c.rec.slots
		defer func() { c.rec.slots <- slot }()
		t.SetTag(proto.ReqTag{Session: c.sessionID(), Slot: slot, ID: c.rec.nextID.Add(1)})
	}
	target := mdtName(ino)
	for attempt := 0; ; attempt++ {
		gen := c.rec.gen.Load()
		sess := c.sessionID()
		err := c.rpc.Call(ctx, c.mdsFor(ino), op, req, resp)
		if err == nil {
			if attempt > 0 {
				c.endOutage(target)
			}
			return nil
		}
		switch {
		case ctx.Err() != nil:
			return err
		case errors.Is(err, syscall.ENOTCONN):
			// The session is gone from the store: evicted.
			if eerr := c.evicted(ctx, sess); eerr != nil {
				return eerr
			}
			return fmt.Errorf("client: %s: %w: %w", target, ErrEvicted, syscall.EIO)
		case errors.Is(err, syscall.EREMOTE) && attempt < 3:
			// The MDT moved (a takeover or a hand-off): learn where.
			if rerr := c.recoverSession(ctx, gen); rerr != nil && !recoverable(rerr) {
				return rerr
			}
			continue
		case errors.Is(err, syscall.EINPROGRESS) && !c.inOutage(target):
			// The MDS is replaying other clients' locks: not an
			// outage worth a log line, just a short wait.
			if werr := c.pause(ctx, attempt); werr != nil {
				return werr
			}
			continue
		case !recoverable(err) && !errors.Is(err, syscall.EREMOTE):
			return err
		}
		if werr := c.waitOutage(ctx, target, err, attempt); werr != nil {
			return werr
		}
		if rerr := c.recoverSession(ctx, gen); rerr != nil {
			c.log.Debug("client: recover", "target", target, "err", rerr)
		}
	}
}

// pause waits a moment before a resend that is not an outage.
func (c *Client) pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(min(maxRetry, firstRetry<<min(attempt, 5)))
	defer t.Stop()
	intr, _ := ctx.Value(interruptKey{}).(<-chan struct{})
	select {
	case <-t.C:
		return nil
	case <-intr:
		return fmt.Errorf("client: interrupted: %w", syscall.EINTR)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// evicted handles the MDS's "no such session" for session: the client
// starts a new session (once, whoever noticed first) and forgets the locks
// the old one held; what was open under it fails from now on.
func (c *Client) evicted(ctx context.Context, session uint64) error {
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	if c.sessionID() != session {
		return nil // another request has started the new session
	}
	c.log.Warn("client: the MDS evicted this client; starting a new session", "session", fmt.Sprintf("%#x", session))
	if err := c.connect(ctx); err != nil {
		return err
	}
	c.forgetHeld()
	c.rec.gen.Add(1)
	return nil
}

// recoverSession brings the client up to date after a failed request or
// renewal: it reads the MDT table from any MDS that answers and, for each
// MDT that changed owner (a restart or a takeover: a new epoch), replays
// this client's opens and locks of that MDT to the new owner, which then
// hears that the client recovered. seen is the recovery generation the
// caller worked in: if another request recovered since, there is nothing
// to do. An unreachable cluster returns its error, for the caller to wait
// and try again.
func (c *Client) recoverSession(ctx context.Context, seen uint64) error {
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	if c.rec.gen.Load() != seen {
		return nil
	}
	table, err := c.fetchMDTs(ctx)
	if err != nil {
		return err
	}
	changed := c.setMDTs(table)
	c.syncPollers(changed)
	if len(changed) > 0 {
		if err := c.replay(ctx, c.sessionID(), changed); err != nil {
			return err
		}
	}
	c.rec.gen.Add(1)
	return nil
}

// fetchMDTs reads the MDT table from the first MDS that answers.
func (c *Client) fetchMDTs(ctx context.Context) ([]proto.MDT, error) {
	var last error
	for _, addr := range c.mdsAddrs() {
		var resp proto.MDTTableResp
		err := c.rpc.Call(ctx, addr, proto.OpMDTTable, &proto.MDTTableReq{}, &resp)
		if err == nil {
			return resp.MDTs, nil
		}
		last = err
	}
	return nil, last
}

// mdsAddrs lists the MDS addresses to ask for the MDT table: the owners
// known, then the configured ones.
func (c *Client) mdsAddrs() []string {
	out := c.mdsOwners()
	for _, a := range c.cfg.MDS {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// replay re-establishes, at the new owners of mdts, the read opens and
// locks session holds on their inodes (handles open for writing came back
// from the store), then tells each of those MDSes this client recovered.
func (c *Client) replay(ctx context.Context, session uint64, mdts []uint32) error {
	onMDT := func(ino uint64) bool { return slices.Contains(mdts, uint32(ino>>48)) }
	opens, locks := 0, 0
	for _, in := range c.openInodes() {
		if !onMDT(in.ino) {
			continue
		}
		in.mu.Lock()
		files := in.filesLocked()
		in.mu.Unlock()
		for _, f := range files {
			if f.closed.Load() || f.session != session {
				continue
			}
			req := proto.OpenReq{Cred: f.cred, Session: session, Ino: f.ino, Flags: uint32(f.flags &^ syscall.O_TRUNC),
				Replay: true, Handle: f.handle}
			var resp proto.OpenResp
			if err := c.rpc.Call(ctx, c.mdsFor(f.ino), proto.OpOpen, &req, &resp); err != nil {
				if recoverable(err) || errors.Is(err, syscall.EREMOTE) {
					return err
				}
				c.log.Warn("client: could not replay an open", "ino", fmt.Sprintf("%#x", f.ino), "err", err)
				continue
			}
			opens++
		}
	}
	for _, h := range c.heldLocks() {
		if !onMDT(h.ino) {
			continue
		}
		req := proto.LockReq{Session: session, Ino: h.ino, Owner: h.Owner.Owner, Pid: h.Pid, Type: h.Type,
			Start: h.Start, End: h.End, Flock: h.Flock, Replay: true}
		if req.End == lockEOF {
			req.End = -1
		}
		if err := c.rpc.Call(ctx, c.mdsFor(h.ino), proto.OpLock, &req, &proto.LockResp{}); err != nil {
			if recoverable(err) || errors.Is(err, syscall.EREMOTE) {
				return err
			}
			c.log.Warn("client: could not replay a lock", "ino", fmt.Sprintf("%#x", h.ino), "err", err)
			continue
		}
		locks++
	}
	done := map[string]bool{}
	for _, m := range mdts {
		addr := c.mdsFor(uint64(m) << 48)
		if done[addr] {
			continue
		}
		done[addr] = true
		if err := c.rpc.Call(ctx, addr, proto.OpRecovered, &proto.RecoveredReq{Session: session}, nil); err != nil {
			return err
		}
	}
	c.log.Info("client: replayed opens and locks to the new owners of MDTs", "mdts", mdts, "opens", opens, "locks", locks)
	return nil
}

// lockEOF is how lock.Manager spells "to the end of the file".
const lockEOF = 1<<63 - 1

// heldLock is a lock this client holds, for replay.
type heldLock struct {
	ino uint64
	lock.Conflict
}

// noteHeld mirrors a lock the MDS granted (or an unlock of a range).
func (c *Client) noteHeld(ino, owner uint64, lk Lock) {
	c.rec.heldMu.Lock()
	defer c.rec.heldMu.Unlock()
	r := lock.Request{Ino: ino, Owner: lock.Owner{Session: 1, Owner: owner, Pid: lk.Pid}, Type: lk.Type,
		Start: lk.Start, End: lk.End, Flock: lk.Flock}
	// The MDS granted it, so nothing this client holds conflicts with it.
	_ = c.rec.held.Lock(context.Background(), r, false)
	c.rec.heldInos[ino] = struct{}{}
}

// forgetOwner drops the mirrored locks of owner on ino.
func (c *Client) forgetOwner(ino, owner uint64, flock bool) {
	c.rec.heldMu.Lock()
	defer c.rec.heldMu.Unlock()
	c.rec.held.ReleaseOwner(ino, lock.Owner{Session: 1, Owner: owner}, flock)
}

// forgetHeld drops every mirrored lock.
func (c *Client) forgetHeld() {
	c.rec.heldMu.Lock()
	defer c.rec.heldMu.Unlock()
	c.rec.held = lock.NewManager()
	c.rec.heldInos = map[uint64]struct{}{}
}

// heldLocks lists the mirrored locks.
func (c *Client) heldLocks() []heldLock {
	c.rec.heldMu.Lock()
	defer c.rec.heldMu.Unlock()
	var out []heldLock
	for ino := range c.rec.heldInos {
		ls := c.rec.held.Locks(ino)
		if len(ls) == 0 {
			delete(c.rec.heldInos, ino)
		}
		for _, l := range ls {
			out = append(out, heldLock{ino: ino, Conflict: l})
		}
	}
	return out
}
