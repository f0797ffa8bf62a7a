package mds

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// failingEngine fails the commits it is armed for: before committing
// (nothing written) or after (written, as a commit whose result was lost on
// the way back: TiKV's "undetermined").
type failingEngine struct {
	kv.Engine
	before, after atomic.Int32 // commits left to fail
}

var errInjected = errors.New("injected commit failure")

func (f *failingEngine) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	tx, err := f.Engine.Begin(ctx, update)
	if err != nil {
		return nil, err
	}
	return &failingTx{Tx: tx, f: f}, nil
}

func (f *failingEngine) Now(ctx context.Context) (uint64, error) { return f.Engine.(kv.Clock).Now(ctx) }
func (f *failingEngine) Add(ts uint64, d time.Duration) uint64 {
	return f.Engine.(kv.Clock).Add(ts, d)
}

type failingTx struct {
	kv.Tx
	f *failingEngine
}

func (t *failingTx) CommitBefore(ts uint64) { t.Tx.(kv.Bounded).CommitBefore(ts) }

func (t *failingTx) Commit(ctx context.Context) error {
	if t.f.before.Add(-1) >= 0 {
		t.Tx.Rollback()
		return errInjected
	}
	if err := t.Tx.Commit(ctx); err != nil {
		return err
	}
	if t.f.after.Add(-1) >= 0 {
		return errInjected
	}
	return nil
}

// TestCloseResentAfterFailedCommit: a close whose commit failed leaves the
// handle open, so the client's resend of it (same tag) releases it; and a
// close whose commit went through although it reported a failure is
// answered from its recorded reply on the resend, not merged twice. Before,
// the release took the handle out of the open table first and left it out:
// the resend got EBADF (a failover test met it when the new owner's first
// commit was fenced by a lease it had renewed meanwhile).
func TestCloseResentAfterFailedCommit(t *testing.T) {
	var fe *failingEngine
	e := newEnv(t, func(t testing.TB, dir string) *kv.DB {
		db := openEmbedded(t, dir)
		fe = &failingEngine{Engine: db.Engine}
		return &kv.DB{Engine: fe}
	})
	for i, after := range []bool{false, true} {
		r := e.createOpen(root, RootIno, []string{"before", "after"}[i], 0o644)
		version := e.inodeOf(r.Attr.Ino).DataVersion
		req := &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: 4096,
			Tag: proto.ReqTag{Session: e.session, Slot: 3, ID: uint64(10 + i)}}
		if after {
			fe.after.Store(1)
		} else {
			fe.before.Store(1)
		}
		if _, err := e.s.Close(e.ctx, req); !errors.Is(err, errInjected) {
			t.Fatalf("close with the commit failing (after=%v): %v, want the injected error", after, err)
		}
		resp, err := e.s.Close(e.ctx, req)
		if err != nil {
			t.Fatalf("resent close (after=%v): %v", after, err)
		}
		in := e.inodeOf(r.Attr.Ino)
		if resp.Attr.Size != 4096 || in.Size != 4096 {
			t.Fatalf("resent close (after=%v): reply size %d, stored %d, want 4096", after, resp.Attr.Size, in.Size)
		}
		if in.DataVersion != version+1 {
			t.Fatalf("after=%v: data version %d -> %d, want one merge", after, version, in.DataVersion)
		}
		if _, err := e.s.open.get(r.Handle, r.Attr.Ino); err == nil {
			t.Fatalf("after=%v: the handle is still open after the resent close", after)
		}
	}
}
