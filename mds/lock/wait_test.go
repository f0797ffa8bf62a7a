package lock

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"
)

// lockAsync runs a blocking Lock and delivers its result.
func lockAsync(ctx context.Context, m *checked, r Request) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- m.Lock(ctx, r, true) }()
	return ch
}

// result waits for a blocking Lock to return.
func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("blocking Lock did not return")
		return nil
	}
}

func mustLock(t *testing.T, m *checked, r Request) {
	t.Helper()
	if err := m.Lock(context.Background(), r, false); err != nil {
		t.Fatalf("Lock(%+v): %v", r, err)
	}
}

func onIno(ino uint64, r Request) Request {
	r.Ino = ino
	return r
}

func TestWaiterGrantedOnRelease(t *testing.T) {
	tests := []struct {
		name    string
		release func(t *testing.T, m *checked)
	}{
		{"unlock", func(t *testing.T, m *checked) { mustLock(t, m, un(1, 0, eof)) }},
		{"unlock of the blocking part", func(t *testing.T, m *checked) { mustLock(t, m, un(1, 5, 5)) }},
		{"downgrade of a read waiter's blocker", func(t *testing.T, m *checked) { mustLock(t, m, rd(1, 0, 9)) }},
		{"ReleaseOwner", func(t *testing.T, m *checked) { m.ReleaseOwner(testIno, own(1), false) }},
		{"ReleaseSession", func(t *testing.T, m *checked) { m.ReleaseSession(1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newChecked(t)
			mustLock(t, m, wr(1, 0, 9))
			waiter := req(Owner{Session: 2, Owner: 1, Pid: 9}, R, 5, 5)
			ch := lockAsync(context.Background(), m, waiter)
			m.waitQueued(testIno, 1)
			tc.release(t, m)
			if err := result(t, ch); err != nil {
				t.Fatalf("waiter: %v", err)
			}
			got := m.Locks(testIno)
			if !slices.ContainsFunc(got, func(c Conflict) bool { return c.Owner.Session == 2 && c.Start == 5 }) {
				t.Errorf("waiter's lock missing: %v", got)
			}
		})
	}
}

func TestWaiterCancelled(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, wr(1, 0, 9))
	ctx, cancel := context.WithCancel(context.Background())
	ch := lockAsync(ctx, m, wr(2, 0, 9))
	m.waitQueued(testIno, 1)
	cancel()
	if err := result(t, ch); err != syscall.EINTR {
		t.Fatalf("got %v, want EINTR", err)
	}
	m.waitQueued(testIno, 0)
	mustLock(t, m, un(1, 0, 9))
	if got := m.Locks(testIno); len(got) != 0 {
		t.Errorf("cancelled waiter was granted: %v", got)
	}
}

// TestCancelRacesGrant cancels a waiter while its blocker goes away: the
// outcome must be one or the other, never a lock behind an EINTR.
func TestCancelRacesGrant(t *testing.T) {
	m := newChecked(t)
	granted, interrupted := 0, 0
	for range 300 {
		mustLock(t, m, wr(1, 0, 9))
		ctx, cancel := context.WithCancel(context.Background())
		ch := lockAsync(ctx, m, wr(2, 0, 9))
		m.waitQueued(testIno, 1)
		go cancel()
		mustLock(t, m, un(1, 0, 9))
		err := result(t, ch)
		held := len(m.Locks(testIno)) == 1
		switch {
		case err == nil && held:
			granted++
		case err == syscall.EINTR && !held:
			interrupted++
		default:
			t.Fatalf("Lock returned %v but lock held is %v", err, held)
		}
		m.ReleaseOwner(testIno, own(2), false)
	}
	t.Logf("%d granted, %d interrupted", granted, interrupted)
}

func TestWaitersInArrivalOrder(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, wr(1, 0, 9))
	first := lockAsync(context.Background(), m, wr(2, 0, 9))
	m.waitQueued(testIno, 1)
	second := lockAsync(context.Background(), m, wr(3, 0, 9))
	m.waitQueued(testIno, 2)
	mustLock(t, m, un(1, 0, 9))
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	m.waitQueued(testIno, 1)
	mustLock(t, m, un(2, 0, 9))
	if err := result(t, second); err != nil {
		t.Fatal(err)
	}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, []span{{3, W, 0, 9, false}}) {
		t.Errorf("got %v", got)
	}
}

func TestUpgradeWaitsForOtherReaders(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, rd(1, 0, 9))
	mustLock(t, m, rd(2, 0, 9))
	ch := lockAsync(context.Background(), m, wr(1, 0, 9))
	m.waitQueued(testIno, 1)
	mustLock(t, m, un(2, 0, 9))
	if err := result(t, ch); err != nil {
		t.Fatal(err)
	}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, []span{{1, W, 0, 9, false}}) {
		t.Errorf("got %v", got)
	}
}

