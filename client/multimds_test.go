package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// TestSeveralMDSes runs three MDTs on two MDS servers and a standby, all
// over one client-go in-process TiKV store, and one client that knows them
// all. It creates, stats, lists, renames across MDTs and unlinks; then the
// MDS of MDTs 0 and 1 stops abruptly (listener, sessions and lease gone at
// once) in the middle of a create and rename storm. The standby takes the
// MDTs over when the lease runs out, the client follows without a remount,
// and every create and rename it was told succeeded is there exactly once.
func TestSeveralMDSes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for an MDT lease to run out")
	}
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 2, TiKV: true,
		MDSes: [][]uint32{{0, 1}, {2}, nil}, MDTLease: time.Second})
	c := cl.Client(t, client.Config{RecoveryTimeout: time.Minute})
	ctx := context.Background()
	root := proto.Cred{}
	dirs := make([]uint64, 3)
	for m := range dirs {
		a, err := c.Mkdir(ctx, root, c.Root(), fmt.Sprintf("d%d", m), 0o755, 0, int32(m))
		if err != nil {
			t.Fatalf("mkdir on MDT %d: %v", m, err)
		}
		if got := a.Ino >> 48; got != uint64(m) {
			t.Fatalf("directory d%d on MDT %d, want %d", m, got, m)
		}
		dirs[m] = a.Ino
	}
	// Namespace work on every MDT, through whichever MDS serves it.
	for m, d := range dirs {
		f, err := c.Create(ctx, root, d, "f", 0o644, 0, syscall.O_RDWR|syscall.O_CREAT, layout.Spec{})
		if err != nil {
			t.Fatalf("create on MDT %d: %v", m, err)
		}
		if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := c.Lookup(ctx, root, d, "f")
		if err != nil || a.Size != 5 {
			t.Fatalf("stat on MDT %d: %+v %v", m, a, err)
		}
		ents, _, err := c.Readdir(ctx, root, d, "", 100, true)
		if err != nil || len(ents) != 1 {
			t.Fatalf("readdir on MDT %d: %v %v", m, ents, err)
		}
	}
	if err := c.Rename(ctx, root, dirs[0], "f", dirs[2], "from0", 0); err != nil {
		t.Fatalf("rename from MDT 0 to MDT 2: %v", err)
	}
	if err := c.Unlink(ctx, root, dirs[1], "f"); err != nil {
		t.Fatalf("unlink on MDT 1: %v", err)
	}

	// The storm: creates in d0 and d1 (MDTs 0 and 1) and renames from d1
	// to d0, while their MDS dies.
	type result struct {
		name string
		dir  uint64
		at   time.Time
	}
	var mu sync.Mutex
	var acked []result
	var failure error
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d := dirs[w%2]
				name := fmt.Sprintf("w%d-%d", w, i)
				f, err := c.Create(ctx, root, d, name, 0o644, 0, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, layout.Spec{})
				if err == nil {
					err = f.Close()
				}
				r := result{name, d, time.Now()}
				if err == nil && w%2 == 1 && i%3 == 0 {
					// Move it across MDTs, exactly once.
					err = c.Rename(ctx, root, d, name, dirs[0], name+".moved", 0)
					r = result{name + ".moved", dirs[0], time.Now()}
				}
				mu.Lock()
				if err != nil && failure == nil {
					failure = fmt.Errorf("%s: %w", name, err)
				}
				if err == nil {
					acked = append(acked, r)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitFor := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for count() < n {
			mu.Lock()
			err := failure
			mu.Unlock()
			if err != nil {
				t.Fatalf("the storm failed %s: %v", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the storm is stuck %s at %d", what, count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(40, "before the MDS stopped")
	cl.StopMDS(0)
	stopped := time.Now()
	before := count()
	waitFor(before+80, "after the MDS stopped")
	close(stop)
	wg.Wait()
	if failure != nil {
		t.Fatalf("the storm saw an error: %v", failure)
	}

	// Every acknowledged entry exists exactly once.
	want := map[uint64][]string{}
	for _, r := range acked {
		want[r.dir] = append(want[r.dir], r.name)
	}
	for d, names := range want {
		ents, err := readAllEntries(ctx, c, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if k := countOf(ents, n); k != 1 {
				t.Errorf("%s appears %d times in %#x, want once", n, k, d)
			}
		}
	}
	table, err := c.MDTs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range table {
		if m.Index < 2 && (m.Addr != cl.MDSAddrs[2] || m.Epoch < 2) {
			t.Errorf("MDT %d after the takeover: %+v, want served by the standby %s", m.Index, m, cl.MDSAddrs[2])
		}
	}
	// Operations in flight at the stop may finish at once; the storm is
	// back when the tenth after it is acknowledged.
	resumed := acked[min(before+10, len(acked)-1)].at
	t.Logf("%d creates and renames acknowledged, %d after the MDS of MDTs 0 and 1 stopped; storm back %v after the stop (MDT lease 1s)",
		len(acked), len(acked)-before, resumed.Sub(stopped).Round(time.Millisecond))
}

func readAllEntries(ctx context.Context, c *client.Client, dir uint64) ([]string, error) {
	var out []string
	after := ""
	for {
		ents, more, err := c.Readdir(ctx, proto.Cred{}, dir, after, 512, false)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			out = append(out, e.Name)
		}
		if !more || len(ents) == 0 {
			return out, nil
		}
		after = ents[len(ents)-1].Name
	}
}

func countOf(names []string, n string) int {
	k := 0
	for i := slices.Index(names, n); i >= 0 && i < len(names) && names[i] == n; i++ {
		k++
	}
	return k
}
