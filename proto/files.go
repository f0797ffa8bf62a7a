package proto

import "github.com/stratafs/strata/layout"

// OpenReq opens an existing regular file. O_TRUNC truncates it (with
// permission checks) as part of the open.
type OpenReq struct {
	Cred    Cred   `msgpack:"C"`
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Flags   uint32 `msgpack:"f"`
	// KillPrivs asks an O_TRUNC open to clear the set-id bits, as a
	// truncate by a caller without CAP_FSETID does (SetKillPrivs).
	KillPrivs bool `msgpack:"k,omitempty"`
	// Replay re-establishes, after an MDS restart or takeover, an open
	// this client held: Handle is its handle, kept; nothing is truncated.
	Replay bool   `msgpack:"P,omitempty"`
	Handle uint64 `msgpack:"h,omitempty"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// OpenResp describes an open file: its handle at the MDS, attributes,
// layout and a capability for its objects.
type OpenResp struct {
	Handle uint64        `msgpack:"h"`
	Attr   Attr          `msgpack:"a"`
	Layout layout.Layout `msgpack:"l"`
	Cap    Capability    `msgpack:"c"`
	Lease  uint32        `msgpack:"L,omitempty"` // for a create, as in EntryResp
	// ParentTime: for a create that made the file, as in EntryResp.
	ParentTime int64 `msgpack:"P,omitempty"`
}

// CloseReq releases an open handle. If the client wrote through the handle,
// Wrote is set, Size is the largest end offset it wrote (merged as a maximum
// with the MDS size) and Mtime the time of its last write.
type CloseReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Handle  uint64 `msgpack:"h"`
	Wrote   bool   `msgpack:"w"`
	Size    uint64 `msgpack:"s"`
	Mtime   int64  `msgpack:"M"`
	// Epoch is the truncate epoch the writer's size belongs to: a size
	// from before a truncate (a smaller epoch) is not merged, so it cannot
	// bring back the size the truncate cut.
	Epoch uint64 `msgpack:"E,omitempty"`
	Tag   ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)

	// Written lists the objects the client wrote since its last report,
	// as indices into the objects of layout generation WrittenGen in
	// layout order, so that the MDS knows which objects must exist (fsck's
	// missing-objects check).
	Written    []uint32 `msgpack:"W,omitempty"`
	WrittenGen uint32   `msgpack:"G,omitempty"`
}

// CloseManyReq releases read-only handles a client closed a moment ago, in
// one request: their releases need no reply, so the client defers and
// batches them. Handles the MDS does not know (a restart dropped them) are
// skipped.
type CloseManyReq struct {
	Closes []CloseReq `msgpack:"c"`
}

// SetSizeReq reports written data without closing (fsync, flush, strict
// mode extending writes). Size merges as a maximum. Sync asks the MDS to make
// its metadata durable before replying (fsync).
type SetSizeReq struct {
	Session uint64 `msgpack:"S,omitempty"` // the writer's session (see Cred.Session)
	Ino     uint64 `msgpack:"i"`
	Handle  uint64 `msgpack:"h"`
	Size    uint64 `msgpack:"s"`
	Mtime   int64  `msgpack:"M"`
	Sync    bool   `msgpack:"y"`
	Epoch   uint64 `msgpack:"E,omitempty"` // as CloseReq.Epoch

	// Written and WrittenGen are as in CloseReq.
	Written    []uint32 `msgpack:"W,omitempty"`
	WrittenGen uint32   `msgpack:"G,omitempty"`
}

// SyncReq asks the MDS to make every metadata change it has acknowledged
// durable before replying (fsync of a directory).
type SyncReq struct{}

// AppendReq reserves Len bytes at the current end of file for an O_APPEND
// write: the MDS returns the old size as the offset to write at and raises
// the size to Offset+Len in the same transaction, so appends from several
// clients never overlap. A client that fails to write leaves a hole of zeros.
type AppendReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Handle  uint64 `msgpack:"h"`
	Len     uint64 `msgpack:"l"`
	Tag     ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// AppendResp is the offset an append writes at.
type AppendResp struct {
	Offset uint64 `msgpack:"o"`
}

// SetConsistencyReq sets a directory's consistency mode for files created
// below it: "strict", "close-to-open", or "" to inherit from its parent.
// New subdirectories inherit the setting.
type SetConsistencyReq struct {
	Cred Cred   `msgpack:"C"`
	Ino  uint64 `msgpack:"i"`
	Mode string `msgpack:"m"`
	Tag  ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// GetCapReq asks for a fresh capability for an open handle.
type GetCapReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Handle  uint64 `msgpack:"h"`
}

// GetCapResp carries a capability with the file's current attributes and
// layout: a client refreshing after an OSS said ESTALE learns the new layout
// generation and truncate epoch (which the capability names) and the size.
type GetCapResp struct {
	Cap    Capability    `msgpack:"c"`
	Attr   Attr          `msgpack:"a"`
	Layout layout.Layout `msgpack:"l"`
}

// GetxattrReq reads one extended attribute.
type GetxattrReq struct {
	Cred Cred   `msgpack:"C"`
	Ino  uint64 `msgpack:"i"`
	Name string `msgpack:"n"`
}

// GetxattrResp carries an xattr value.
type GetxattrResp struct {
	Value []byte `msgpack:"v"`
}

// Setxattr flags, as setxattr(2).
const (
	XattrCreate  uint32 = 1
	XattrReplace uint32 = 2
)

// SetxattrReq writes one extended attribute.
type SetxattrReq struct {
	Cred  Cred   `msgpack:"C"`
	Ino   uint64 `msgpack:"i"`
	Name  string `msgpack:"n"`
	Value []byte `msgpack:"v"`
	Flags uint32 `msgpack:"f"`
	Tag   ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// ListxattrReq lists xattr names.
type ListxattrReq struct {
	Cred Cred   `msgpack:"C"`
	Ino  uint64 `msgpack:"i"`
}

// ListxattrResp carries xattr names.
type ListxattrResp struct {
	Names []string `msgpack:"n"`
}

// RemovexattrReq removes one extended attribute.
type RemovexattrReq struct {
	Cred Cred   `msgpack:"C"`
	Ino  uint64 `msgpack:"i"`
	Name string `msgpack:"n"`
	Tag  ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// GetLayoutReq reads a file's layout or a directory's default layout.
type GetLayoutReq struct {
	Ino uint64 `msgpack:"i"`
}

// GetLayoutResp carries a file's layout (Layout) or, for a directory, its
// default (Spec; empty Components if the directory has none of its own).
type GetLayoutResp struct {
	IsDir  bool          `msgpack:"d"`
	Layout layout.Layout `msgpack:"l"`
	Spec   layout.Spec   `msgpack:"s"`
}

// SetLayoutReq sets a directory's default layout, or replaces the layout of
// a regular file that has never held data (setstripe on a new file). An empty
// Spec on a directory removes its default.
type SetLayoutReq struct {
	Cred Cred        `msgpack:"C"`
	Ino  uint64      `msgpack:"i"`
	Spec layout.Spec `msgpack:"s"`
	Tag  ReqTag      `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// Lock types.
const (
	LockRead   uint8 = 0 // F_RDLCK
	LockWrite  uint8 = 1 // F_WRLCK
	LockUnlock uint8 = 2 // F_UNLCK
)

// LockReq acquires (OpLock), tests (OpGetLk) or releases byte-range or
// flock locks. Owner identifies the lock owner on the client (the kernel's
// lock owner, or the open file for flock); Session the client. End is
// inclusive; -1 means to EOF.
//
// A waiting request (Wait) blocks at the MDS for at most LockWaitSlice; if
// the lock is not granted by then the reply is EAGAIN and the client asks
// again. So a client whose caller is interrupted by a signal stops asking
// between slices and never has a request in flight that could still be
// granted behind its back; deadlock detection (EDEADLK) sees the waiter
// while its request is in flight.
type LockReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Owner   uint64 `msgpack:"o"`
	Pid     uint32 `msgpack:"p"`
	Type    uint8  `msgpack:"t"`
	Start   int64  `msgpack:"s"`
	End     int64  `msgpack:"e"`
	Flock   bool   `msgpack:"f"` // flock(2) rather than fcntl
	Wait    bool   `msgpack:"w"` // F_SETLKW: block until granted (the caller may cancel)
	// Replay re-establishes a lock the client held before an MDS restart
	// or takeover; only replays are granted during the recovery window.
	Replay bool `msgpack:"P,omitempty"`
}

// LockWaitSlice is how long the MDS holds a waiting lock request.
const LockWaitSlice = 1000 // milliseconds

// LockResp returns, for OpGetLk, the conflicting lock (Type LockUnlock if none).
// End is -1 for a lock to EOF, as in LockReq, and a flock lock reads as
// [0, -1]. OpLock replies with Type LockUnlock.
type LockResp struct {
	Type  uint8  `msgpack:"t"`
	Start int64  `msgpack:"s"`
	End   int64  `msgpack:"e"`
	Pid   uint32 `msgpack:"p"`
}

// UnlockReq releases every lock of an owner on an inode (close), or of a
// whole session when Ino is 0.
type UnlockReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Owner   uint64 `msgpack:"o"`
	Flock   bool   `msgpack:"f"`
}
