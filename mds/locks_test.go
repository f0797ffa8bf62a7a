package mds

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Locks are keyed by inode number alone: the MDS does not read the inode,
// so these tests lock numbers without creating files.
const (
	lockIno  = 0x1001
	lockIno2 = 0x1002
)

// wireSession is one client session over the wire.
type wireSession struct {
	t       *testing.T
	c       *rpc.Client
	addr    string
	session uint64
}

func connectWire(t *testing.T, c *rpc.Client, addr string) *wireSession {
	t.Helper()
	var conn proto.ConnectResp
	if err := c.Call(context.Background(), addr, proto.OpConnect, &proto.ConnectReq{FSName: "wirefs"}, &conn); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return &wireSession{t: t, c: c, addr: addr, session: conn.Session}
}

// lock sends OpLock for an fcntl lock of owner, pid 100+owner.
func (w *wireSession) lock(ino, owner uint64, typ uint8, start, end int64, wait bool) error {
	req := proto.LockReq{Session: w.session, Ino: ino, Owner: owner, Pid: uint32(100 + owner),
		Type: typ, Start: start, End: end, Wait: wait}
	var resp proto.LockResp
	return w.c.Call(context.Background(), w.addr, proto.OpLock, &req, &resp)
}

// getlk sends OpGetLk.
func (w *wireSession) getlk(ino, owner uint64, typ uint8, start, end int64) proto.LockResp {
	w.t.Helper()
	req := proto.LockReq{Session: w.session, Ino: ino, Owner: owner, Type: typ, Start: start, End: end}
	var resp proto.LockResp
	if err := w.c.Call(context.Background(), w.addr, proto.OpGetLk, &req, &resp); err != nil {
		w.t.Fatalf("getlk: %v", err)
	}
	return resp
}

func (w *wireSession) call(op uint16, req any) error {
	return w.c.Call(context.Background(), w.addr, op, req, nil)
}

