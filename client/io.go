package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// maxParallel bounds the object requests one transfer keeps in flight.
const maxParallel = 32

// maxObjectIO is the most one object request moves: an extent larger than
// that (a large read or write of a file with large stripes) goes as several
// requests, since an OSS refuses bulk payloads over oss.MaxRead.
const maxObjectIO = 4 << 20

// layoutRetries bounds how often a transfer maps itself again after the
// file's layout changed under it.
const layoutRetries = 3

// extentPool recycles the extent slices that layout.Map fills, so mapping a
// request allocates nothing in the steady state.
var extentPool = sync.Pool{New: func() any {
	s := make([]layout.Extent, 0, 16)
	return &s
}}

func getExtents() *[]layout.Extent  { return extentPool.Get().(*[]layout.Extent) }
func putExtents(s *[]layout.Extent) { *s = (*s)[:0]; extentPool.Put(s) }

// transfer reads p from, or writes p to, file offset off: one request per
// object extent (or per maxObjectIO of it), run in parallel. Reads fill
// holes with zeros. sync asks the OSS to make writes durable before
// replying. Objects written are recorded for the next fsync unless sync. A
// layout that changes under the transfer (ESTALE) is fetched and the
// transfer mapped again.
func (f *File) transfer(ctx context.Context, write bool, p []byte, off int64, sync bool) error {
	for attempt := 0; ; attempt++ {
		err := f.transferOnce(ctx, write, p, off, sync)
		if errors.Is(err, errReleased) && attempt < layoutRetries {
			// Released under this client (it held the old layout): the
			// data comes back first.
			if rerr := f.Restore(ctx); rerr != nil {
				return rerr
			}
			continue
		}
		if !errors.Is(err, errLayoutChanged) || attempt >= layoutRetries {
			return err
		}
	}
}

// transferOnce is one attempt of transfer with the layout as it is now.
func (f *File) transferOnce(ctx context.Context, write bool, p []byte, off int64, sync bool) error {
	in := f.in
	in.mu.Lock()
	lay := in.lay
	in.mu.Unlock()
	if lay.Released {
		return errReleased
	}
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
		for done := 0; done < len(buf); {
			piece := buf[done:min(len(buf), done+maxObjectIO)]
			objOff := e.ObjOffset + int64(done)
			if write {
				verifier, err := f.writeObject(ctx, ref, objOff, piece, sync)
				if err != nil {
					return err
				}
				in.mu.Lock()
				in.noteStoredLocked(ref.ID)
				if !sync && verifier != 0 {
					in.noteWritten(ref, verifier)
				}
				in.mu.Unlock()
			} else if err := f.readObject(ctx, ref, objOff, piece); err != nil {
				return err
			}
			done += len(piece)
		}
		return nil
	}
	if len(*exts) == 1 {
		return one(&(*exts)[0])
	}
	return parallel(len(*exts), func(i int) error { return one(&(*exts)[i]) })
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
