package mds

import (
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// onEachEngine runs fn as a subtest on each kv engine with a fresh env.
func onEachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, eng := range []struct {
		name string
		open opener
	}{{"embedded", openEmbedded}, {"tikv", openTiKVMock}} {
		t.Run(eng.name, func(t *testing.T) { fn(t, newEnv(t, eng.open)) })
	}
}

func (e *env) pool(op, name string, osts ...uint32) (*proto.PoolResp, error) {
	return e.s.Pool(e.ctx, &proto.PoolReq{Op: op, Name: name, OSTs: osts})
}

func TestPools(t *testing.T) {
	onEachEngine(t, func(t *testing.T, e *env) {
		_, err := e.pool(proto.PoolCreate, "fast")
		e.must(err)
		_, err = e.pool(proto.PoolCreate, "fast")
		wantErrno(t, err, syscall.EEXIST)
		_, err = e.pool(proto.PoolCreate, "bad.name")
		wantErrno(t, err, syscall.EINVAL)
		_, err = e.pool(proto.PoolAdd, "nope", 1)
		wantErrno(t, err, syscall.ENOENT)
		_, err = e.pool(proto.PoolAdd, "fast", 9)
		wantErrno(t, err, syscall.ENOENT)
		resp, err := e.pool(proto.PoolAdd, "fast", 3, 1)
		e.must(err)
		if len(resp.Pools) != 1 || !slices.Equal(resp.Pools[0].OSTs, []uint32{1, 3}) {
			t.Fatalf("pools after add: %+v", resp.Pools)
		}
		_, err = e.pool(proto.PoolAdd, "fast", 1)
		wantErrno(t, err, syscall.EEXIST)

		// Placement: every file of a directory defaulting to the pool
		// lands on its OSTs only, round robin over them.
		d := e.mkdir(root, RootIno, "d", 0o777)
		_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: d.Ino,
			Spec: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 1, StripeOffset: -1, Pool: "fast"}}}})
		e.must(err)
		used := map[uint32]int{}
		for i := range 8 {
			f := e.createOpen(root, d.Ino, string(rune('a'+i)), 0o644)
			c := f.Layout.Components[0]
			if c.Pool != "fast" {
				t.Fatalf("file layout pool %q", c.Pool)
			}
			used[c.Objects[0].OST]++
		}
		if len(used) != 2 || used[1] != 4 || used[3] != 4 {
			t.Fatalf("objects placed on %v, want 4 on each of OSTs 1 and 3", used)
		}
		// Two stripes fill the pool; three do not fit.
		_, err = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: d.Ino, Name: "wide", Mode: 0o644,
			Flags: syscall.O_RDWR | syscall.O_CREAT, Layout: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 3, StripeOffset: -1, Pool: "fast"}}}})
		wantErrno(t, err, syscall.ENOSPC)
		_, err = e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: d.Ino,
			Spec: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 1, StripeOffset: -1, Pool: "missing"}}}})
		wantErrno(t, err, syscall.EINVAL)

		tr, err := e.s.Targets(e.ctx, &proto.TargetsReq{})
		e.must(err)
		for _, o := range tr.OSTs {
			if in := slices.Contains(o.Pools, "fast"); in != (o.Index == 1 || o.Index == 3) {
				t.Fatalf("OST %d pools %v", o.Index, o.Pools)
			}
		}
		if len(tr.Pools) != 1 || tr.Pools[0].Name != "fast" {
			t.Fatalf("targets pools %+v", tr.Pools)
		}

		_, err = e.pool(proto.PoolDestroy, "fast")
		wantErrno(t, err, syscall.ENOTEMPTY)
		_, err = e.pool(proto.PoolRemove, "fast", 1, 3)
		e.must(err)
		_, err = e.pool(proto.PoolRemove, "fast", 1)
		wantErrno(t, err, syscall.ENOENT)
		_, err = e.pool(proto.PoolDestroy, "fast")
		e.must(err)
		resp, err = e.pool(proto.PoolList, "")
		e.must(err)
		if len(resp.Pools) != 0 {
			t.Fatalf("pools left: %+v", resp.Pools)
		}
		// The pool survives a restart in the store.
		_, err = e.pool(proto.PoolCreate, "slow")
		e.must(err)
		_, err = e.pool(proto.PoolAdd, "slow", 0)
		e.must(err)
		e.restart()
		resp, err = e.pool(proto.PoolList, "slow")
		e.must(err)
		if len(resp.Pools) != 1 || !slices.Equal(resp.Pools[0].OSTs, []uint32{0}) {
			t.Fatalf("after restart: %+v", resp.Pools)
		}
	})
}

// TestPoolDestroyRacesAdd is the probe of the pool rule: a destroy (which
// needs the pool empty) and an add (which needs the pool to exist) running
// at once never leave an OST in a pool that is gone.
func TestPoolDestroyRacesAdd(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	for round := range 40 {
		_, err := e.pool(proto.PoolCreate, "p")
		e.must(err)
		var wg sync.WaitGroup
		var addErr, destroyErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, addErr = e.pool(proto.PoolAdd, "p", uint32(round%4)) }()
		go func() { defer wg.Done(); _, destroyErr = e.pool(proto.PoolDestroy, "p") }()
		wg.Wait()
		resp, err := e.pool(proto.PoolList, "")
		e.must(err)
		exists := len(resp.Pools) == 1
		var members []uint32
		e.must(e.s.view(e.ctx, func(tx *mtx) error {
			members = members[:0]
			for idx := range uint32(4) {
				var o ostRecord
				if _, err := tx.getRecord(tx.k.ost(idx), &o); err != nil {
					return err
				}
				if slices.Contains(o.Pools, "p") {
					members = append(members, idx)
				}
			}
			return nil
		}))
		switch {
		case !exists && len(members) > 0:
			t.Fatalf("round %d: pool destroyed (add: %v) but OSTs %v still name it", round, addErr, members)
		case addErr == nil && destroyErr == nil:
			t.Fatalf("round %d: both the add and the destroy succeeded", round)
		}
		if exists {
			if len(members) > 0 {
				_, err = e.pool(proto.PoolRemove, "p", members...)
				e.must(err)
			}
			_, err = e.pool(proto.PoolDestroy, "p")
			e.must(err)
		}
	}
}
