package client

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Online restripe (strata migrate): the client copies the data through the
// OSSes while the MDS keeps the file usable (see proto.MigrateReq). Pass 1
// copies everything with the file in use; the MDS then freezes the file,
// this client fences the old objects so no write reaches them any more,
// and pass 2 compares old and new and copies what differs, so a write that
// raced pass 1 is not lost; the commit swaps the layouts. Readers and
// writers that hold the old layout get ESTALE from the fenced objects,
// wait at the MDS for the commit, and continue with the new layout.

// Copy tuning.
const (
	migrateChunk    = 4 << 20 // bytes a copy step moves
	migrateParallel = 4       // copy steps in flight
)

// MigratePhases, for progress reports.
const (
	MigrateCopying  = "copying"  // pass 1, the file in use
	MigrateSyncing  = "syncing"  // pass 2, the file frozen
	MigrateSwapping = "swapping" // the commit
	MigrateDone     = "done"     // committed
	MigrateFailed   = "aborted"  // aborted (the file keeps its layout)
	migrateFencing  = "fencing"  // the old objects take the new generation
	migrateStarting = "starting" // the new layout is allocated
	migrateStopping = "aborting" // the abort is under way
)

// MigrateProgress is told what a migration is doing: its phase and how
// many of the bytes to copy in it are done.
type MigrateProgress func(phase string, done, total int64)

// migration is one migration in progress at this client.
type migration struct {
	c        *Client
	ino      uint64
	cap      proto.Capability
	old, new layout.Layout
	progress MigrateProgress
	written  sync.Map // index in the new layout's object list -> true
	newIndex map[layout.Object]int
}

// Migrate restripes file ino to spec (fields left unset keep the file's;
// an empty spec keeps its shape and moves its objects), keeping its inode
// number, while other clients read and write it. It returns the new
// layout. It fails with EBUSY if another migration or an HSM action holds
// the file or its layout changed meanwhile, and leaves the file as it was
// on any failure.
func (c *Client) Migrate(ctx context.Context, cred proto.Cred, ino uint64, spec layout.Spec, progress MigrateProgress) (layout.Layout, error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	progress(migrateStarting, 0, 0)
	var resp proto.MigrateResp
	if err := c.mdsCall(ctx, ino, proto.OpMigrate, &proto.MigrateReq{Cred: cred, Ino: ino, Phase: proto.MigrateStart, Spec: spec}, &resp); err != nil {
		return layout.Layout{}, fmt.Errorf("client: migrate %#x: %w", ino, err)
	}
	m := &migration{c: c, ino: ino, cap: resp.Cap, old: resp.Old, new: resp.New, progress: progress, newIndex: map[layout.Object]int{}}
	for i, o := range layoutObjects(&m.new) {
		m.newIndex[layout.Object{OST: o.OST, ID: o.ID}] = i
	}
	err := m.run(ctx, cred, int64(resp.Size))
	if err == nil {
		progress(MigrateDone, 0, 0)
		return m.new, nil
	}
	progress(migrateStopping, 0, 0)
	// Abort even if the caller gave up: the freeze must not wait for its
	// deadline.
	actx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if aerr := c.mdsCall(actx, ino, proto.OpMigrate, &proto.MigrateReq{Cred: cred, Ino: ino, Phase: proto.MigrateAbort, Gen: m.new.Gen}, nil); aerr != nil {
		c.log.Warn("client: abort migration", "ino", fmt.Sprintf("%#x", ino), "err", aerr)
	}
	progress(MigrateFailed, 0, 0)
	return layout.Layout{}, fmt.Errorf("client: migrate %#x: %w", ino, err)
}

// run copies, freezes, fences, copies again and commits.
func (m *migration) run(ctx context.Context, cred proto.Cred, mdsSize int64) error {
	size, err := m.dataEnd(ctx, mdsSize)
	if err != nil {
		return err
	}
	if err := m.copyAll(ctx, MigrateCopying, size, false); err != nil {
		return err
	}
	var fr proto.MigrateResp
	if err := m.c.mdsCall(ctx, m.ino, proto.OpMigrate, &proto.MigrateReq{Cred: cred, Ino: m.ino, Phase: proto.MigrateFreeze, Gen: m.new.Gen}, &fr); err != nil {
		return err
	}
	m.cap = fr.Cap
	// Keep the freeze alive while the last pass runs.
	rctx, stopRenew := context.WithCancel(ctx)
	renewErr := make(chan error, 1)
	go func() {
		renewErr <- m.renew(rctx, cred, time.Duration(fr.FreezeMillis)*time.Millisecond/3)
	}()
	err = m.finish(ctx, cred, int64(fr.Size))
	stopRenew()
	if rerr := <-renewErr; err == nil && rerr != nil {
		err = rerr
	}
	return err
}