// async runs fn in a goroutine and returns its result's channel.
func async(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

func TestLocksOverTheWire(t *testing.T) {
	addr, stop := startServer(t)
	defer stop()
	c := rpc.NewClient(rpc.ClientConfig{Secret: testSecret})
	defer c.Close()
	a, b := connectWire(t, c, addr), connectWire(t, c, addr)
	const W, R, UN = proto.LockWrite, proto.LockRead, proto.LockUnlock

	// Conflict without waiting; F_GETLK names the holder.
	if err := a.lock(lockIno, 1, W, 0, -1, false); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, b.lock(lockIno, 2, W, 10, 20, false), syscall.EAGAIN)
	wantErrno(t, b.lock(lockIno, 2, R, 10, 20, false), syscall.EAGAIN)
	if got := b.getlk(lockIno, 2, R, 10, 20); got != (proto.LockResp{Type: W, Start: 0, End: -1, Pid: 101}) {
		t.Fatalf("getlk: %+v", got)
	}
	if got := a.getlk(lockIno, 1, W, 10, 20); got.Type != UN {
		t.Fatalf("getlk of the holder's own range: %+v", got)
	}

	// A waiting request is held for one slice, then answered EAGAIN.
	start := time.Now()
	wantErrno(t, b.lock(lockIno, 2, W, 10, 20, true), syscall.EAGAIN)
	if d := time.Since(start); d < proto.LockWaitSlice*time.Millisecond*9/10 {
		t.Fatalf("waiting request answered after %v", d)
	}
	// Released within the slice, it is granted.
	waiting := async(func() error { return b.lock(lockIno, 2, W, 10, 20, true) })
	time.Sleep(100 * time.Millisecond)
	if err := a.lock(lockIno, 1, UN, 0, -1, false); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("waiter after the release: %v", err)
	}
	if got := a.getlk(lockIno, 1, W, 0, 100); got != (proto.LockResp{Type: W, Start: 10, End: 20, Pid: 102}) {
		t.Fatalf("getlk after the grant: %+v", got)
	}

	// Deadlock across sessions: a holds 100 and waits for 200, b holds 200
	// and asks for 100.
	if err := a.lock(lockIno, 1, W, 100, 100, false); err != nil {
		t.Fatal(err)
	}
	if err := b.lock(lockIno, 2, W, 200, 200, false); err != nil {
		t.Fatal(err)
	}
	waiting = async(func() error { return a.lock(lockIno, 1, W, 200, 200, true) })
	time.Sleep(100 * time.Millisecond)
	wantErrno(t, b.lock(lockIno, 2, W, 100, 100, true), syscall.EDEADLK)
	wantErrno(t, <-waiting, syscall.EAGAIN)

	// Invalid requests.
	wantErrno(t, a.lock(lockIno, 1, 7, 0, 0, false), syscall.EINVAL)
	wantErrno(t, a.lock(lockIno, 1, W, 10, 5, false), syscall.EINVAL)
	err := a.c.Call(context.Background(), addr, proto.OpGetLk, &proto.LockReq{Session: a.session, Ino: lockIno, Type: UN}, &proto.LockResp{})
	wantErrno(t, err, syscall.EINVAL)

	// flock locks: whole file, their own namespace; the owner is the open file.
	flock := func(w *wireSession, owner uint64, typ uint8) error {
		return w.call(proto.OpLock, &proto.LockReq{Session: w.session, Ino: lockIno2, Owner: owner, Pid: 7, Type: typ, Flock: true})
	}
	if err := flock(a, 11, W); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, flock(b, 12, R), syscall.EAGAIN)
	if err := b.lock(lockIno2, 2, W, 0, -1, false); err != nil {
		t.Fatalf("fcntl lock beside a flock lock: %v", err)
	}
	var got proto.LockResp
	err = b.c.Call(context.Background(), addr, proto.OpGetLk, &proto.LockReq{Session: b.session, Ino: lockIno2, Owner: 12, Type: R, Flock: true}, &got)
	if err != nil || got != (proto.LockResp{Type: W, Start: 0, End: -1, Pid: 7}) {
		t.Fatalf("getlk of a flock lock: %+v %v", got, err)
	}
	// Close of the open file releases its flock lock.
	if err := a.call(proto.OpUnlock, &proto.UnlockReq{Session: a.session, Ino: lockIno2, Owner: 11, Flock: true}); err != nil {
		t.Fatal(err)
	}
	if err := flock(b, 12, R); err != nil {
		t.Fatalf("flock after the holder's close: %v", err)
	}
	// Close by a process releases its fcntl locks on that inode only.
	if err := a.call(proto.OpUnlock, &proto.UnlockReq{Session: a.session, Ino: lockIno, Owner: 1}); err != nil {
		t.Fatal(err)
	}
	if got := b.getlk(lockIno, 2, W, 0, -1); got.Type != UN {
		t.Fatalf("a's lock survived its close: %+v", got)
	}

	// Disconnect releases everything; the session is then refused.
	if err := a.lock(lockIno, 1, R, 1000, 2000, false); err != nil {
		t.Fatal(err)
	}
	if err := b.call(proto.OpDisconnect, &proto.DisconnectReq{Session: b.session}); err != nil {
		t.Fatal(err)
	}
	if err := a.lock(lockIno, 1, W, 0, -1, false); err != nil {
		t.Fatalf("lock after the other session disconnected: %v", err)
	}
	if err := flock(a, 11, W); err != nil {
		t.Fatalf("flock after the other session disconnected: %v", err)
	}
	wantErrno(t, b.lock(lockIno, 2, R, 0, 0, false), syscall.ENOTCONN)
	err = b.c.Call(context.Background(), addr, proto.OpGetLk, &proto.LockReq{Session: b.session, Ino: lockIno, Type: R}, &proto.LockResp{})
	wantErrno(t, err, syscall.ENOTCONN)
	wantErrno(t, b.call(proto.OpUnlock, &proto.UnlockReq{Session: b.session}), syscall.ENOTCONN)
	wantErrno(t, a.call(proto.OpLock, &proto.LockReq{Session: 42, Ino: lockIno, Type: R}), syscall.ENOTCONN)

	// Ino 0 releases every lock of the session.
	c2 := connectWire(t, c, addr)
	if err := a.call(proto.OpUnlock, &proto.UnlockReq{Session: a.session}); err != nil {
		t.Fatal(err)
	}
	if err := c2.lock(lockIno, 3, W, 0, -1, false); err != nil {
		t.Fatalf("lock after releasing the session's locks: %v", err)
	}
	if err := flock(c2, 13, W); err != nil {
		t.Fatalf("flock after releasing the session's locks: %v", err)
	}
}

