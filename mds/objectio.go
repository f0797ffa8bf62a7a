package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// ObjectIO is how the MDS acts on objects: truncating them for a size
// change and deleting them once their file is gone. Each call names the
// address of the OSS serving the object's OST and carries a capability for
// the file the objects belong to.
type ObjectIO interface {
	// Punch truncates (or extends with a hole) one object to size.
	Punch(ctx context.Context, addr string, c proto.Capability, obj proto.ObjRef, size int64) error
	// Destroy deletes objects of one file on one OSS; missing objects are
	// not an error.
	Destroy(ctx context.Context, addr string, c proto.Capability, objs []proto.ObjRef) error
}

// ManyDestroyer is an ObjectIO that can also delete the objects of many
// files on one OSS in one call (the destroy queue's passes use it).
type ManyDestroyer interface {
	DestroyMany(ctx context.Context, addr string, files []proto.ObjDestroyReq) error
}

// RPCObjectIO reaches OSSes over rpc with OpObjPunch and OpObjDestroy.

type RPCObjectIO struct {
	Client *rpc.Client
}

var _ ObjectIO = (*RPCObjectIO)(nil)

// Punch sends OpObjPunch.
func (r *RPCObjectIO) Punch(ctx context.Context, addr string, c proto.Capability, obj proto.ObjRef, size int64) error {
	return r.Client.Call(ctx, addr, proto.OpObjPunch, &proto.ObjPunchReq{Cap: c, Obj: obj, Size: size}, nil)
}

// Destroy sends OpObjDestroy.
func (r *RPCObjectIO) Destroy(ctx context.Context, addr string, c proto.Capability, objs []proto.ObjRef) error {
	return r.Client.Call(ctx, addr, proto.OpObjDestroy, &proto.ObjDestroyReq{Cap: c, Objs: objs}, nil)
}

// DestroyMany sends OpObjDestroyMany.
func (r *RPCObjectIO) DestroyMany(ctx context.Context, addr string, files []proto.ObjDestroyReq) error {
	return r.Client.Call(ctx, addr, proto.OpObjDestroyMany, &proto.ObjDestroyManyReq{Files: files}, nil)
}

// noObjectIO is the ObjectIO of a service configured without one.
type noObjectIO struct{}

func (noObjectIO) Punch(context.Context, string, proto.Capability, proto.ObjRef, int64) error {
	return fmt.Errorf("mds: no object access configured: %w", syscall.EIO)
}

func (noObjectIO) Destroy(context.Context, string, proto.Capability, []proto.ObjRef) error {
	return fmt.Errorf("mds: no object access configured: %w", syscall.EIO)
}
