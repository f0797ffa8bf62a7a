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

// ObjWriteResp reports the object's size after the write.
type ObjWriteResp struct {
	Size int64 `msgpack:"s"`
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

// OSTStatfsReq asks one OST for its usage.
type OSTStatfsReq struct {
	OST uint32 `msgpack:"o"`
}

// OSTStatfsResp reports usage.
type OSTStatfsResp struct {
	Stat OSTAnnounce `msgpack:"s"`
}
