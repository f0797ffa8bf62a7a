package proto

import "github.com/stratafs/strata/layout"

// Setattr valid bits (SetattrReq.Valid).
const (
	SetMode     uint32 = 1 << 0
	SetUid      uint32 = 1 << 1
	SetGid      uint32 = 1 << 2
	SetSize     uint32 = 1 << 3
	SetAtime    uint32 = 1 << 4
	SetMtime    uint32 = 1 << 5
	SetAtimeNow uint32 = 1 << 6
	SetMtimeNow uint32 = 1 << 7
	SetCtime    uint32 = 1 << 8
	// SetKillPrivs clears the set-user-ID bit, and the set-group-ID bit
	// if group-execute is set, as Linux does for a write or truncate by a
	// caller without CAP_FSETID. With SetSize it qualifies the truncate;
	// alone it is the effect of a write, allowed to a caller that may
	// write the file (or names a handle open for writing).
	SetKillPrivs uint32 = 1 << 9
)

// Rename flags, as renameat2(2).
const (
	RenameNoReplace uint32 = 1 << 0
	RenameExchange  uint32 = 1 << 1
)

// Umask in CreateReq, MkdirReq and MknodReq: the MDS applies it to Mode
// unless the parent directory has a default POSIX ACL, in which case the new
// inode's ACL and mode come from that default ACL and Mode (POSIX.1e). A
// client that already applied the umask may send it again: applying it twice
// is harmless.

// Open flags travel as the Linux O_* values (syscall.O_RDONLY, O_WRONLY,
// O_RDWR, O_TRUNC, O_APPEND, O_EXCL, ...).

// LookupReq looks a name up in a directory.
type LookupReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
}

// EntryResp is the reply to operations that yield a directory entry.
// Lease, if not zero, is the metadata lease term in milliseconds: the
// caller's session holds leases on the entry's name in its directory and
// on the attributes (see LeaseWaitReq).
type EntryResp struct {
	Attr  Attr   `msgpack:"a"`
	Lease uint32 `msgpack:"L,omitempty"`
	// ParentTime, if not zero, is the new mtime and ctime of the
	// directory the entry was made in: a caller holding a lease on the
	// directory's attributes updates them in place (see ChangeResp).
	ParentTime int64 `msgpack:"P,omitempty"`
}

// ChangeResp is the reply to unlink, rmdir and rename. ParentTime, if not
// zero, is the new mtime and ctime of the directories changed: the change
// is the caller's own, so a caller whose leases on them were not called
// back meanwhile knows their attributes without asking (their link counts
// move with the subdirectories the caller removed or moved). It is zero
// for a caller without leases and for a resent request answered from its
// recorded reply.
type ChangeResp struct {
	ParentTime int64 `msgpack:"P,omitempty"`
}

// GetattrReq asks for an inode's attributes. Session, if set, asks for a
// lease on them.
type GetattrReq struct {
	Ino     uint64 `msgpack:"i"`
	Session uint64 `msgpack:"S,omitempty"`
}

// AttrResp carries attributes; Lease as in EntryResp, for the attributes.
type AttrResp struct {
	Attr  Attr   `msgpack:"a"`
	Lease uint32 `msgpack:"L,omitempty"`
}

