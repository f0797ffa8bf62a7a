package client

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// lockedFile creates a file through c and returns its inode number.
func lockedFile(t *testing.T, c *Client, name string) uint64 {
	t.Helper()
	f := mustCreate(t, c, name)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Ino()
}

func wlock(start, end int64) Lock {
	return Lock{Type: proto.LockWrite, Start: start, End: end, Pid: 42}
}

func TestLocksConflictAcrossClients(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c1, c2 := fc.client(Config{}), fc.client(Config{})
	ctx := context.Background()
	ino := lockedFile(t, c1, "/f")
	if err := c1.SetLk(ctx, ino, 1, wlock(0, 99), false); err != nil {
		t.Fatal(err)
	}
	// The same owner number on another client is another owner.
	if err := c2.SetLk(ctx, ino, 1, wlock(50, 59), false); Errno(err) != syscall.EAGAIN {
		t.Fatalf("conflicting F_SETLK from another client: %v, want EAGAIN", err)
	}
	got, err := c2.GetLk(ctx, ino, 1, wlock(10, -1))
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != proto.LockWrite || got.Start != 0 || got.End != 99 || got.Pid != 42 {
		t.Errorf("GetLk = %+v, want the write lock [0, 99] of pid 42", got)
	}
	if got, _ := c2.GetLk(ctx, ino, 1, wlock(100, -1)); got.Type != proto.LockUnlock {
		t.Errorf("GetLk past the lock = %+v, want LockUnlock", got)
	}
	// flock locks live apart from fcntl locks.
	if err := c2.SetLk(ctx, ino, 1, Lock{Type: proto.LockWrite, Flock: true}, false); err != nil {
		t.Errorf("flock beside an fcntl lock: %v", err)
	}
	if err := c1.SetLk(ctx, ino, 9, Lock{Type: proto.LockRead, Flock: true}, false); Errno(err) != syscall.EAGAIN {
		t.Errorf("shared flock beside an exclusive one: %v, want EAGAIN", err)
	}
}

