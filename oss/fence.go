package oss

import (
	"fmt"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Fence gives an object the layout generation acc.Gen if its own is older,
// creating the object if it is missing, and makes that durable. It holds
// the object's lock exclusively, so every request already using the object
// has finished when it returns, and every later one of an older generation
// gets ErrStale: a migration fences the objects of the layout it replaces
// before its last copy, so nothing written through the old layout is lost.
func (o *OST) Fence(obj Object, acc Access) error {
	if _, err := o.withObject(obj, update, &acc, func(*handle) error { return nil }); err != nil {
		return o.fail(fmt.Errorf("oss: fence %s: %w", obj.ID, err))
	}
	sh := o.shardOf(obj.ID)
	sh.Lock()
	defer sh.Unlock()
	h, err := o.acquireChecked(obj.ID, update, &acc)
	if err == nil && h == nil {
		err = ErrStale // destroyed since it was created
	}
	if err != nil {
		return o.fail(fmt.Errorf("oss: fence %s: %w", obj.ID, err))
	}
	defer o.put(h)
	if acc.Gen > h.gen.Load() {
		if err := o.setVersion(h, acc.Gen, h.epoch.Load()); err != nil {
			return o.fail(fmt.Errorf("oss: fence %s: %w", obj.ID, err))
		}
	}
	// fsync, not fdatasync: the version xattr must be durable, and the
	// object's directory entry too if the fence created it.
	if err := h.f.Sync(); err != nil {
		return o.fail(fmt.Errorf("oss: fence %s: %w", obj.ID, err))
	}
	if err := o.syncHandle(h); err != nil {
		return o.fail(fmt.Errorf("oss: fence %s: %w", obj.ID, err))
	}
	return nil
}

// objFence serves OpObjFence.
func (s *Server) objFence(req *proto.ObjFenceReq, _ *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("fence", &req.Cap, req.Obj, proto.RightWrite)
	if err != nil {
		return nil, err
	}
	return nil, o.Fence(objectOf(req.Obj), accessOf(&req.Cap))
}
