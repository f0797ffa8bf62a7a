package mds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// The object side of fsck: objects on the OSTs that no file references
// (orphans), and objects a file's data needs that are gone (missing).

// ObjectLister is an ObjectIO through which fsck can see the OSTs: it lists
// an OST's objects in pages, or reports on named ones (proto.OSTListReq).
// An MDS whose ObjectIO is not one checks no objects.
type ObjectLister interface {
	// ListObjects sends an OST listing request to the OSS at addr.
	ListObjects(ctx context.Context, addr string, req *proto.OSTListReq) (*proto.OSTListResp, error)
}

var _ ObjectLister = (*RPCObjectIO)(nil)

// ListObjects sends OpOSTList.
func (r *RPCObjectIO) ListObjects(ctx context.Context, addr string, req *proto.OSTListReq) (*proto.OSTListResp, error) {
	var resp proto.OSTListResp
	if err := r.Client.Call(ctx, addr, proto.OpOSTList, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Object listing tuning.
const (
	fsckListPage = 512              // objects an OST lists per step
	fsckProbeMax = 1024             // objects one probe asks about
	fsckOSSWait  = 30 * time.Second // how long one listing call may take
)

// lister returns the run's object lister, or nil (with a note) if the
// service has none.
func (r *fsckRun) lister() ObjectLister {
	l, ok := r.s.io.(ObjectLister)
	if !ok {
		r.note("objects not checked: this MDS cannot list OSTs")
		return nil
	}
	return l
}

// listCap is the capability OSTs want for a listing.
func (r *fsckRun) listCap() proto.Capability {
	return r.s.capability(proto.FsckIno, proto.RightRead, 0, 0)
}

// probeObjects asks the OSTs about objs and returns what they said of each.
// Objects on OSTs that could not be asked are left out, with a note.
func (r *fsckRun) probeObjects(ctx context.Context, objs []proto.ObjRef) (map[layout.Object]proto.ObjInfo, error) {
	l := r.lister()
	if l == nil {
		return nil, nil
	}
	byOST := map[uint32][]layout.ObjectID{}
	for _, o := range objs {
		byOST[o.OST] = append(byOST[o.OST], o.ID)
	}
	out := map[layout.Object]proto.ObjInfo{}
	for _, ost := range slices.Sorted(maps.Keys(byOST)) {
		addr, err := r.s.targets.addr(ost)
		if err != nil {
			r.note("OST %d not checked: %v", ost, err)
			continue
		}
		ids := byOST[ost]
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), fsckProbeMax)]
			ids = ids[len(chunk):]
			cctx, cancel := context.WithTimeout(ctx, fsckOSSWait)
			resp, err := l.ListObjects(cctx, addr, &proto.OSTListReq{Cap: r.listCap(), OST: ost, IDs: chunk})
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.note("OST %d (%s) not checked: %v", ost, addr, err)
				break
			}
			for _, e := range resp.Objects {
				out[layout.Object{OST: ost, ID: e.ID}] = e
			}
		}
	}
	return out, nil
}

// orphanObjectChecker finds objects on the OSTs that no file's layout
// references and that are neither queued for destruction nor remembered
// destroyed by their OST. An object younger than the run's start is never
// taken for one; an older one is, only if a fresh read of its inode made
// after the listing still does not reference it and the OST still holds it
// afterwards (a file unlinked and destroyed meanwhile leaves a tombstone).
// Objects are only ever created for a layout already committed, and stay
// referenced by their inode or its destroy-queue entry until destroyed, so
// this order of looking cannot take a live object for an orphan.
type orphanObjectChecker struct {
	osts  []proto.OST // the OST table when the check began
	idx   int         // the OST being listed
	after layout.ObjectID
}

// orphanFix is what destroying an orphan needs.
type orphanFix struct {
	addr string
	ref  proto.ObjRef
}

func (c *orphanObjectChecker) name() string { return fsckOrphanObjects }