// finish fences the old objects, copies what changed and commits.
func (m *migration) finish(ctx context.Context, cred proto.Cred, mdsSize int64) error {
	m.progress(migrateFencing, 0, 0)
	olds := layoutObjects(&m.old)
	err := parallel(len(olds), func(i int) error {
		return m.ossCall(ctx, olds[i].OST, proto.OpObjFence, &proto.ObjFenceReq{Cap: m.cap, Obj: olds[i]}, nil)
	})
	if err != nil {
		return fmt.Errorf("fence the old objects: %w", err)
	}
	size, err := m.dataEnd(ctx, mdsSize)
	if err != nil {
		return err
	}
	if err := m.trimNew(ctx, size); err != nil {
		return err
	}
	if err := m.copyAll(ctx, MigrateSyncing, size, true); err != nil {
		return err
	}
	m.progress(MigrateSwapping, 0, 0)
	var written []byte
	m.written.Range(func(k, _ any) bool {
		i := k.(int)
		for len(written) <= i/8 {
			written = append(written, 0)
		}
		written[i/8] |= 1 << (i % 8)
		return true
	})
	return m.c.mdsCall(ctx, m.ino, proto.OpMigrate, &proto.MigrateReq{Cred: cred, Ino: m.ino, Phase: proto.MigrateCommit,
		Gen: m.new.Gen, Written: written}, &proto.MigrateResp{})
}

// renew extends the freeze every period until ctx ends.
func (m *migration) renew(ctx context.Context, cred proto.Cred, period time.Duration) error {
	if period <= 0 {
		period = 10 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := m.c.mdsCall(ctx, m.ino, proto.OpMigrate, &proto.MigrateReq{Cred: cred, Ino: m.ino, Phase: proto.MigrateRenew, Gen: m.new.Gen}, nil)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("renew the freeze: %w", err)
		}
	}
}

// dataEnd is how far the old objects hold data: the larger of the size at
// the MDS and the end the objects' sizes imply (writes not reported yet).
func (m *migration) dataEnd(ctx context.Context, mdsSize int64) (int64, error) {
	olds := layoutObjects(&m.old)
	sizes := make(map[layout.Object]int64, len(olds))
	var mu sync.Mutex
	err := parallel(len(olds), func(i int) error {
		var r proto.ObjGetattrResp
		if err := m.ossCall(ctx, olds[i].OST, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: m.cap, Obj: olds[i]}, &r); err != nil {
			return err
		}
		mu.Lock()
		sizes[layout.Object{OST: olds[i].OST, ID: olds[i].ID}] = r.Size
		mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size the old objects: %w", err)
	}
	end := m.old.FileSize(func(comp, stripe int) int64 {
		return sizes[m.old.Components[comp].Objects[stripe]]
	})
	return max(end, mdsSize), nil
}

// trimNew cuts the new objects that hold more than a file of size needs
// (pass 1 copied data a truncate has cut since).
func (m *migration) trimNew(ctx context.Context, size int64) error {
	points := m.new.TruncatePoints(size, nil)
	return parallel(len(points), func(i int) error {
		p := points[i]
		ref := proto.ObjRef{OST: p.Object.OST, ID: p.Object.ID, Stripe: uint32(p.Stripe)}
		var r proto.ObjGetattrResp
		if err := m.ossCall(ctx, ref.OST, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: m.cap, Obj: ref}, &r); err != nil {
			return err
		}
		if !r.Exists || r.Size <= p.Size {
			return nil
		}
		return m.ossCall(ctx, ref.OST, proto.OpObjPunch, &proto.ObjPunchReq{Cap: m.cap, Obj: ref, Size: p.Size}, nil)
	})
}

