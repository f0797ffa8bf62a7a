package mds

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// The service side of metadata leases (mdlease.go): who is asking, the
// break of every changing transaction, the poll, and breaks on behalf of
// another MDS.

// maxLeaseWait bounds how long a poll is held with nothing to say.
const maxLeaseWait = 20 * time.Second

// remoteBreakHold is how long an MDS refuses grants on inodes another
// MDS's change broke, if that MDS never says the change ended.
const remoteBreakHold = 30 * time.Second

// caller is what a request tells about its client, carried in its
// context: the session (leases are granted to it; its own changes do not
// wait for it) and the inodes the request names, which the client brings
// up to date itself from the reply. granted is set by the change's
// transaction: the lease term if the caller now holds leases on what it
// created and named.
type caller struct {
	session uint64
	named   []uint64
	granted uint32
	// attrs: the reply carries the attributes of named (a close or a
	// size report), which the caller may then cache under a lease.
	attrs bool
	// when is the time of the change the request made in a directory
	// (mtx.touched), for the reply's ParentTime; 0 if none or replayed.
	when int64
}

type callerKey struct{}

// withCaller returns ctx carrying req's caller, if it names a session.
func withCaller(ctx context.Context, req any) context.Context {
	c := &caller{}
	switch r := req.(type) {
	case *proto.GetattrReq:
		c.session = r.Session
	case *proto.LookupReq:
		c.session = r.Cred.Session
	case *proto.ReaddirReq:
		c.session = r.Cred.Session
	case *proto.SetattrReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Ino}
	case *proto.CreateReq:
		c.session, c.named = r.Session, []uint64{r.Parent}
	case *proto.MkdirReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent}
	case *proto.MknodReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent}
	case *proto.SymlinkReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent}
	case *proto.LinkReq:
		c.session, c.named = r.Cred.Session, []uint64{r.NewParent, r.Ino}
	case *proto.UnlinkReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent}
	case *proto.RmdirReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent}
	case *proto.RenameReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Parent, r.NewParent}
	case *proto.SetxattrReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Ino}
	case *proto.RemovexattrReq:
		c.session, c.named = r.Cred.Session, []uint64{r.Ino}
	case *proto.CloseReq:
		c.session, c.named, c.attrs = r.Session, []uint64{r.Ino}, true
	case *proto.SetSizeReq:
		c.session, c.named, c.attrs = r.Session, []uint64{r.Ino}, true
	default:
		c.session = sessionOf(req)
	}
	if c.session == 0 {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, c)
}

// fillReply sets what the change a request made tells its caller in the
// reply, where there is something: the lease it was left holding on what
// it made or named (Lease, see leaseBreak.release; a reader's handler sets
// its own) and the time of its change in a directory (ParentTime, see
// proto.ChangeResp).
func fillReply(ctx context.Context, resp any) {
	c := callerOf(ctx)
	if c == nil {
		return
	}
	var lease *uint32
	var when *int64
	switch r := resp.(type) {
	case *proto.EntryResp:
		lease, when = &r.Lease, &r.ParentTime
	case *proto.OpenResp:
		lease, when = &r.Lease, &r.ParentTime
	case *proto.AttrResp:
		if c.attrs {
			lease = &r.Lease
		}
	case *proto.ChangeResp:
		when = &r.ParentTime
	}
	if lease != nil && c.granted != 0 {
		*lease = c.granted
	}
	if when != nil && c.when != 0 {
		*when = c.when
	}
}