// TestGrantThatFreesWakesEarlierWaiter queues a reader behind owner 1's
// write lock, then owner 1 itself waiting to turn that lock into a wider read
// lock. Granting owner 1 frees the reader, which arrived first.
func TestGrantThatFreesWakesEarlierWaiter(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, wr(1, 0, 9))
	mustLock(t, m, wr(2, 10, 19))
	reader := lockAsync(context.Background(), m, rd(3, 0, 4))
	m.waitQueued(testIno, 1)
	downgrade := lockAsync(context.Background(), m, rd(1, 0, 19))
	m.waitQueued(testIno, 2)
	mustLock(t, m, un(2, 0, eof))
	for _, ch := range []<-chan error{downgrade, reader} {
		if err := result(t, ch); err != nil {
			t.Fatal(err)
		}
	}
	want := []span{{1, R, 0, 19, false}, {3, R, 0, 4, false}}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDeadlock(t *testing.T) {
	a := Owner{Session: 1, Owner: 1, Pid: 11}
	b := Owner{Session: 2, Owner: 1, Pid: 21} // another client, same owner id
	c := Owner{Session: 3, Owner: 5, Pid: 31}
	d := Owner{Session: 3, Owner: 6, Pid: 32}
	tests := []struct {
		name  string
		held  []Request
		waits []Request
		last  Request
		want  error
	}{
		{"two owners one inode",
			[]Request{req(a, W, 0, 9), req(b, W, 10, 19)},
			[]Request{req(a, W, 10, 19)},
			req(b, W, 0, 9), syscall.EDEADLK},
		{"two owners two inodes",
			[]Request{onIno(1, req(a, W, 0, 9)), onIno(2, req(b, W, 0, 9))},
			[]Request{onIno(2, req(a, R, 0, 0))},
			onIno(1, req(b, R, 5, 5)), syscall.EDEADLK},
		{"both upgrading a shared range",
			[]Request{req(a, R, 0, 9), req(b, R, 0, 9)},
			[]Request{req(a, W, 0, 9)},
			req(b, W, 5, 5), syscall.EDEADLK},
		{"three owners",
			[]Request{onIno(1, req(a, W, 0, -1)), onIno(2, req(b, W, 0, -1)), onIno(3, req(c, W, 0, -1))},
			[]Request{onIno(2, req(a, W, 0, 0)), onIno(3, req(b, W, 0, 0))},
			onIno(1, req(c, W, 0, 0)), syscall.EDEADLK},
		{"chain without a cycle",
			[]Request{onIno(1, req(a, W, 0, -1)), onIno(2, req(b, W, 0, -1)), onIno(3, req(c, W, 0, -1)), onIno(4, req(d, W, 0, -1))},
			[]Request{onIno(2, req(a, W, 0, 0)), onIno(3, req(b, W, 0, 0))},
			onIno(4, req(c, W, 0, 0)), nil},
		{"cycle through one of several blockers",
			[]Request{req(a, R, 0, 9), req(b, R, 0, 9), onIno(2, req(c, W, 0, 9))},
			[]Request{onIno(2, req(b, W, 0, 9))},
			req(c, W, 0, 9), syscall.EDEADLK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newChecked(t)
			for _, r := range tc.held {
				mustLock(t, m, r)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var blocked []<-chan error
			for _, r := range tc.waits {
				n := m.queued(r.Ino)
				blocked = append(blocked, lockAsync(ctx, m, r))
				m.waitQueued(r.Ino, n+1)
			}
			last := lockAsync(ctx, m, tc.last)
			if tc.want != nil {
				if err := result(t, last); err != tc.want {
					t.Fatalf("last request: got %v, want %v", err, tc.want)
				}
			} else {
				m.waitQueued(tc.last.Ino, 1)
				blocked = append(blocked, last)
			}
			// Failing with EDEADLK changed nothing: the others still wait
			// until the locks go away.
			for _, r := range tc.held {
				m.ReleaseSession(r.Owner.Session)
			}
			for _, ch := range blocked {
				if err := result(t, ch); err != nil && err != syscall.ENOLCK {
					t.Errorf("blocked request: %v", err)
				}
			}
		})
	}
}