// copyAll copies [0, size) from the old layout to the new, chunk by chunk;
// with compare (pass 2) it writes only the pieces that differ.
func (m *migration) copyAll(ctx context.Context, phase string, size int64, compare bool) error {
	var done atomic.Int64
	m.progress(phase, 0, size)
	chunks := int((size + migrateChunk - 1) / migrateChunk)
	sem := make(chan struct{}, migrateParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < chunks; i++ {
		off := int64(i) * migrateChunk
		n := min(migrateChunk, size-off)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := m.copyChunk(ctx, off, n, compare); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			m.progress(phase, done.Add(n), size)
		}()
	}
	wg.Wait()
	return first
}

// copyChunk copies [off, off+n).
func (m *migration) copyChunk(ctx context.Context, off, n int64, compare bool) error {
	src := getBuf(int(n))[:n]
	defer putBuf(src)
	if err := m.readLayout(ctx, &m.old, off, src); err != nil {
		return fmt.Errorf("read the old objects at %d: %w", off, err)
	}
	var cur []byte
	if compare {
		cur = getBuf(int(n))[:n]
		defer putBuf(cur)
		if err := m.readLayout(ctx, &m.new, off, cur); err != nil {
			return fmt.Errorf("read the new objects at %d: %w", off, err)
		}
	}
	exts := m.new.Map(off, n, nil)
	return parallel(len(exts), func(i int) error {
		e := exts[i]
		if e.Stripe < 0 {
			return fmt.Errorf("the new layout has no objects at %d", e.FileOffset)
		}
		piece := src[e.FileOffset-off : e.FileOffset-off+e.Length]
		switch {
		case compare && bytes.Equal(piece, cur[e.FileOffset-off:e.FileOffset-off+e.Length]):
			return nil
		case !compare && allZero(piece):
			return nil // the new object reads as zeros there already
		}
		ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
		if _, err := m.ossBulk(ctx, ref.OST, proto.OpObjWrite, &proto.ObjWriteReq{Cap: m.cap, Obj: ref, Offset: e.ObjOffset},
			piece, &proto.ObjWriteResp{}, nil); err != nil {
			return fmt.Errorf("write the new object %s: %w", ref.ID, err)
		}
		m.written.Store(m.newIndex[e.Object], true)
		return nil
	})
}

// readLayout reads p at off through lay; what no object holds reads as
// zeros.
func (m *migration) readLayout(ctx context.Context, lay *layout.Layout, off int64, p []byte) error {
	exts := lay.Map(off, int64(len(p)), nil)
	var covered int64
	for _, e := range exts {
		covered += e.Length
	}
	clear(p[covered:])
	return parallel(len(exts), func(i int) error {
		e := exts[i]
		buf := p[e.FileOffset-off : e.FileOffset-off+e.Length]
		if e.Stripe < 0 {
			clear(buf)
			return nil
		}
		ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
		var resp proto.ObjReadResp
		n, err := m.ossBulk(ctx, ref.OST, proto.OpObjRead, &proto.ObjReadReq{Cap: m.cap, Obj: ref, Offset: e.ObjOffset, Length: e.Length},
			nil, &resp, buf)
		if err != nil {
			return err
		}
		clear(buf[n:])
		return nil
	})
}

// ossCall sends one object request with the migration's capability.
func (m *migration) ossCall(ctx context.Context, ost uint32, op uint16, req, resp any) error {
	addr, err := m.c.ossFor(ctx, ost)
	if err != nil {
		return err
	}
	if err := m.c.rpc.Call(ctx, addr, op, req, resp); err != nil {
		return fmt.Errorf("OST %d: %w", ost, err)
	}
	return nil
}

// ossBulk is ossCall for a request with a bulk payload either way: it
// returns the bytes read into into.
func (m *migration) ossBulk(ctx context.Context, ost uint32, op uint16, req any, bulk []byte, resp any, into []byte) (int, error) {
	addr, err := m.c.ossFor(ctx, ost)
	if err != nil {
		return 0, err
	}
	n, err := m.c.rpc.CallBulk(ctx, addr, op, req, bulk, resp, into)
	if err != nil {
		return n, fmt.Errorf("OST %d: %w", ost, err)
	}
	return n, nil
}

// allZero reports whether p holds only zero bytes.
func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
