package mds

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// TestDestroyBatches: a pass destroys a page of unlinked files with one
// call per OSS; an OSS without the batched call gets one per file; a
// failing OSS keeps every entry queued for the next pass.
func TestDestroyBatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		oldOSS bool
		fail   error
	}{{"batched", false, nil}, {"old OSS", true, nil}, {"OSS down", false, syscall.EIO}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, openEmbedded)
			var want int
			for i := range 30 {
				a := e.create(root, RootIno, fmt.Sprintf("f%d", i), 0o644)
				want += objectCount(e.inodeOf(a.Ino).Layout)
				e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: fmt.Sprintf("f%d", i)}))
			}
			e.io.mu.Lock()
			e.io.oldOSS, e.io.fail = tc.oldOSS, tc.fail
			e.io.mu.Unlock()
			done, left, err := e.s.drainDestroyQueue(e.ctx)
			e.must(err)
			if tc.fail != nil {
				if done != 0 || left != 30 || e.queueLen() != 30 {
					t.Fatalf("with the OSS failing: %d done, %d left, %d queued; want 0, 30, 30", done, left, e.queueLen())
				}
				return
			}
			if done != 30 || e.queueLen() != 0 {
				t.Fatalf("%d done, %d queued after a pass; want 30 and 0", done, e.queueLen())
			}
			e.io.mu.Lock()
			got, calls := len(e.io.destroyed), e.io.manyCalls
			e.io.mu.Unlock()
			if got != want {
				t.Fatalf("%d objects destroyed, want %d", got, want)
			}
			if !tc.oldOSS && (calls == 0 || calls > 2) {
				t.Fatalf("%d batched calls for 30 files on 2 OSSes, want 1 or 2", calls)
			}
		})
	}
}

// TestDestroyHinted: the worker's pass after a kick destroys what this
// service queued, reading the queue by key; entries it did not queue (an
// earlier process, another MDS) wait for a full pass, which finds them.
func TestDestroyHinted(t *testing.T) {
	e := newEnv(t, openEmbedded)
	for i := range 10 {
		e.create(root, RootIno, fmt.Sprintf("f%d", i), 0o644)
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: fmt.Sprintf("f%d", i)}))
	}
	done, left, err := e.s.drainHinted(e.ctx)
	e.must(err)
	if done != 10 || left != 0 || e.queueLen() != 0 {
		t.Fatalf("hinted pass: %d done, %d left, %d queued; want 10, 0, 0", done, left, e.queueLen())
	}
	// Queued by "another process": this service has no hints for them.
	for i := range 5 {
		e.create(root, RootIno, fmt.Sprintf("g%d", i), 0o644)
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: fmt.Sprintf("g%d", i)}))
	}
	e.s.hints.take()
	if done, _, err := e.s.drainHinted(e.ctx); err != nil || done != 0 || e.queueLen() != 5 {
		t.Fatalf("hinted pass without hints: %d done, %v, %d queued; want 0 and 5 left for the full pass", done, err, e.queueLen())
	}
	if done, _, err := e.s.drainDestroyQueue(e.ctx); err != nil || done != 5 || e.queueLen() != 0 {
		t.Fatalf("full pass: %d done, %v, %d queued", done, err, e.queueLen())
	}
	// Too many to remember: the hinted pass scans.
	e.create(root, RootIno, "h", 0o644)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "h"}))
	e.s.hints.mu.Lock()
	e.s.hints.keys, e.s.hints.lost = nil, true
	e.s.hints.mu.Unlock()
	if done, _, err := e.s.drainHinted(e.ctx); err != nil || done != 1 {
		t.Fatalf("hinted pass after lost hints: %d done, %v; want the full pass's 1", done, err)
	}
}