func (c *orphanObjectChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	l := r.lister()
	if l == nil {
		return nil, 0, true, nil
	}
	if c.osts == nil {
		c.osts = r.s.targets.list(r.s.now())
	}
	if c.idx >= len(c.osts) {
		return nil, 0, true, nil
	}
	ost := c.osts[c.idx]
	next := func() {
		c.idx++
		c.after = layout.ObjectID{}
	}
	if ost.Addr == "" {
		r.note("OST %d not checked for orphan objects: no OSS known", ost.Index)
		next()
		return nil, 0, c.idx == len(c.osts), nil
	}
	cctx, cancel := context.WithTimeout(ctx, fsckOSSWait)
	resp, err := l.ListObjects(cctx, ost.Addr, &proto.OSTListReq{Cap: r.listCap(), OST: ost.Index, After: c.after, Limit: fsckListPage})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, ctx.Err()
		}
		r.note("OST %d (%s) not checked for orphan objects: %v", ost.Index, ost.Addr, err)
		next()
		return nil, 0, c.idx == len(c.osts), nil
	}
	startNs := r.start.UnixNano()
	var old []proto.ObjRef
	for _, e := range resp.Objects {
		if e.Exists && !e.Destroyed && e.Mtime <= startNs {
			old = append(old, proto.ObjRef{OST: ost.Index, ID: e.ID, Stripe: e.Stripe})
		}
	}
	found, err := r.orphansOf(ctx, ost.Addr, old)
	if err != nil {
		return nil, 0, false, err
	}
	if resp.More && len(resp.Objects) > 0 {
		c.after = resp.Objects[len(resp.Objects)-1].ID
	} else {
		next()
	}
	return found, len(resp.Objects), c.idx == len(c.osts), nil
}

// orphansOf returns findings for the objects of listed (on one OST, at
// addr) that no inode references nor the destroy queue lists, in a fresh
// snapshot, and that the OST still holds after that look.
func (r *fsckRun) orphansOf(ctx context.Context, addr string, listed []proto.ObjRef) ([]*fsckFinding, error) {
	if len(listed) == 0 {
		return nil, nil
	}
	var unref []proto.ObjRef
	err := r.s.view(ctx, func(t *mtx) error {
		unref = nil
		for _, o := range listed {
			ok, err := referenced(ctx, t, o)
			if err != nil {
				return err
			}
			if !ok {
				unref = append(unref, o)
			}
		}
		return nil
	})
	if err != nil || len(unref) == 0 {
		return nil, err
	}
	state, err := r.probeObjects(ctx, unref)
	if err != nil {
		return nil, err
	}
	var found []*fsckFinding
	for _, o := range unref {
		st, asked := state[layout.Object{OST: o.OST, ID: o.ID}]
		if !asked || !st.Exists || st.Destroyed {
			continue
		}
		ref := o
		found = append(found, &fsckFinding{
			FsckFinding: proto.FsckFinding{Ino: o.ID.Ino, Object: &ref,
				Problem: fmt.Sprintf("belongs to no file's layout and is not queued for destruction (%d bytes)", st.Size)},
			fix: orphanFix{addr: addr, ref: o},
		})
	}
	return found, nil
}

// referenced reports whether the current layout of the object's inode
// holds it, or a destroy-queue entry of that inode lists it.
func referenced(ctx context.Context, t *mtx, o proto.ObjRef) (bool, error) {
	in, err := t.inode(o.ID.Ino)
	if err != nil && !isErrno(err, syscall.ENOENT) {
		return false, err
	}
	if err == nil && in.Layout != nil {
		for _, c := range in.Layout.Components {
			if slices.Contains(c.Objects, layout.Object{OST: o.OST, ID: o.ID}) {
				return true, nil
			}
		}
	}
	// A restore in progress fills objects its file's layout does not
	// hold yet.
	if act, err := t.hsmAction(o.ID.Ino); err != nil {
		return false, err
	} else if act != nil && act.Layout != nil && slices.ContainsFunc(layoutObjects(act.Layout), func(q proto.ObjRef) bool {
		return q.OST == o.OST && q.ID == o.ID
	}) {
		return true, nil
	}
	// So does a migration in progress.
	if rec, err := t.migrationOf(o.ID.Ino); err != nil {
		return false, err
	} else if rec != nil && slices.ContainsFunc(layoutObjects(&rec.Layout), func(q proto.ObjRef) bool {
		return q.OST == o.OST && q.ID == o.ID
	}) {
		return true, nil
	}
	queued := false
	var derr error
	start, end := t.k.destroysOf(o.ID.Ino)
	err = t.kv.Scan(ctx, start, end, 0, func(_, v []byte) bool {
		var rec destroyRecord
		if derr = decode(v, &rec); derr != nil {
			return false
		}
		queued = slices.ContainsFunc(rec.Objs, func(q proto.ObjRef) bool { return q.OST == o.OST && q.ID == o.ID })
		return !queued
	})
	return queued, firstErr(err, derr)
}

