package client

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// LayoutIO reads and writes the objects of one layout with a capability
// the MDS issued for it, without an open file: HSM agents read the file an
// archive copies and fill the new layout a restore swaps in. An OSS that
// refuses the capability (ESTALE: the layout changed, EKEYEXPIRED) fails
// the call; the agent's action then fails and is retried.
type LayoutIO struct {
	c   *Client
	lay layout.Layout
	cap proto.Capability
}

// LayoutIO returns the I/O of lay under capability cp.
func (c *Client) LayoutIO(lay layout.Layout, cp proto.Capability) *LayoutIO {
	return &LayoutIO{c: c, lay: lay, cap: cp}
}

// ReadAt reads len(p) bytes at file offset off; holes read as zeros.
func (l *LayoutIO) ReadAt(ctx context.Context, p []byte, off int64) error {
	return l.transfer(ctx, false, p, off)
}

// WriteAt writes p at file offset off.
func (l *LayoutIO) WriteAt(ctx context.Context, p []byte, off int64) error {
	return l.transfer(ctx, true, p, off)
}

// transfer moves p to or from the objects at off, one request per object
// extent (or maxObjectIO of it), in parallel.
func (l *LayoutIO) transfer(ctx context.Context, write bool, p []byte, off int64) error {
	if l.lay.Released {
		return fmt.Errorf("client: I/O on a released layout: %w", syscall.EIO)
	}
	exts := l.lay.Map(off, int64(len(p)), nil)
	var covered int64
	for _, e := range exts {
		covered += e.Length
	}
	if covered < int64(len(p)) {
		return fmt.Errorf("client: %d bytes at %d beyond the layout: %w", len(p), off, syscall.EFBIG)
	}
	type piece struct {
		ref    proto.ObjRef
		objOff int64
		buf    []byte
	}
	var pieces []piece
	for _, e := range exts {
		buf := p[e.FileOffset-off : e.FileOffset-off+e.Length]
		if e.Stripe < 0 {
			if write {
				return fmt.Errorf("client: write at %d: component %d has no objects: %w", e.FileOffset, e.Comp, syscall.EIO)
			}
			clear(buf)
			continue
		}
		ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
		for done := 0; done < len(buf); done += maxObjectIO {
			pieces = append(pieces, piece{ref: ref, objOff: e.ObjOffset + int64(done), buf: buf[done:min(len(buf), done+maxObjectIO)]})
		}
	}
	return parallel(len(pieces), func(i int) error {
		pc := pieces[i]
		return l.call(ctx, pc.ref, func(addr string) error {
			if write {
				req := proto.ObjWriteReq{Cap: l.cap, Obj: pc.ref, Offset: pc.objOff}
				_, err := l.c.rpc.CallBulk(ctx, addr, proto.OpObjWrite, &req, pc.buf, &proto.ObjWriteResp{}, nil)
				return err
			}
			req := proto.ObjReadReq{Cap: l.cap, Obj: pc.ref, Offset: pc.objOff, Length: int64(len(pc.buf))}
			n, err := l.c.rpc.CallBulk(ctx, addr, proto.OpObjRead, &req, nil, &proto.ObjReadResp{}, pc.buf)
			if err == nil {
				clear(pc.buf[n:])
			}
			return err
		})
	})
}

// Sync makes every object of the layout durable.
func (l *LayoutIO) Sync(ctx context.Context) error {
	objs := layoutObjects(&l.lay)
	return parallel(len(objs), func(i int) error {
		ref := objs[i]
		return l.call(ctx, ref, func(addr string) error {
			return l.c.rpc.Call(ctx, addr, proto.OpObjSync, &proto.ObjSyncReq{Cap: l.cap, Obj: ref}, &proto.ObjSyncResp{})
		})
	})
}

// call runs one object request against the OSS of ref's OST, waiting
// through an outage of that OSS as File.objCall does.
func (l *LayoutIO) call(ctx context.Context, ref proto.ObjRef, fn func(addr string) error) error {
	target := ostTarget(ref.OST)
	for waited := 0; ; waited++ {
		addr, err := l.c.ossFor(ctx, ref.OST)
		if err != nil {
			return err
		}
		err = fn(addr)
		switch {
		case err == nil:
			if waited > 0 {
				l.c.endOutage(target)
			}
			return nil
		case transient(err) && ctx.Err() == nil:
			if werr := l.c.waitOutage(ctx, target, err, waited); werr != nil {
				return werr
			}
			if waited%4 == 3 {
				if _, terr := l.c.Targets(ctx); terr != nil {
					l.c.log.Debug("client: refresh the OST table", "err", terr)
				}
			}
		default:
			return fmt.Errorf("client: object %s on OST %d: %w", ref.ID, ref.OST, err)
		}
	}
}