func TestDeadlockBrokenWhenWaiterLeaves(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, wr(1, 0, 9))
	mustLock(t, m, wr(2, 10, 19))
	ctx, cancel := context.WithCancel(context.Background())
	ch := lockAsync(ctx, m, wr(1, 10, 19))
	m.waitQueued(testIno, 1)
	if err := m.Lock(context.Background(), wr(2, 0, 9), true); err != syscall.EDEADLK {
		t.Fatalf("got %v, want EDEADLK", err)
	}
	cancel()
	if err := result(t, ch); err != syscall.EINTR {
		t.Fatalf("got %v, want EINTR", err)
	}
	// Owner 1 no longer waits, so owner 2 may now wait for it.
	ch = lockAsync(context.Background(), m, wr(2, 0, 9))
	m.waitQueued(testIno, 1)
	mustLock(t, m, un(1, 0, eof))
	if err := result(t, ch); err != nil {
		t.Fatal(err)
	}
}

// TestFlockNotDeadlockChecked shows that, as on Linux, flock waits are not
// part of deadlock detection: crossed flock waits just block.
func TestFlockNotDeadlockChecked(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, onIno(1, flk(1, W)))
	mustLock(t, m, onIno(2, flk(2, W)))
	ctx, cancel := context.WithCancel(context.Background())
	a := lockAsync(ctx, m, onIno(2, flk(1, W)))
	m.waitQueued(2, 1)
	b := lockAsync(ctx, m, onIno(1, flk(2, W)))
	m.waitQueued(1, 1)
	cancel()
	for _, ch := range []<-chan error{a, b} {
		if err := result(t, ch); err != syscall.EINTR {
			t.Errorf("got %v, want EINTR", err)
		}
	}
}

func TestFlockBlockingUpgrade(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, flk(1, R))
	mustLock(t, m, flk(2, R))
	// Both shared holders upgrade. The first drops its shared lock before
	// it waits, so the second is not blocked and the two cannot deadlock.
	first := lockAsync(context.Background(), m, flk(1, W))
	m.waitQueued(testIno, 1)
	if got := spans(m.Locks(testIno)); !slices.Equal(got, []span{{2, R, 0, eof, true}}) {
		t.Errorf("waiting upgrade kept its shared lock: %v", got)
	}
	if err := m.Lock(context.Background(), flk(2, W), true); err != nil {
		t.Fatal(err)
	}
	mustLock(t, m, flk(2, UN))
	if err := result(t, first); err != nil {
		t.Fatal(err)
	}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, []span{{1, W, 0, eof, true}}) {
		t.Errorf("got %v", got)
	}
}

func TestFlockWaiterIgnoresFcntl(t *testing.T) {
	m := newChecked(t)
	mustLock(t, m, flk(1, W))
	ch := lockAsync(context.Background(), m, flk(2, R))
	m.waitQueued(testIno, 1)
	mustLock(t, m, wr(1, 0, eof))          // fcntl changes do not grant it
	m.ReleaseOwner(testIno, own(1), false) // nor does an fcntl release
	m.waitQueued(testIno, 1)               // still waiting
	m.ReleaseOwner(testIno, own(1), true)  // closing the open file does
	if err := result(t, ch); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseSessionWakesOthers kills a session that holds locks others
// wait for, in both namespaces, and that itself waits elsewhere.
func TestReleaseSessionWakesOthers(t *testing.T) {
	m := newChecked(t)
	dead := Owner{Session: 5, Owner: 1, Pid: 51}
	mustLock(t, m, req(dead, W, 0, -1))
	mustLock(t, m, Request{Ino: testIno, Owner: dead, Type: W, Flock: true})
	mustLock(t, m, onIno(2, req(dead, R, 0, -1)))
	mustLock(t, m, onIno(3, wr(1, 0, -1)))
	mustLock(t, m, onIno(4, flk(2, W)))
	var others []<-chan error
	for _, r := range []Request{rd(3, 0, 0), rd(4, 100, 200), flk(6, W), onIno(2, wr(5, 0, 0))} {
		n := m.queued(r.Ino)
		others = append(others, lockAsync(context.Background(), m, r))
		m.waitQueued(r.Ino, n+1)
	}
	deadWaits := []<-chan error{
		lockAsync(context.Background(), m, onIno(3, req(dead, R, 0, 0))),
		lockAsync(context.Background(), m, onIno(4, Request{Owner: dead, Type: R, Flock: true})),
	}
	m.waitQueued(3, 1)
	m.waitQueued(4, 1)
	m.ReleaseSession(5)
	for _, ch := range deadWaits {
		if err := result(t, ch); err != syscall.ENOLCK {
			t.Errorf("dead session's waiter: got %v, want ENOLCK", err)
		}
	}
	for i, ch := range others {
		if err := result(t, ch); err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
	want := []span{{3, R, 0, 0, false}, {4, R, 100, 200, false}, {6, W, 0, eof, true}}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	m.ReleaseSession(1)
	for _, ino := range []uint64{testIno, 2, 3, 4} {
		if got := m.Locks(ino); len(got) != 0 {
			t.Errorf("ino %d still locked: %v", ino, got)
		}
	}
}
