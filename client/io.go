package client

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// maxParallel bounds the object requests one transfer keeps in flight.
const maxParallel = 32

// extentPool recycles the extent slices that layout.Map fills, so mapping a
// request allocates nothing in the steady state.
var extentPool = sync.Pool{New: func() any {
	s := make([]layout.Extent, 0, 16)
	return &s
}}

func getExtents() *[]layout.Extent  { return extentPool.Get().(*[]layout.Extent) }
func putExtents(s *[]layout.Extent) { *s = (*s)[:0]; extentPool.Put(s) }

// transfer reads p from, or writes p to, file offset off: one request per
// object extent, run in parallel. Reads fill holes with zeros. sync asks the
// OSS to make writes durable before replying. Objects written are recorded
// for the next fsync unless sync.
func (f *File) transfer(ctx context.Context, write bool, p []byte, off int64, sync bool) error {
	in := f.in
	in.mu.Lock()
	lay := in.lay
	in.mu.Unlock()
	exts := getExtents()
	defer putExtents(exts)
	*exts = lay.Map(off, int64(len(p)), (*exts)[:0])
	var covered int64
	for _, e := range *exts {
		covered += e.Length
	}
	if covered < int64(len(p)) {
		if write {
			return fmt.Errorf("client: write %#x at %d: beyond the layout: %w", f.ino, off+covered, syscall.EFBIG)
		}
		clear(p[covered:])
	}
	one := func(e *layout.Extent) error {
		buf := p[e.FileOffset-off : e.FileOffset-off+e.Length]
		if e.Stripe < 0 {
			if write {
				return fmt.Errorf("client: write %#x at %d: component %d has no objects: %w", f.ino, e.FileOffset, e.Comp, syscall.EIO)
			}
			clear(buf)
			return nil
		}
		ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
		if write {
			return f.writeObject(ctx, ref, e.ObjOffset, buf, sync)
		}
		return f.readObject(ctx, ref, e.ObjOffset, buf)
	}
	var err error
	if len(*exts) == 1 {
		err = one(&(*exts)[0])
	} else {
		err = parallel(len(*exts), func(i int) error { return one(&(*exts)[i]) })
	}
	if err != nil || !write || sync {
		return err
	}
	in.mu.Lock()
	for _, e := range *exts {
		in.written[e.Object] = proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
	}
	in.mu.Unlock()
	return nil
}

// parallel runs fn(0..n-1) with at most maxParallel running at once and
// returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, min(n, maxParallel))
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