// callerOf returns the caller ctx carries, or nil.
func callerOf(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// sessionIn returns the session of ctx's caller, or 0.
func sessionIn(ctx context.Context) uint64 {
	if c := callerOf(ctx); c != nil {
		return c.session
	}
	return 0
}

// leaseable reports whether leases may be granted on in: not on strict
// inodes (their attributes are never cached), nor on another MDT's.
func (s *Service) leaseable(in *inode) bool {
	return in != nil && in.Flags&proto.AttrFlagStrict == 0 && s.owns(inoMDT(in.Ino))
}

// grantLease grants ctx's caller leases on ins if they are all leaseable
// and unchanged since tok; the term in milliseconds, or 0.
func (s *Service) grantLease(ctx context.Context, tok uint64, ins ...*inode) uint32 {
	session := sessionIn(ctx)
	if session == 0 {
		return 0
	}
	inos := make([]uint64, 0, len(ins))
	for _, in := range ins {
		if !s.leaseable(in) {
			return 0
		}
		if !slices.Contains(inos, in.Ino) {
			inos = append(inos, in.Ino)
		}
	}
	return s.leases.grant(session, tok, inos...)
}

// breakFor breaks the leases on what t changes, before it commits: on this
// MDS's inodes directly, on other MDSes' through them (LeaseBreak).
func (s *Service) breakFor(ctx context.Context, t *mtx) (*leaseBreak, error) {
	if len(t.dirty) == 0 && len(t.gone) == 0 && len(t.names) == 0 {
		return nil, nil
	}
	inos := make([]uint64, 0, len(t.dirty)+len(t.gone))
	inos = append(inos, t.dirty...)
	inos = append(inos, t.gone...)
	for _, n := range t.names {
		if !slices.Contains(inos, n.Dir) {
			inos = append(inos, n.Dir)
		}
	}
	var except uint64
	var keep []uint64
	if c := callerOf(ctx); c != nil {
		except, keep = c.session, c.named
	}
	var local, remote []uint64
	for _, ino := range inos {
		switch {
		case s.owns(inoMDT(ino)):
			local = append(local, ino)
		case !slices.Contains(t.fresh, ino):
			// (Nobody can hold a lease on an inode just made.)
			remote = append(remote, ino)
		}
	}
	b, err := s.leases.breakQuiet(ctx, local, t.names, except, keep, t.gone)
	if err != nil {
		return nil, fmt.Errorf("mds: call back metadata leases: %w", err)
	}
	if c := callerOf(ctx); c != nil && c.attrs {
		b.grantKeep = !slices.ContainsFunc(keep, func(ino uint64) bool { return !s.owns(inoMDT(ino)) })
	}
	for _, ino := range t.fresh {
		if slices.Contains(local, ino) {
			b.fresh = append(b.fresh, ino)
		}
	}
	if len(remote) > 0 && s.peers != nil {
		done, err := s.breakRemote(ctx, remote, t.names, except, keep)
		b.after = done
		if err != nil {
			b.release(false)
			return nil, err
		}
	}
	return b, nil
}

// breakRemote has the owners of inos break their leases on them, and
// returns the function that tells them the change ended.
func (s *Service) breakRemote(ctx context.Context, inos []uint64, names []proto.LeaseName, except uint64, keep []uint64) (func(), error) {
	table, err := s.mdtTable(ctx)
	if err != nil {
		return nil, err
	}
	byAddr := map[string][]uint64{}
	for _, ino := range inos {
		i := slices.IndexFunc(table, func(m proto.MDT) bool { return m.Index == inoMDT(ino) })
		if i < 0 || table[i].Addr == "" {
			// No owner now: whoever takes the MDT over waits out
			// every lease of before (takeOver).
			continue
		}
		byAddr[table[i].Addr] = append(byAddr[table[i].Addr], ino)
	}
	token := s.leases.newToken()
	var sent []string
	release := func() {
		for _, addr := range sent {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				req := &proto.LeaseBreakReq{Token: token, Release: true}
				if err := s.peers.Call(ctx, addr, proto.OpLeaseBreak, req, &proto.Empty{}); err != nil {
					s.log.Debug("mds: end a lease break", "mds", addr, "err", err)
				}
			}()
		}
	}
	for addr, list := range byAddr {
		req := &proto.LeaseBreakReq{Token: token, Inos: list, Names: names, Except: except, Keep: keep,
			HoldMillis: uint32(remoteBreakHold / time.Millisecond)}
		if err := s.peers.Call(ctx, addr, proto.OpLeaseBreak, req, &proto.Empty{}); err != nil {
			release()
			return nil, fmt.Errorf("mds: call back metadata leases at %s: %w", addr, err)
		}
		sent = append(sent, addr)
	}
	return release, nil
}

// remoteBreaks are the breaks this MDS runs for other MDSes' changes.
type remoteBreaks struct {
	mu sync.Mutex
	m  map[uint64]*leaseBreak
}

// LeaseBreak breaks leases for another MDS's change, or ends such a break.
func (s *Service) LeaseBreak(ctx context.Context, req *proto.LeaseBreakReq) error {
	rb := &s.remote
	if req.Release {
		rb.mu.Lock()
		b := rb.m[req.Token]
		delete(rb.m, req.Token)
		rb.mu.Unlock()
		b.release(false)
		return nil
	}
	var local []uint64
	for _, ino := range req.Inos {
		if s.owns(inoMDT(ino)) {
			local = append(local, ino)
		}
	}
	b, err := s.leases.breakLeases(ctx, local, req.Names, req.Except, req.Keep)
	if err != nil {
		return err
	}
	rb.mu.Lock()
	if rb.m == nil {
		rb.m = map[uint64]*leaseBreak{}
	}
	if old := rb.m[req.Token]; old != nil {
		old.release(false)
	}
	rb.m[req.Token] = b
	rb.mu.Unlock()
	hold := time.Duration(req.HoldMillis) * time.Millisecond
	if hold <= 0 || hold > remoteBreakHold {
		hold = remoteBreakHold
	}
	time.AfterFunc(hold, func() {
		rb.mu.Lock()
		mine := rb.m[req.Token] == b
		if mine {
			delete(rb.m, req.Token)
		}
		rb.mu.Unlock()
		if mine {
			b.release(false)
		}
	})
	return nil
}

// LeaseWait is a client's poll for lease callbacks (see proto/lease.go).
func (s *Service) LeaseWait(ctx context.Context, req *proto.LeaseWaitReq) (*proto.LeaseWaitResp, error) {
	return s.leaseWait(ctx, req, nil)
}

