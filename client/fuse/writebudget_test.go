package fuse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
)

// TestWriteBehindStaysInBudget: files written at once through a mount,
// together many times the client's write-behind budget, never make the
// client hold more dirty bytes than the budget: not in any sample taken
// while they are written (by the writers after each write(2) and by a
// sampler running throughout), nor at the client's recorded peak. Each
// file alone may buffer more than the budget (the per-file bound is
// larger), so only the client-wide bound keeps them within it. Every
// write is 1 MiB, less than the budget, so the budget's one exception (a
// single request larger than all of it) never applies.
func TestWriteBehindStaysInBudget(t *testing.T) {
	requireFUSE(t)
	const (
		budget = 4 << 20
		files  = 4
		size   = 32 << 20 // per file: 128 MiB in all, 32 budgets
		block  = 1 << 20
	)
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2, StripeCount: 4, StripeSize: 1 << 20})
	c := cl.Client(t, client.Config{WriteBehind: 16 << 20, WriteBehindTotal: budget})
	mnt := mount(t, c, Options{})

	var worst atomic.Int64
	sample := func() {
		for d := c.WriteBehindStats().Dirty; d > worst.Load(); {
			if worst.CompareAndSwap(worst.Load(), d) {
				break
			}
		}
	}
	done := make(chan struct{})
	sampled := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				sampled <- n
				return
			default:
			}
			sample()
			n++
			runtime.Gosched()
		}
	}()

	var wg sync.WaitGroup
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(mnt, fmt.Sprintf("f%d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			buf := random(uint64(i), block)
			for off := 0; off < size; off += block {
				if _, err := f.Write(buf); err != nil {
					t.Error(err)
					return
				}
				sample()
			}
			if err := f.Sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(done)
	samples := <-sampled
	if t.Failed() {
		return
	}

	st := c.WriteBehindStats()
	if st.Limit != budget {
		t.Fatalf("client budget %d, configured %d", st.Limit, budget)
	}
	if w := worst.Load(); w > budget {
		t.Errorf("a sample (of %d) saw %d dirty bytes, budget %d", samples, w, budget)
	}
	if st.Peak > budget {
		t.Errorf("dirty bytes peaked at %d, budget %d", st.Peak, budget)
	}
	if st.Peak < budget/2 {
		t.Errorf("dirty bytes peaked at %d: the writers never pressed on the %d-byte budget", st.Peak, budget)
	}
	if st.Dirty != 0 {
		t.Errorf("%d dirty bytes held after every file was synced", st.Dirty)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f3"))
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat(random(3, block), size/block); !bytes.Equal(got, want) {
		t.Fatal("f3 reads back wrong")
	}
}
