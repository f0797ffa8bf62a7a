package oss

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Evicted object files with unsynced data are flushed and closed by
// flushWorkers goroutines; at most flushQueue wait for them before eviction
// falls back to flushing on the request that caused it.
const (
	flushWorkers = 4
	flushQueue   = 256
)

// flusher closes object files that left the handle cache. A file with
// unsynced data is flushed (fdatasync) before it is closed: once its
// descriptor is gone, a write-back error might never reach a later sync on
// a new descriptor, so the error is kept here and reported by the object's
// next Sync. The flush runs in the background, off the request path; a
// Sync of the object waits for it.
type flusher struct {
	log   *slog.Logger
	queue chan *handle
	wg    sync.WaitGroup

	mu       sync.Mutex
	inflight map[objKey]*inflightFlush
	lost     map[objKey]error
}

// inflightFlush counts the flushes queued or running for one object.
type inflightFlush struct {
	n    int
	done chan struct{} // closed when n drops to zero
}

func newFlusher(log *slog.Logger) *flusher {
	f := &flusher{
		log:      log,
		queue:    make(chan *handle, flushQueue),
		inflight: make(map[objKey]*inflightFlush),
		lost:     make(map[objKey]error),
	}
	f.wg.Add(flushWorkers)
	for range flushWorkers {
		go func() {
			defer f.wg.Done()
			for h := range f.queue {
				f.flushAndClose(h)
			}
		}()
	}
	return f
}

// close closes a handle that left the cache, in the background if it has
// data to flush.
func (f *flusher) close(h *handle) {
	if !h.dirty.Load() {
		f.record(h.key, h.f.Close())
		return
	}
	f.mu.Lock()
	fl := f.inflight[h.key]
	if fl == nil {
		fl = &inflightFlush{done: make(chan struct{})}
		f.inflight[h.key] = fl
	}
	fl.n++
	f.mu.Unlock()
	select {
	case f.queue <- h:
	default:
		// The disk is behind: flushing here slows eviction to its pace.
		f.flushAndClose(h)
	}
}

// flushAndClose flushes and closes a handle counted in inflight.
func (f *flusher) flushAndClose(h *handle) {
	err := h.f.Datasync()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	f.record(h.key, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.inflight[h.key]; fl != nil {
		if fl.n--; fl.n == 0 {
			close(fl.done)
			delete(f.inflight, h.key)
		}
	}
}

// record keeps the first write-back error of an object for its next sync.
func (f *flusher) record(key objKey, err error) {
	if err == nil {
		return
	}
	f.log.Error("oss: write-back of a closed object failed; its next sync reports it", "obj", key, "err", err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost[key] == nil {
		f.lost[key] = err
	}
}

// wait waits for the flushes of an object queued so far.
func (f *flusher) wait(key objKey) {
	f.mu.Lock()
	fl := f.inflight[key]
	f.mu.Unlock()
	if fl != nil {
		<-fl.done
	}
}

// takeErr waits for the object's pending flushes and returns, and forgets,
// the write-back error recorded for it.
func (f *flusher) takeErr(key objKey) error {
	f.wait(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.lost[key]
	delete(f.lost, key)
	return err
}

// stop waits for the queued flushes, ends the workers and returns the
// write-back errors no sync has reported. Nothing may be closed after it.
func (f *flusher) stop() error {
	close(f.queue)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for key, err := range f.lost {
		errs = append(errs, fmt.Errorf("oss: object %s: %w", key, err))
		delete(f.lost, key)
	}
	return errors.Join(errs...)
}
