package lock

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStress has many owners lock, unlock, test and release at random over a
// few small files. Every change is checked against the invariants (no two
// conflicting locks granted, merged ranges, wait-for edges current) under the
// inode's mutex, and so is each inode after every operation. Each owner is
// single-threaded, so deadlock detection is complete for its fcntl waits:
// they block without a timeout, and one stuck until the watchdog fires is a
// deadlock the manager missed.
func TestStress(t *testing.T) {
	const (
		goroutines = 16
		sessions   = 4
		inodes     = 4
	)
	ops := 3000
	if testing.Short() {
		ops = 300
	}
	m := newChecked(t)
	watchdog, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var counts [6]atomic.Int64 // granted, EAGAIN, EDEADLK, ENOLCK, EINTR (flock), waits
	count := func(err error) {
		switch err {
		case nil:
			counts[0].Add(1)
		case syscall.EAGAIN:
			counts[1].Add(1)
		case syscall.EDEADLK:
			counts[2].Add(1)
		case syscall.ENOLCK:
			counts[3].Add(1)
		case syscall.EINTR:
			counts[4].Add(1)
		}
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			session := uint64(g%sessions + 1)
			posix := Owner{Session: session, Owner: uint64(g + 1), Pid: uint32(1000 + g)}
			flock := Owner{Session: session, Owner: uint64(g + 1001), Pid: uint32(1000 + g)}
			for range ops {
				ino := uint64(rng.IntN(inodes) + 1)
				r := Request{Ino: ino, Owner: posix, Type: uint8(rng.IntN(2))}
				r.Start = int64(rng.IntN(64))
				r.End = r.Start + int64(rng.IntN(16))
				if rng.IntN(8) == 0 {
					r.End = -1
				}
				var err error
				switch p := rng.IntN(100); {
				case p < 35:
					err = m.Lock(context.Background(), r, false)
					if err != nil && err != syscall.EAGAIN {
						t.Errorf("non-blocking Lock: %v", err)
					}
				case p < 55:
					counts[5].Add(1)
					err = m.Lock(watchdog, r, true)
					if err != nil && err != syscall.EDEADLK && err != syscall.ENOLCK {
						t.Errorf("blocking Lock %+v: %v (a missed deadlock?)", r, err)
					}
				case p < 70:
					r.Type = UN
					err = m.Lock(context.Background(), r, false)
				case p < 75:
					m.ReleaseOwner(ino, posix, false)
				case p < 85:
					_, _, err = m.Test(r)
				case p < 93:
					r.Owner, r.Flock, r.Type = flock, true, uint8(rng.IntN(3))
					err = m.Lock(context.Background(), r, false)
				case p < 97:
					// flock waits are not deadlock-checked: bound them.
					r.Owner, r.Flock = flock, true
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					err = m.Lock(ctx, r, true)
					cancel()
				case p < 99:
					m.ReleaseOwner(ino, flock, true)
				default:
					m.ReleaseSession(session)
				}
				count(err)
				m.verify(ino)
			}
			for ino := range uint64(inodes) {
				m.ReleaseOwner(ino+1, posix, false)
				m.ReleaseOwner(ino+1, flock, true)
			}
		})
	}
	wg.Wait()
	for ino := range uint64(inodes) {
		if got := m.Locks(ino + 1); len(got) != 0 {
			t.Errorf("ino %d: locks left: %v", ino+1, got)
		}
	}
	t.Logf("granted %d, EAGAIN %d, EDEADLK %d, ENOLCK %d, EINTR %d, blocking fcntl requests %d",
		counts[0].Load(), counts[1].Load(), counts[2].Load(), counts[3].Load(), counts[4].Load(), counts[5].Load())
}

// verify checks ino's invariants now.
func (c *checked) verify(ino uint64) {
	st := c.pin(ino, 0, false)
	if st == nil {
		return
	}
	defer c.unlockAndUnpin(st)
	if err := c.checkInode(st); err != nil && c.fails.Add(1) <= 10 {
		c.t.Errorf("ino %d: %v", ino, err)
	}
}

func BenchmarkUncontended(b *testing.B) {
	m := NewManager()
	ctx := context.Background()
	lock := Request{Ino: 1, Owner: Owner{Session: 1, Owner: 1}, Type: W, Start: 0, End: 4095}
	unlock := lock
	unlock.Type = UN
	for b.Loop() {
		if err := m.Lock(ctx, lock, false); err != nil {
			b.Fatal(err)
		}
		if err := m.Lock(ctx, unlock, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUncontendedParallel locks and unlocks one inode per goroutine.
func BenchmarkUncontendedParallel(b *testing.B) {
	m := NewManager()
	ctx := context.Background()
	var next atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		id := next.Add(1)
		lock := Request{Ino: id, Owner: Owner{Session: id, Owner: 1}, Type: W, Start: 0, End: -1}
		unlock := lock
		unlock.Type = UN
		for pb.Next() {
			if err := m.Lock(ctx, lock, false); err != nil {
				b.Fatal(err)
			}
			if err := m.Lock(ctx, unlock, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkManyHolders locks and unlocks a range of a file on which 100
// other owners hold read locks.
func BenchmarkManyHolders(b *testing.B) {
	m := NewManager()
	ctx := context.Background()
	for i := range int64(100) {
		r := Request{Ino: 1, Owner: Owner{Session: 2, Owner: uint64(i)}, Type: R, Start: i * 10, End: i*10 + 9}
		if err := m.Lock(ctx, r, false); err != nil {
			b.Fatal(err)
		}
	}
	lock := Request{Ino: 1, Owner: Owner{Session: 1, Owner: 1}, Type: R, Start: 0, End: -1}
	unlock := lock
	unlock.Type = UN
	for b.Loop() {
		if err := m.Lock(ctx, lock, false); err != nil {
			b.Fatal(err)
		}
		if err := m.Lock(ctx, unlock, false); err != nil {
			b.Fatal(err)
		}
	}
}
