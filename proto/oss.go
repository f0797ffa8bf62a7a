package proto

import "github.com/stratafs/strata/layout"

// RegisterOSSReq announces an OSS and its OSTs to the MDS. An OST whose
// Index is -1 is new: the MDS assigns the next free index and the OSS
// records it in the OST directory so it keeps it across restarts.
type RegisterOSSReq struct {
	FSName string        `msgpack:"f"`
	Addr   string        `msgpack:"a"` // address clients reach this OSS at
	OSTs   []OSTAnnounce `msgpack:"o"`
}

// OSTAnnounce is one OST an OSS serves.
type OSTAnnounce struct {
	Index int64  `msgpack:"i"`
	UUID  string `msgpack:"U"`
	Total uint64 `msgpack:"t"`
	Used  uint64 `msgpack:"u"`
	Avail uint64 `msgpack:"v"`
	Files uint64 `msgpack:"f"`
	FFree uint64 `msgpack:"F"`
}

// RegisterOSSResp returns the indices assigned, in request order.
type RegisterOSSResp struct {
	Indices []uint32 `msgpack:"i"`
}

// OSSHeartbeatReq refreshes an OSS's liveness and its OSTs' usage.
type OSSHeartbeatReq struct {
	Addr string        `msgpack:"a"`
	OSTs []OSTAnnounce `msgpack:"o"` // Index always set here
}

// ObjRef names one object on one OST, with the stripe it holds (recorded
// by the OSS as the object's owner, for fsck).
type ObjRef struct {
	OST    uint32          `msgpack:"o"`
	ID     layout.ObjectID `msgpack:"i"`
	Stripe uint32          `msgpack:"s"`
}

// ObjWriteReq writes the request's bulk payload at Offset in the object,
// creating it if needed. Sync makes the write durable before the reply
// (O_SYNC/O_DIRECT clients).
type ObjWriteReq struct {
	Cap    Capability `msgpack:"c"`
	Obj    ObjRef     `msgpack:"o"`
	Offset int64      `msgpack:"f"`
	Sync   bool       `msgpack:"y"`
}

// ObjWriteResp reports the object's size after the write and the OST's
// write verifier: it changes only when data the OST acknowledged but had
// not synced may have been lost (the host rebooted, the OST's file system
// was replaced), so a client that sees another verifier at ObjSync knows
// its unsynced writes may be gone (NFS's COMMIT verifier).
type ObjWriteResp struct {
	Size     int64  `msgpack:"s"`
	Verifier uint64 `msgpack:"v,omitempty"`
}

// ObjReadReq reads up to Length bytes at Offset. The reply bulk is shorter
// at the object's end; a missing object reads as empty.
type ObjReadReq struct {
	Cap    Capability `msgpack:"c"`
	Obj    ObjRef     `msgpack:"o"`
	Offset int64      `msgpack:"f"`
	Length int64      `msgpack:"l"`
}

// ObjReadResp reports the object's size at the time of the read.
type ObjReadResp struct {
	Size int64 `msgpack:"s"`
}

// ObjPunchReq truncates (or extends with a hole) an object to Size.
type ObjPunchReq struct {
	Cap  Capability `msgpack:"c"`
	Obj  ObjRef     `msgpack:"o"`
	Size int64      `msgpack:"s"`
}

// ObjSyncReq makes an object's data durable (fdatasync).
type ObjSyncReq struct {
	Cap Capability `msgpack:"c"`
	Obj ObjRef     `msgpack:"o"`
}

// ObjSyncResp carries the OST's write verifier (see ObjWriteResp).
type ObjSyncResp struct {
	Verifier uint64 `msgpack:"v,omitempty"`
}

// Fallocate modes (ObjFallocateReq.Mode), applied to one object's range.
const (
	// FallocAlloc preallocates the range, growing the object to its end
	// (fallocate mode 0).
	FallocAlloc uint32 = iota
	// FallocKeepSize preallocates without changing the object's size.
	FallocKeepSize
	// FallocPunchHole deallocates the range, which then reads as zeros;
	// the size is kept.
	FallocPunchHole
	// FallocZeroRange zeroes the range, growing the object to its end.
	FallocZeroRange
)

// ObjFallocateReq preallocates, punches or zeroes a range of an object.
type ObjFallocateReq struct {
	Cap    Capability `msgpack:"c"`
	Obj    ObjRef     `msgpack:"o"`
	Mode   uint32     `msgpack:"m"`
	Offset int64      `msgpack:"f"`
	Length int64      `msgpack:"l"`
}

// ObjCopyReq copies Length bytes from Src at SrcOffset to Dst at DstOffset,
// both objects on the OST of Dst (copy_file_range done by the OSS). The
// bytes past the source object's end are not copied: Copied says how many
// were, and the caller zero-fills the rest.
type ObjCopyReq struct {
	SrcCap    Capability `msgpack:"C"`
	Src       ObjRef     `msgpack:"S"`
	SrcOffset int64      `msgpack:"s"`
	Cap       Capability `msgpack:"c"`
	Dst       ObjRef     `msgpack:"o"`
	DstOffset int64      `msgpack:"f"`
	Length    int64      `msgpack:"l"`
}

// ObjCopyResp reports what a copy did.
type ObjCopyResp struct {
	Copied   int64  `msgpack:"n"`
	Verifier uint64 `msgpack:"v,omitempty"`
}

// ObjGetattrReq asks for an object's size.
type ObjGetattrReq struct {
	Cap Capability `msgpack:"c"`
	Obj ObjRef     `msgpack:"o"`
}

// ObjGetattrResp reports an object's size and allocated blocks; a missing
// object has Exists false and size 0.
type ObjGetattrResp struct {
	Exists bool  `msgpack:"e"`
	Size   int64 `msgpack:"s"`
	Blocks int64 `msgpack:"b"` // 512-byte blocks
}

// ObjDestroyReq deletes objects; missing ones are not an error.
type ObjDestroyReq struct {
	Cap  Capability `msgpack:"c"` // Ino of the file the objects belonged to
	Objs []ObjRef   `msgpack:"o"`
}

// ObjDestroyManyReq deletes the objects of many files, each with its own
// capability; missing objects are not an error. A file whose capability
// does not check makes the whole request fail, deleting nothing.
type ObjDestroyManyReq struct {
	Files []ObjDestroyReq `msgpack:"f"`
}

// OSTStatfsReq asks one OST for its usage.
type OSTStatfsReq struct {
	OST uint32 `msgpack:"o"`
}

// OSTStatfsResp reports usage.
type OSTStatfsResp struct {
	Stat OSTAnnounce `msgpack:"s"`
}
