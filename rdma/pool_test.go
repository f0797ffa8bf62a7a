package rdma_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rdma/fake"
)

// node returns a fake node whose domain a pool can register in.
func node(t *testing.T) *fake.Node {
	f := fake.New(fake.Options{})
	t.Cleanup(f.Close)
	return f.Node("n")
}

func TestPoolReusesRegistrations(t *testing.T) {
	n := node(t)
	p := rdma.NewPool(n.Domain(), rdma.AccessRemoteWrite, 0)
	b, err := p.Get(5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Bytes()) != 5000 || b.Cap() != 8192 || b.Remote().Len != 5000 {
		t.Fatalf("buffer of %d bytes, cap %d, remote %+v", len(b.Bytes()), b.Cap(), b.Remote())
	}
	key := b.Remote().Key
	p.Put(b)
	p.Put(b) // a second Put is ignored
	b2, err := p.Get(8000)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Remote().Key != key {
		t.Fatal("an idle buffer of the same class was registered anew")
	}
	if st := p.Stats(); st.Registered != 8192 || st.InUse != 1 || n.Registered() != 8192 {
		t.Fatalf("stats %+v, node %d", st, n.Registered())
	}
	p.Put(b2)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n.Registered() != 0 {
		t.Fatalf("%d bytes registered after Close", n.Registered())
	}
	if _, err := p.Get(10); !errors.Is(err, rdma.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func TestPoolLimit(t *testing.T) {
	n := node(t)
	p := rdma.NewPool(n.Domain(), 0, 16<<10)
	defer p.Close()
	a, err := p.Get(8 << 10)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get(8 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(4 << 10); !errors.Is(err, rdma.ErrPoolExhausted) {
		t.Fatalf("Get past the limit: %v", err)
	}
	p.Put(a)
	// The idle 8 KiB buffer is deregistered to make room for a 4 KiB one.
	c, err := p.Get(4 << 10)
	if err != nil {
		t.Fatalf("Get after Put: %v", err)
	}
	if st := p.Stats(); st.Registered != 12<<10 || st.InUse != 2 {
		t.Fatalf("stats %+v", st)
	}
	p.Put(b)
	p.Put(c)
}

func TestPoolCloseWithBuffersLent(t *testing.T) {
	n := node(t)
	p := rdma.NewPool(n.Domain(), 0, 0)
	b, err := p.Get(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n.Registered() != 1<<20 {
		t.Fatal("a lent buffer was deregistered by Close")
	}
	b.Bytes()[0] = 1 // still mapped
	p.Put(b)
	if n.Registered() != 0 {
		t.Fatal("a buffer returned after Close stayed registered")
	}
}

func TestPoolConcurrent(t *testing.T) {
	n := node(t)
	p := rdma.NewPool(n.Domain(), 0, 1<<20)
	defer p.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				b, err := p.Get(4096 << ((g + i) % 5))
				if errors.Is(err, rdma.ErrPoolExhausted) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				b.Bytes()[len(b.Bytes())-1] = byte(g)
				p.Put(b)
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.InUse != 0 || st.Registered > 1<<20 {
		t.Fatalf("stats after the storm: %+v", st)
	}
}