// leaseWait is LeaseWait for a poll whose connection closing closes gone.
func (s *Service) leaseWait(ctx context.Context, req *proto.LeaseWaitReq, gone <-chan struct{}) (*proto.LeaseWaitResp, error) {
	if req.Session == 0 {
		return nil, fmt.Errorf("mds: lease poll without a session: %w", syscall.EINVAL)
	}
	if !s.open.known(req.Session) {
		return nil, fmt.Errorf("mds: lease poll of session %#x: %w", req.Session, syscall.ENOTCONN)
	}
	if !s.leases.polls(req.Session) {
		if err := s.markLeasing(ctx, req.Session); err != nil {
			return nil, err
		}
	}
	// A poll parks at most a quarter term: the client renews its leases
	// (a term from when it sent the poll) only when the poll returns, so
	// the time they have left, which is what its kernel may cache for,
	// never drops below half a term.
	wait := min(time.Duration(req.WaitMillis)*time.Millisecond, maxLeaseWait, s.leases.term/4)
	return s.leases.poll(ctx, req, wait, s.ownedMDTs, gone), nil
}

// markLeasing records in the store that a session polls for lease
// callbacks, before its first poll here is answered: whoever owns an MDT
// next waits for it (recoverMDTs).
//
// Each setting writes a new token (LeaseMark), so that it conflicts with
// a concurrent clearing (unmarkLeasing), which only clears the token it
// knows.
func (s *Service) markLeasing(ctx context.Context, session uint64) error {
	mark := rand.Uint64() | 1
	err := s.update(ctx, func(t *mtx) error {
		var r sessionRecord
		ok, err := t.getRecord(t.k.session(session), &r)
		if err != nil || !ok {
			return err
		}
		r.Leases, r.LeaseMark = true, mark
		return t.setRecord(t.k.session(session), &r)
	})
	if err == nil {
		s.leases.setMark(session, mark)
	}
	return err
}

// unmarkLeasing clears the lease flag of a session whose leases this MDS
// dropped because its poll's connection closed and did not come back (a
// client that poll fails drops its leases at once): a later owner of the
// MDTs, this MDS restarted say, then need not wait a whole term for a
// client that is gone. Only when this MDS owns every MDT (no other can
// have leased the session anything) and waits out no lease of it from a
// previous owner, and only if the flag still holds the token set here
// (the session has not polled anywhere since, which sets a new one).
func (s *Service) unmarkLeasing(session, mark uint64) {
	if s.leases.polls(session) || s.leases.waitsFor(session) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	table, err := s.mdtTable(ctx)
	if err != nil {
		return
	}
	for _, m := range table {
		if !s.owns(m.Index) {
			return
		}
	}
	err = s.update(ctx, func(t *mtx) error {
		var r sessionRecord
		ok, err := t.getRecord(t.k.session(session), &r)
		if err != nil || !ok || r.LeaseMark != mark {
			return err
		}
		r.Leases, r.LeaseMark = false, 0
		return t.setRecord(t.k.session(session), &r)
	})
	if err != nil {
		s.log.Debug("mds: clear the lease flag of a gone session", "session", fmt.Sprintf("%#x", session), "err", err)
	}
}

// serveLeaseWait registers the poll: its handler parks the request
// (rpc.Request.Defer) instead of holding a worker while it waits.
func (s *Service) serveLeaseWait(srv *rpc.Server) {
	srv.Handle(proto.OpLeaseWait, func(ctx context.Context, r *rpc.Request) (*rpc.Reply, error) {
		req := new(proto.LeaseWaitReq)
		if err := decodeRequest(r, req); err != nil {
			return nil, err
		}
		if err := s.admit(ctx, req); err != nil {
			return nil, err
		}
		d := r.Defer()
		go func() {
			resp, err := s.leaseWait(ctx, req, d.Gone())
			if err != nil {
				d.Reply(nil, err)
				return
			}
			d.Reply(&rpc.Reply{Body: resp}, nil)
		}()
		return nil, rpc.ErrDeferred
	})
}

// evictForLease evicts a session that let a lease callback go unanswered
// until its leases ran out.
func (s *Service) evictForLease(session uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.log.Warn("mds: evicting a client that did not answer a metadata lease callback", "session", fmt.Sprintf("%#x", session))
	if err := s.endSession(ctx, session, "did not answer a metadata lease callback"); err != nil {
		s.log.Warn("mds: evict session", "session", fmt.Sprintf("%#x", session), "err", err)
	}
	if err := s.forgetSession(ctx, session); err != nil {
		s.log.Warn("mds: forget evicted session", "session", fmt.Sprintf("%#x", session), "err", err)
	}
}

// LeaseStats returns the lease counters, for metrics.
func (s *Service) LeaseStats() LeaseStats { return s.leases.stats() }

// TxnStats returns the counts of the service's metadata transactions.
func (s *Service) TxnStats() kv.Stats { return s.db.Stats() }