// SetattrReq changes attributes; Valid says which fields count. A size
// change truncates the file's objects before the reply.
type SetattrReq struct {
	Cred   Cred   `msgpack:"C"`
	Ino    uint64 `msgpack:"i"`
	Handle uint64 `msgpack:"h,omitempty"` // open handle, for ftruncate on a handle opened for writing
	Valid  uint32 `msgpack:"v"`
	Mode   uint32 `msgpack:"m"`
	Uid    uint32 `msgpack:"u"`
	Gid    uint32 `msgpack:"g"`
	Size   uint64 `msgpack:"s"`
	Atime  int64  `msgpack:"a"`
	Mtime  int64  `msgpack:"M"`
	Ctime  int64  `msgpack:"c"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// CreateReq creates a regular file and opens it. Layout, if non-empty,
// overrides the inherited default (setstripe on a new file).
type CreateReq struct {
	Cred    Cred        `msgpack:"C"`
	Session uint64      `msgpack:"S"`
	Parent  uint64      `msgpack:"p"`
	Name    string      `msgpack:"n"`
	Mode    uint32      `msgpack:"m"` // permission bits as the caller passed them
	Umask   uint32      `msgpack:"U,omitempty"`
	Flags   uint32      `msgpack:"f"` // O_* flags
	Layout  layout.Spec `msgpack:"l,omitempty"`
	// KillPrivs: if the name exists and O_TRUNC truncates it, clear its
	// set-id bits as OpenReq.KillPrivs does.
	KillPrivs bool   `msgpack:"k,omitempty"`
	Tag       ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// MkdirReq creates a directory. MDT = -1 lets the MDS choose.
type MkdirReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
	Mode   uint32 `msgpack:"m"`
	Umask  uint32 `msgpack:"U,omitempty"`
	MDT    int32  `msgpack:"t"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// MknodReq creates a special file (FIFO, socket, device) or an empty regular file.
type MknodReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
	Mode   uint32 `msgpack:"m"` // type | permissions
	Umask  uint32 `msgpack:"U,omitempty"`
	Rdev   uint32 `msgpack:"r"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// SymlinkReq creates a symbolic link.
type SymlinkReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
	Target string `msgpack:"t"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// ReadlinkReq reads a symbolic link.
type ReadlinkReq struct {
	Ino uint64 `msgpack:"i"`
}

// ReadlinkResp carries a link target.
type ReadlinkResp struct {
	Target string `msgpack:"t"`
}

// LinkReq makes a hard link to Ino named Name in NewParent.
type LinkReq struct {
	Cred      Cred   `msgpack:"C"`
	Ino       uint64 `msgpack:"i"`
	NewParent uint64 `msgpack:"p"`
	Name      string `msgpack:"n"`
	Tag       ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// UnlinkReq removes a non-directory entry.
type UnlinkReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// RmdirReq removes an empty directory.
type RmdirReq struct {
	Cred   Cred   `msgpack:"C"`
	Parent uint64 `msgpack:"p"`
	Name   string `msgpack:"n"`
	Tag    ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// RenameReq renames Parent/Name to NewParent/NewName, atomically.
type RenameReq struct {
	Cred      Cred   `msgpack:"C"`
	Parent    uint64 `msgpack:"p"`
	Name      string `msgpack:"n"`
	NewParent uint64 `msgpack:"P"`
	NewName   string `msgpack:"N"`
	Flags     uint32 `msgpack:"f"`           // RenameNoReplace, RenameExchange
	Tag       ReqTag `msgpack:"R,omitempty"` // exactly-once execution of a resend (see ReqTag)
}

// ReaddirReq reads a page of a directory. Entries come in name order,
// starting after After ("" for the first page); the page is stable under
// concurrent changes because it continues from a name, not an index.
type ReaddirReq struct {
	Cred  Cred   `msgpack:"C"`
	Ino   uint64 `msgpack:"i"`
	After string `msgpack:"a"`
	Max   int    `msgpack:"m"`
	Plus  bool   `msgpack:"p"` // include full attributes
}

// Dirent is one directory entry.
type Dirent struct {
	Name string `msgpack:"n"`
	Ino  uint64 `msgpack:"i"`
	Mode uint32 `msgpack:"m"`           // type bits at least; full mode with Plus
	Attr *Attr  `msgpack:"a,omitempty"` // with Plus
}

// ReaddirResp is one page of entries; More says whether another page follows.
type ReaddirResp struct {
	Entries []Dirent `msgpack:"e"`
	More    bool     `msgpack:"M"`
	// Lease as in EntryResp: on the directory's names and, with Plus,
	// the attributes of every entry that has them.
	Lease uint32 `msgpack:"L,omitempty"`
}

// AccessReq checks access(2) permission bits (R_OK=4, W_OK=2, X_OK=1).
type AccessReq struct {
	Cred Cred   `msgpack:"C"`
	Ino  uint64 `msgpack:"i"`
	Mask uint32 `msgpack:"m"`
}