func TestSetLkWaitsInSlicesUntilGranted(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c1, c2 := fc.client(Config{}), fc.client(Config{})
	ctx := context.Background()
	ino := lockedFile(t, c1, "/f")
	if err := c1.SetLk(ctx, ino, 1, wlock(0, -1), false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c2.SetLk(ctx, ino, 2, wlock(10, 20), true) }()
	time.Sleep(3 * fc.lockSlice)
	select {
	case err := <-done:
		t.Fatalf("F_SETLKW returned %v while the lock was held", err)
	default:
	}
	if err := c1.SetLk(ctx, ino, 1, Lock{Type: proto.LockUnlock, End: -1}, false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("F_SETLKW after the unlock: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("F_SETLKW not granted within 5s of the unlock")
	}
	if n := fc.opCount(proto.OpLock); n < 4 {
		t.Errorf("%d lock requests, want several slices of waiting", n)
	}
}

func TestSetLkCancelledBetweenSlices(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c1, c2 := fc.client(Config{}), fc.client(Config{})
	ino := lockedFile(t, c1, "/f")
	if err := c1.SetLk(context.Background(), ino, 1, wlock(0, 0), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(fc.lockSlice/4, cancel)
	start := time.Now()
	err := c2.SetLk(ctx, ino, 2, wlock(0, 0), true)
	if !errors.Is(err, context.Canceled) || Errno(err) != syscall.EINTR {
		t.Fatalf("cancelled F_SETLKW: %v (errno %v), want EINTR", err, Errno(err))
	}
	// The request in flight ran to its answer: no grant can come later.
	if d := time.Since(start); d < fc.lockSlice {
		t.Errorf("returned after %v, before the slice in flight (%v) ended", d, fc.lockSlice)
	}
	for _, l := range fc.heldLocks() {
		if l.owner == 2 {
			t.Errorf("the cancelled waiter holds %+v", l)
		}
	}
}

func TestUnlockAsksOnlyForLockers(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c := fc.client(Config{})
	ctx := context.Background()
	ino := lockedFile(t, c, "/f")
	// close(2) of a file this owner never locked costs nothing.
	if err := c.Unlock(ctx, ino, 7, false); err != nil {
		t.Fatal(err)
	}
	if n := fc.opCount(proto.OpUnlock); n != 0 {
		t.Fatalf("%d unlock requests for an owner that never locked", n)
	}
	if err := c.SetLk(ctx, ino, 7, wlock(0, 9), false); err != nil {
		t.Fatal(err)
	}
	if err := c.SetLk(ctx, ino, 7, Lock{Type: proto.LockRead, Flock: true}, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlock(ctx, ino, 7, false); err != nil {
		t.Fatal(err)
	}
	if n := fc.opCount(proto.OpUnlock); n != 1 {
		t.Errorf("%d unlock requests, want 1", n)
	}
	held := fc.heldLocks()
	if len(held) != 1 || !held[0].flock {
		t.Errorf("after releasing the fcntl locks: %+v, want the flock lock alone", held)
	}
	if err := c.Unlock(ctx, ino, 7, true); err != nil {
		t.Fatal(err)
	}
	if held := fc.heldLocks(); len(held) != 0 {
		t.Errorf("after releasing the flock lock: %+v", held)
	}
	if err := c.Unlock(ctx, ino, 7, false); err != nil || fc.opCount(proto.OpUnlock) != 2 {
		t.Errorf("a second release asked the MDS again (%v)", err)
	}
	// UnlockAll drops the session's locks, whoever owns them.
	for owner := range uint64(3) {
		if err := c.SetLk(ctx, ino, owner, wlock(int64(owner)*10, int64(owner)*10+5), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.UnlockAll(ctx); err != nil {
		t.Fatal(err)
	}
	if held := fc.heldLocks(); len(held) != 0 {
		t.Errorf("after UnlockAll: %+v", held)
	}
}

// TestLockReconnectsLostSession: a client whose session the MDS ended
// (evicted) is told so once, with EIO, not silently given its locks back;
// it has a new session at once and its next requests work.
func TestLockReconnectsLostSession(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c := fc.client(Config{})
	ctx := context.Background()
	ino := lockedFile(t, c, "/f")
	old := c.sessionID()
	fc.dropSession(old)
	if err := c.SetLk(ctx, ino, 1, wlock(0, 0), false); Errno(err) != syscall.EIO || !errors.Is(err, ErrEvicted) {
		t.Fatalf("lock after the session was lost: %v, want EIO (evicted)", err)
	}
	if c.sessionID() == old {
		t.Fatal("still on the lost session")
	}
	if err := c.SetLk(ctx, ino, 1, wlock(0, 0), false); err != nil {
		t.Fatalf("lock on the new session: %v", err)
	}
	if held := fc.heldLocks(); len(held) != 1 || held[0].session != c.sessionID() {
		t.Errorf("locks %+v, want one of session %d", held, c.sessionID())
	}
	// The locks of a lost session are gone: releasing them succeeds.
	fc.dropSession(c.sessionID())
	if err := c.Unlock(ctx, ino, 1, false); err != nil {
		t.Errorf("release on a lost session: %v", err)
	}
}

func TestAppendReservesAtTheMDS(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 64<<10)
	clients := []*Client{fc.client(Config{}), fc.client(Config{Consistency: Strict})}
	f := mustCreate(t, clients[0], "/log")
	if _, err := f.Write([]byte("head\n")); err != nil {
		t.Fatal(err)
	}
	// An unreported extension of this client goes to the MDS before the
	// reservation, so the append lands after it.
	a, err := clients[0].OpenFile("/log", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if pos, _ := a.Seek(0, 1); pos != 9 {
		t.Errorf("position after the append %d, want 9", pos)
	}
	if a.Size() != 9 {
		t.Errorf("size after the append %d, want 9", a.Size())
	}
	for _, g := range []*File{a, f} {
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	const writers, records, recSize = 3, 40, 50
	errs := make(chan error, 2*writers)
	for i, c := range clients {
		for w := range writers {
			go func() {
				g, err := c.OpenFile("/log", os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					errs <- err
					return
				}
				rec := make([]byte, recSize)
				for r := range records {
					for k := range rec {
						rec[k] = byte('a' + i*writers + w)
					}
					rec[0], rec[recSize-1] = byte(r), '\n'
					if _, err := g.WriteAt(rec, 0); err != nil { // the offset does not count
						errs <- err
						return
					}
				}
				errs <- g.Close()
			}()
		}
	}
	for range 2 * writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, clients[1], "/log")
	if string(got[:9]) != "head\none\n" {
		t.Fatalf("log starts %q", got[:min(len(got), 9)])
	}
	body := got[9:]
	if len(body) != 2*writers*records*recSize {
		t.Fatalf("log body %d bytes, want %d: appends overlapped", len(body), 2*writers*records*recSize)
	}
	next := map[byte]int{}
	for off := 0; off < len(body); off += recSize {
		rec := body[off : off+recSize]
		who := rec[1]
		if int(rec[0]) != next[who] || rec[recSize-1] != '\n' {
			t.Fatalf("record at %d: writer %c record %d, want %d", off, who, rec[0], next[who])
		}
		next[who]++
	}
}

func TestStrictFileOnCloseToOpenClient(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 64<<10)
	c := fc.client(Config{})
	ctx := context.Background()
	if err := c.MkdirAll("/mpi", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := c.Stat("/mpi")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetConsistency(ctx, c.cred, dir.Ino, Strict); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Getattr(ctx, dir.Ino); ConsistencyOf(&a) != Strict {
		t.Errorf("directory mode %q after setting it strict", ConsistencyOf(&a))
	}
	f := mustCreate(t, c, "/mpi/shared")
	defer f.Close()
	if !f.Strict() || f.ra != nil {
		t.Fatalf("file created in a strict directory: strict %v, readahead %v", f.Strict(), f.ra != nil)
	}
	data := randomBytes(40, 70<<10)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	// No flush: the data is on the OSSes and the size at the MDS.
	expectObjects(t, fc, f, data)
	if a := fc.attr(f.Ino()); a.Size != uint64(len(data)) || ConsistencyOf(&a) != Strict {
		t.Errorf("MDS size %d mode %q after a strict write, want %d strict", a.Size, ConsistencyOf(&a), len(data))
	}
	g := mustCreate(t, c, "/plain")
	defer g.Close()
	if g.Strict() {
		t.Error("a file outside the strict directory is strict")
	}
}

func TestCreateSendsUmask(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<10)
	c := fc.client(Config{})
	ctx := context.Background()
	f, err := c.Create(ctx, c.cred, c.Root(), "f", 0o666, 0o027, os.O_RDWR|os.O_CREATE, layout.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := c.Mkdir(ctx, c.cred, c.Root(), "d", 0o777, 0o022, -1); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	umasks := append([]uint32(nil), fc.umasks...)
	fc.mu.Unlock()
	if len(umasks) != 2 || umasks[0] != 0o027 || umasks[1] != 0o022 {
		t.Errorf("umasks sent %o, want [27 22]", umasks)
	}
	if a := fc.attr(f.Ino()); a.Mode&0o777 != 0o640 {
		t.Errorf("mode %o, want 640", a.Mode&0o777)
	}
}

func TestLocksOrderDataBetweenClients(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 64<<10)
	a, b := fc.client(Config{}), fc.client(Config{})
	ctx := context.Background()
	old := bytes.Repeat([]byte{'a'}, 64<<10)
	f := mustCreate(t, a, "/shared")
	if _, err := f.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The reader reads ahead of the old data and learns the old size.
	r, err := b.OpenFile("/shared", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4<<10)
	for off := int64(0); off < 16<<10; off += int64(len(buf)) {
		if _, err := r.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// The writer writes under a lock, buffered, and unlocks.
	w, err := a.OpenFile("/shared", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := a.SetLk(ctx, w.Ino(), 1, wlock(0, -1), false); err != nil {
		t.Fatal(err)
	}
	fresh := bytes.Repeat([]byte{'b'}, 74<<10)
	if _, err := w.WriteAt(fresh, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLk(ctx, w.Ino(), 1, Lock{Type: proto.LockUnlock, End: -1}, false); err != nil {
		t.Fatal(err)
	}
	expectObjects(t, fc, w, fresh)
	if got := fc.attr(w.Ino()).Size; got != uint64(len(fresh)) {
		t.Errorf("MDS size %d after the unlock, want %d", got, len(fresh))
	}
	// The reader takes the lock and sees all of it.
	if err := b.SetLk(ctx, r.Ino(), 1, Lock{Type: proto.LockRead, End: -1}, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(fresh)+1)
	n, err := r.ReadAt(got, 0)
	if n != len(fresh) || !bytes.Equal(got[:n], fresh) {
		t.Errorf("read under the lock: %d bytes (%v), %d of them new, want %d new", n, err, bytes.Count(got[:n], []byte{'b'}), len(fresh))
	}
}