func (c *orphanObjectChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(orphanFix)
	id := fix.ref.ID
	err := r.s.update(ctx, func(t *mtx) error {
		ok, err := referenced(ctx, t, fix.ref)
		if err != nil || ok {
			return firstErr(err, errFsckVanished)
		}
		// An orphan whose sequence its inode has not handed out yet
		// would be reused by the inode's next layout, whose object the
		// OST would then refuse as destroyed: move the inode past it.
		in, err := t.inode(id.Ino)
		if err == nil && in.isRegular() && in.NextObjSeq <= id.Seq {
			in.NextObjSeq = id.Seq + 1
			t.put(in)
		}
		if err != nil && !isErrno(err, syscall.ENOENT) {
			return err
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	capab := r.s.capability(id.Ino, proto.RightWrite, 0, 0)
	if err := r.s.io.Destroy(ctx, fix.addr, capab, []proto.ObjRef{fix.ref}); err != nil {
		return "", fmt.Errorf("mds: fsck: destroy %s on OST %d: %w", id, fix.ref.OST, err)
	}
	return "destroyed the object", nil
}

// missingObjectChecker finds objects that a file's inode marks written
// (see written.go) but that their OST does not hold and does not remember
// destroying: data lost on the OST. Each is confirmed by a fresh read of
// the inode after the OST said so.
type missingObjectChecker struct {
	cursor []byte
}

// missingFix is what clearing a missing object's mark needs.
type missingFix struct {
	gen   uint32
	index int
	ref   proto.ObjRef
}

func (c *missingObjectChecker) name() string { return fsckMissingObjects }

func (c *missingObjectChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	if r.lister() == nil {
		return nil, 0, true, nil
	}
	k := r.s.keys
	start, end := k.inodeRange()
	if c.cursor == nil {
		c.cursor = start
	}
	type written struct {
		ino uint64
		fix missingFix
	}
	var cands []written
	var done bool
	cursor := c.cursor
	err := r.s.view(ctx, func(t *mtx) error {
		cands = nil
		cursor = slices.Clone(c.cursor)
		var err error
		_, done, err = fsckScan(ctx, t, &cursor, end, func(key, v []byte) error {
			ino, err := k.inodeIno(key)
			if err != nil {
				return err
			}
			in := &inode{}
			if err := decode(v, in); err != nil {
				return fmt.Errorf("inode %#x: %w", ino, err)
			}
			if !in.isRegular() || in.Layout == nil || len(in.Written) == 0 {
				return nil
			}
			for i, o := range layoutObjects(in.Layout) {
				if in.wroteObject(i) {
					cands = append(cands, written{ino, missingFix{gen: in.Layout.Gen, index: i, ref: o}})
				}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, 0, false, err
	}
	var objs []proto.ObjRef
	for _, w := range cands {
		objs = append(objs, w.fix.ref)
	}
	state, err := r.probeObjects(ctx, objs)
	if err != nil {
		return nil, 0, false, err
	}
	var found []*fsckFinding
	err = r.s.view(ctx, func(t *mtx) error {
		found = nil
		for _, w := range cands {
			st, asked := state[layout.Object{OST: w.fix.ref.OST, ID: w.fix.ref.ID}]
			if !asked || st.Exists || st.Destroyed {
				continue
			}
			if ok, err := stillWritten(t, w.ino, w.fix); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			ref := w.fix.ref
			found = append(found, &fsckFinding{
				FsckFinding: proto.FsckFinding{Ino: w.ino, Object: &ref,
					Problem: "was written but is missing: the data it held is lost"},
				fix: w.fix,
			})
		}
		return nil
	})
	if err != nil {
		return nil, 0, false, err
	}
	c.cursor = cursor
	return found, len(cands), done, nil
}

// stillWritten reports whether ino's current layout still has the object
// of fix at its index, marked written.
func stillWritten(t *mtx, ino uint64, fix missingFix) (bool, error) {
	in, err := t.inode(ino)
	if isErrno(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil || in.Layout == nil || in.Layout.Gen != fix.gen || !in.wroteObject(fix.index) {
		return false, err
	}
	objs := layoutObjects(in.Layout)
	return fix.index < len(objs) && objs[fix.index] == fix.ref, nil
}

func (c *missingObjectChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(missingFix)
	err := r.s.updateInode(ctx, f.Ino, func(t *mtx) error {
		ok, err := stillWritten(t, f.Ino, fix)
		if err != nil || !ok {
			return firstErr(err, errFsckVanished)
		}
		in, err := t.inode(f.Ino)
		if err != nil {
			return err
		}
		in.forgetWritten(fix.index)
		t.put(in)
		return nil
	})
	return "cleared its written mark: the lost range reads as zeros", err
}