// TestLockLeaseExpiry checks that the locks of a client that stops
// renewing go to a waiter of another session within about a lease.
func TestLockLeaseExpiry(t *testing.T) {
	const lease = time.Second
	addr, stop := startServerLease(t, lease)
	defer stop()
	c := rpc.NewClient(rpc.ClientConfig{Secret: testSecret})
	defer c.Close()
	dead, live := connectWire(t, c, addr), connectWire(t, c, addr)
	ctx, cancel := context.WithCancel(context.Background())
	renewing := async(func() error {
		tick := time.NewTicker(lease / 5)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				if err := live.call(proto.OpRenew, &proto.RenewReq{Session: live.session}); err != nil {
					return err
				}
			}
		}
	})
	defer func() {
		cancel()
		if err := <-renewing; err != nil {
			t.Errorf("renew: %v", err)
		}
	}()
	if err := dead.lock(lockIno, 1, proto.LockWrite, 0, -1, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		err := live.lock(lockIno, 2, proto.LockWrite, 0, 10, true)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EAGAIN) {
			t.Fatalf("waiting for the dead session's lock: %v", err)
		}
		if time.Since(start) > 10*lease {
			t.Fatal("the dead session's lock was never released")
		}
	}
	if d := time.Since(start); d < lease/2 {
		t.Fatalf("lock granted after %v, before the lease could expire", d)
	}
	wantErrno(t, dead.lock(lockIno, 1, proto.LockRead, 100, 200, false), syscall.ENOTCONN)
	wantErrno(t, dead.call(proto.OpRenew, &proto.RenewReq{Session: dead.session}), syscall.ENOTCONN)
}

// TestLockSessions checks the session rules of the lock handlers at the
// service: an expired lease refuses requests before the reaper runs, and
// a session that ends while its request waits keeps nothing.
func TestLockSessions(t *testing.T) {
	e := newEnv(t, openEmbedded)
	e.s.lockWait = 5 * time.Second
	other, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	lockReq := func(session, owner uint64, typ uint8, wait bool) *proto.LockReq {
		return &proto.LockReq{Session: session, Ino: lockIno, Owner: owner, Type: typ, Start: 0, End: -1, Wait: wait}
	}
	_, err = e.s.Lock(e.ctx, lockReq(e.session, 1, proto.LockWrite, false))
	e.must(err)
	// other waits; its session ends meanwhile: the request fails, and
	// whatever it was granted is gone.
	waiting := async(func() error {
		_, err := e.s.Lock(e.ctx, lockReq(other.Session, 2, proto.LockRead, true))
		return err
	})
	time.Sleep(50 * time.Millisecond)
	e.must(e.s.Disconnect(e.ctx, &proto.DisconnectReq{Session: other.Session}))
	wantErrno(t, <-waiting, syscall.ENOTCONN)
	// The slice is what bounds a wait.
	e.s.lockWait = 50 * time.Millisecond
	third, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	_, err = e.s.Lock(e.ctx, lockReq(third.Session, 3, proto.LockRead, true))
	wantErrno(t, err, syscall.EAGAIN)
	// A session that ended is refused, and holds nothing.
	e.must(e.s.Disconnect(e.ctx, &proto.DisconnectReq{Session: third.Session}))
	_, err = e.s.Lock(e.ctx, lockReq(third.Session, 3, proto.LockRead, false))
	wantErrno(t, err, syscall.ENOTCONN)
	if held := e.s.locks.Locks(lockIno); len(held) != 1 || held[0].Owner.Session != e.session {
		t.Fatalf("locks held: %+v", held)
	}
	// An expired lease refuses lock requests and renewal, reaped or not.
	e.clock.Advance(31 * time.Second)
	_, err = e.s.Lock(e.ctx, lockReq(e.session, 1, proto.LockRead, false))
	wantErrno(t, err, syscall.ENOTCONN)
	_, err = e.s.GetLk(e.ctx, lockReq(e.session, 1, proto.LockRead, false))
	wantErrno(t, err, syscall.ENOTCONN)
	_, err = e.s.Renew(e.ctx, &proto.RenewReq{Session: e.session})
	wantErrno(t, err, syscall.ENOTCONN)
	e.s.reapSessions(e.ctx, e.clock.Now())
	if held := e.s.locks.Locks(lockIno); len(held) != 0 {
		t.Fatalf("locks of the expired session: %+v", held)
	}
}
