package embedded

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSyncGroupShares: callers that ask while an fsync runs share the next
// one; none returns before an fsync that started after it asked.
func TestSyncGroupShares(t *testing.T) {
	var g syncGroup
	g.cond = sync.NewCond(&g.mu)
	var syncs atomic.Int32
	first := make(chan struct{})
	release := make(chan struct{})
	g.sync = func() error {
		if syncs.Add(1) == 1 {
			close(first)
			<-release
		}
		return nil
	}
	go func() { _ = g.do() }()
	<-first
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.do(); err != nil {
				t.Error(err)
			}
		}()
	}
	// Let every caller take its ticket while the first fsync runs.
	for {
		g.mu.Lock()
		all := g.asked == n+1
		g.mu.Unlock()
		if all {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if got := syncs.Load(); got != 2 {
		t.Fatalf("%d fsyncs for 1+%d concurrent callers, want 2", got, n)
	}
}

// TestSyncGroupError: the caller whose fsync failed gets the error; one
// waiting for it is covered by a later fsync, not told it succeeded.
func TestSyncGroupError(t *testing.T) {
	var g syncGroup
	g.cond = sync.NewCond(&g.mu)
	boom := errors.New("boom")
	calls := 0
	g.sync = func() error {
		calls++
		if calls == 1 {
			return boom
		}
		return nil
	}
	if err := g.do(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the fsync's error", err)
	}
	if err := g.do(); err != nil || calls != 2 {
		t.Fatalf("second sync: %v after %d fsyncs", err, calls)
	}
}
