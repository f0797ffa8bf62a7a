package tikv

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stratafs/strata/mds/kv"
)

// TestTimestampSharing: begins that arrive while a fetch is out wait for
// the next one and share it; none gets a timestamp fetched before it
// asked.
func TestTimestampSharing(t *testing.T) {
	var clock atomic.Uint64
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	s := &tsShare{fetch: func(context.Context) (uint64, error) {
		started <- struct{}{}
		<-release
		return clock.Add(1), nil
	}}
	ctx := context.Background()
	first := make(chan uint64)
	go func() {
		ts, _ := s.get(ctx)
		first <- ts
	}()
	<-started // fetch 1 is out
	const n = 10
	var wg sync.WaitGroup
	got := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = s.get(ctx)
		}()
	}
	for s.joinedNext() < n {
		runtime.Gosched()
	}
	release <- struct{}{} // fetch 1 returns: ts 1, for the first only
	if ts := <-first; ts != 1 {
		t.Fatalf("first begin got ts %d, want 1", ts)
	}
	<-started
	release <- struct{}{} // fetch 2: ts 2, shared by the ten
	wg.Wait()
	for i, ts := range got {
		if ts != 2 {
			t.Fatalf("begin %d, which arrived during fetch 1, got ts %d, want 2 (a fetch after it asked)", i, ts)
		}
	}
	if f := s.fetches.Load(); f != 2 {
		t.Fatalf("%d fetches for %d begins, want 2", f, n+1)
	}
}

// TestBeginSeesAcknowledgedCommits: on the mock cluster, with readers
// beginning concurrently (sharing timestamps), a transaction begun after
// a commit was acknowledged always sees it.
func TestBeginSeesAcknowledgedCommits(t *testing.T) {
	e := openMock(t, t.TempDir())
	defer e.Close()
	db := &kv.DB{Engine: e}
	ctx := context.Background()
	key := []byte("counter")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var background atomic.Int64
	for range 4 { // background readers keep fetches in flight
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = db.View(ctx, func(tx kv.Txn) error { _, err := tx.Get(ctx, key); return err })
				background.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	begins := 0
	for i := uint64(1); i <= 200; i++ {
		if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(key, binary.BigEndian.AppendUint64(nil, i)) }); err != nil {
			t.Fatal(err)
		}
		err := db.View(ctx, func(tx kv.Txn) error {
			b, err := tx.Get(ctx, key)
			if err != nil {
				return err
			}
			if got := binary.BigEndian.Uint64(b); got != i {
				t.Fatalf("after commit %d acknowledged, a new transaction read %d", i, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		begins += 2
	}
	t.Logf("%d timestamp fetches for about %d begins", e.TimestampFetches(), int64(begins)+background.Load())
}
