package mds

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// leaseEnv is an env with metadata lease term term and two more sessions,
// a and b, each able to poll.
func leaseEnv(t *testing.T, term time.Duration) (e *env, a, b uint64) {
	t.Helper()
	e = newEnv(t, openEmbedded)
	e.metaLease = term
	e.restart()
	for _, id := range []*uint64{&a, &b} {
		c, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "lease-test"})
		e.must(err)
		*id = c.Session
	}
	return e, a, b
}

// as returns a context that makes a request come from session (as the rpc
// wrapper does) and the caller to read granted leases from.
func as(ctx context.Context, session uint64) (context.Context, *caller) {
	c := &caller{session: session}
	return context.WithValue(ctx, callerKey{}, c), c
}

// poll polls for session without waiting, acknowledging acks.
func (e *env) poll(session uint64, acks ...uint64) *proto.LeaseWaitResp {
	e.t.Helper()
	r, err := e.s.LeaseWait(e.ctx, &proto.LeaseWaitReq{Session: session, Acks: acks})
	e.must(err)
	return r
}

// finished returns ch's error if it delivered one already.
func finished(ch <-chan error) (bool, error) {
	select {
	case err := <-ch:
		return true, err
	default:
		return false, nil
	}
}

// TestLeaseCallback: a change to leased attributes waits for the holder's
// acknowledgement; no lease is granted on them meanwhile; the holder learns
// of it in its poll, and once it acknowledges, the change commits.
func TestLeaseCallback(t *testing.T) {
	e, a, b := leaseEnv(t, time.Hour)
	f := e.create(root, RootIno, "f", 0o644)
	e.poll(a)
	ctxA, _ := as(e.ctx, a)
	r, err := e.s.Lookup(ctxA, &proto.LookupReq{Cred: proto.Cred{Session: a}, Parent: RootIno, Name: "f"})
	e.must(err)
	if r.Lease == 0 {
		t.Fatal("lookup by a polling session got no lease")
	}
	ctxB, _ := as(e.ctx, b)
	chmod := async(func() error {
		_, err := e.s.Setattr(ctxB, &proto.SetattrReq{Cred: proto.Cred{Session: b}, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o600})
		return err
	})
	// The callback reaches a's next poll (this one may wait for it).
	var revokes []proto.Revoke
	for len(revokes) == 0 {
		resp, err := e.s.LeaseWait(e.ctx, &proto.LeaseWaitReq{Session: a, WaitMillis: 10_000})
		e.must(err)
		revokes = resp.Revokes
	}
	if len(revokes) != 1 || revokes[0].Ino != f.Ino {
		t.Fatalf("callbacks %+v, want one for %#x", revokes, f.Ino)
	}
	if done, err := finished(chmod); done {
		t.Fatalf("chmod committed before the lease holder acknowledged: %v", err)
	}
	g, err := e.s.Getattr(ctxA, &proto.GetattrReq{Ino: f.Ino, Session: a})
	e.must(err)
	if g.Lease != 0 {
		t.Fatal("lease granted on attributes a change is calling back")
	}
	e.poll(a, revokes[0].ID)
	e.must(<-chmod)
	if got := e.getattr(f.Ino).Mode & 0o777; got != 0o600 {
		t.Fatalf("mode %#o after chmod", got)
	}
	if st := e.s.LeaseStats(); st.Revokes == 0 || st.Acks == 0 || st.Grants == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLeaseOwnChange: a client's own change does not wait for its own
// leases on what the request names, and its create leaves it holding
// leases on the new file and the directory.
func TestLeaseOwnChange(t *testing.T) {
	e, a, _ := leaseEnv(t, time.Hour)
	d := e.mkdir(root, RootIno, "d", 0o777)
	e.poll(a)
	ctxA, c := as(e.ctx, a)
	_, err := e.s.Readdir(ctxA, &proto.ReaddirReq{Cred: proto.Cred{Session: a}, Ino: d.Ino})
	e.must(err)
	// Were a waited for, this would time out (a never polls again).
	ctx, cancel := context.WithTimeout(ctxA, 5*time.Second)
	defer cancel()
	r, err := e.s.Create(ctx, &proto.CreateReq{Cred: proto.Cred{Session: a}, Session: a, Parent: d.Ino, Name: "new",
		Mode: 0o644, Flags: syscall.O_RDWR | syscall.O_CREAT})
	e.must(err)
	if c.granted == 0 {
		t.Fatal("create left its client without leases on what it made")
	}
	_, err = e.s.Close(ctx, &proto.CloseReq{Session: a, Ino: r.Attr.Ino, Handle: r.Handle})
	e.must(err)
}

// TestLeaseHolderRunsOut: a holder that never answers is waited for until
// its leases run out (a term after its last poll), then evicted, and the
// change commits.
func TestLeaseHolderRunsOut(t *testing.T) {
	const term = 300 * time.Millisecond
	e, a, b := leaseEnv(t, term)
	f := e.create(root, RootIno, "f", 0o644)
	polled := time.Now()
	e.poll(a)
	ctxA, _ := as(e.ctx, a)
	g, err := e.s.Getattr(ctxA, &proto.GetattrReq{Ino: f.Ino, Session: a})
	e.must(err)
	if g.Lease == 0 {
		t.Fatal("no lease")
	}
	ctxB, _ := as(e.ctx, b)
	_, err = e.s.Setattr(ctxB, &proto.SetattrReq{Cred: proto.Cred{Session: b}, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o600})
	e.must(err)
	if waited := time.Since(polled); waited < term {
		t.Fatalf("change committed %v after the holder's last poll, before its leases ran out (%v)", waited, term)
	}
	if e.s.LeaseStats().Expired != 1 {
		t.Fatal("the silent holder was not counted")
	}
	// Eviction runs in the background; the session's next poll learns.
	for e.s.open.known(a) {
		time.Sleep(time.Millisecond)
	}
	_, err = e.s.LeaseWait(e.ctx, &proto.LeaseWaitReq{Session: a})
	wantErrno(t, err, syscall.ENOTCONN)
}

// TestLeaseTakeover: a restarted MDS waits, before a change, for every
// session that polled before to say it dropped its leases (or for a term).
func TestLeaseTakeover(t *testing.T) {
	e, a, b := leaseEnv(t, time.Hour)
	f := e.create(root, RootIno, "f", 0o644)
	e.poll(a)
	ctxA, _ := as(e.ctx, a)
	_, err := e.s.Getattr(ctxA, &proto.GetattrReq{Ino: f.Ino, Session: a})
	e.must(err)
	e.restart()
	ctxB, _ := as(e.ctx, b)
	chmod := async(func() error {
		_, err := e.s.Setattr(ctxB, &proto.SetattrReq{Cred: proto.Cred{Session: b}, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o600})
		return err
	})
	// Reads are served meanwhile.
	e.getattr(f.Ino)
	if done, err := finished(chmod); done {
		t.Fatalf("a change committed before a leasing session of before reset: %v", err)
	}
	_, err = e.s.LeaseWait(e.ctx, &proto.LeaseWaitReq{Session: a, Reset: []uint32{0}})
	e.must(err)
	e.must(<-chmod)
}

// TestLeaseGrantAfterChange: a reader whose snapshot may predate a change
// gets no lease, even if the change ended before the grant.
func TestLeaseGrantAfterChange(t *testing.T) {
	var l leaseTable
	l.init(time.Hour, time.Now, nil)
	l.poll(context.Background(), &proto.LeaseWaitReq{Session: 7}, 0, func() []uint32 { return nil }, nil)
	tok := l.token()
	b, err := l.breakLeases(context.Background(), []uint64{42}, nil, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.release(true)
	if l.grant(7, tok, 42) != 0 {
		t.Fatal("granted with a token from before a change")
	}
	if l.grant(7, l.token(), 42) == 0 {
		t.Fatal("no grant with a fresh token")
	}
	if l.grant(8, l.token(), 42) != 0 {
		t.Fatal("granted to a session that never polled")
	}
}

// TestLeaseGoneClientNotWaited: a leasing client whose poll's connection
// closes and stays closed (the client died) has its leases dropped after
// the grace and its lease flag in the store cleared, so a restarted MDS
// does not wait out its term (an hour here) before changing what it had
// leased. A flag set again since (the client came back) is not cleared.
func TestLeaseGoneClientNotWaited(t *testing.T) {
	e, a, b := leaseEnv(t, time.Hour)
	f := e.create(root, RootIno, "f", 0o644)
	e.poll(a)
	ctxA, _ := as(e.ctx, a)
	_, err := e.s.Getattr(ctxA, &proto.GetattrReq{Ino: f.Ino, Session: a})
	e.must(err)
	flagged := func(session uint64) bool {
		var r sessionRecord
		e.must(e.s.view(e.ctx, func(t *mtx) error {
			_, err := t.getRecord(t.k.session(session), &r)
			return err
		}))
		return r.Leases
	}
	if !flagged(a) {
		t.Fatal("a polling session is not flagged in the store")
	}
	// a's connection closes with its poll parked.
	gone := make(chan struct{})
	parked := async(func() error {
		_, err := e.s.leaseWait(e.ctx, &proto.LeaseWaitReq{Session: a, WaitMillis: 60_000}, gone)
		return err
	})
	close(gone)
	e.must(<-parked)
	deadline := time.Now().Add(20 * time.Second)
	for flagged(a) {
		if time.Now().After(deadline) {
			t.Fatal("the lease flag of a session whose connection closed was not cleared")
		}
		time.Sleep(10 * time.Millisecond)
	}

	e.restart()
	ctxB, _ := as(e.ctx, b)
	chmod := async(func() error {
		_, err := e.s.Setattr(ctxB, &proto.SetattrReq{Cred: proto.Cred{Session: b}, Ino: f.Ino, Valid: proto.SetMode, Mode: 0o600})
		return err
	})
	select {
	case err := <-chmod:
		e.must(err)
	case <-time.After(20 * time.Second):
		t.Fatal("a change after the restart waited for a client that was gone")
	}

	// A clearing only clears the setting it knows of.
	e.must(e.s.markLeasing(e.ctx, a))
	var r sessionRecord
	e.must(e.s.view(e.ctx, func(t *mtx) error {
		_, err := t.getRecord(t.k.session(a), &r)
		return err
	}))
	e.s.unmarkLeasing(a, r.LeaseMark+2) // an older setting's token
	if !flagged(a) {
		t.Fatal("clearing an older setting of the flag cleared a newer one")
	}
	e.s.unmarkLeasing(a, r.LeaseMark)
	if flagged(a) {
		t.Fatal("the flag was not cleared with its own token")
	}
}

// TestLeaseOwnDeleteQuiet: a client that deletes a file it holds a lease
// on is not called back for it (it removed the name itself); another
// holder is.
func TestLeaseOwnDeleteQuiet(t *testing.T) {
	e, a, b := leaseEnv(t, time.Hour)
	f := e.create(root, RootIno, "f", 0o644)
	for _, s := range []uint64{a, b} {
		e.poll(s)
		ctx, _ := as(e.ctx, s)
		_, err := e.s.Getattr(ctx, &proto.GetattrReq{Ino: f.Ino, Session: s})
		e.must(err)
	}
	ctxA, _ := as(e.ctx, a)
	unlink := async(func() error {
		return e.s.Unlink(ctxA, &proto.UnlinkReq{Cred: proto.Cred{Session: a}, Parent: RootIno, Name: "f"})
	})
	// b is called back and acknowledges; the unlink then commits.
	var acks []uint64
	for deadline := time.Now().Add(20 * time.Second); len(acks) == 0 && time.Now().Before(deadline); {
		r, err := e.s.LeaseWait(e.ctx, &proto.LeaseWaitReq{Session: b, WaitMillis: 1000})
		e.must(err)
		for _, r := range r.Revokes {
			if r.Ino == f.Ino {
				acks = append(acks, r.ID)
			}
		}
	}
	if len(acks) == 0 {
		t.Fatal("the other holder was not called back for the deleted file")
	}
	e.poll(b, acks...)
	e.must(<-unlink)
	for _, r := range e.poll(a).Revokes {
		if r.Ino == f.Ino {
			t.Fatalf("the deleting client was called back for the file it deleted: %+v", r)
		}
	}
}
