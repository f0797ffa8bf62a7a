package proto

// Quotas (strata setquota, quota, project; Lustre's lfs setquota, quota,
// project). Usage is counted per user, group and project: inodes, and
// bytes as the sum of the sizes of regular files the MDS knows. Inode
// limits are enforced exactly where inodes are made. Data writes bypass
// the MDS, so a writer of a file whose owner has block limits asks the MDS
// for room before it extends the file (QuotaGrantReq), a chunk (the qunit)
// at a time: the MDS sees sizes only when writers report them, so usage
// can pass the hard limit by what writers were granted and have not
// reported yet: at most QuotaUnit and the write under way per file being
// written.

// Quota types.
const (
	QuotaUser    uint8 = 0
	QuotaGroup   uint8 = 1
	QuotaProject uint8 = 2
)

// QuotaUnit is the most a grant lets a writer extend a file by without
// asking again (Lustre's qunit).
const QuotaUnit = 4 << 20

// AttrFlagQuota, in the Attr of an open or create reply only (never
// stored), says the file's owner, group or project has block limits: its
// writers ask for room before extending it.
const AttrFlagQuota uint32 = 1 << 16

// QuotaLimits are the limits of an ID: bytes and inodes, soft and hard (0:
// none). Past a soft limit the ID may go on until the grace period runs
// out (BlockGrace, InodeGrace: unix nanoseconds when it does, 0 when not
// past the soft limit).
type QuotaLimits struct {
	BlockSoft  uint64 `msgpack:"bs,omitempty" json:"block_soft"`
	BlockHard  uint64 `msgpack:"bh,omitempty" json:"block_hard"`
	InodeSoft  uint64 `msgpack:"is,omitempty" json:"inode_soft"`
	InodeHard  uint64 `msgpack:"ih,omitempty" json:"inode_hard"`
	BlockGrace int64  `msgpack:"bg,omitempty" json:"block_grace,omitempty"`
	InodeGrace int64  `msgpack:"ig,omitempty" json:"inode_grace,omitempty"`
}

// Which limits a SetQuotaReq sets.
const (
	SetBlockSoft uint32 = 1 << iota
	SetBlockHard
	SetInodeSoft
	SetInodeHard
)

// SetQuotaReq sets the limits of one ID (root only). Valid says which.
type SetQuotaReq struct {
	Cred   Cred        `msgpack:"C"`
	Type   uint8       `msgpack:"t"`
	ID     uint32      `msgpack:"i"`
	Valid  uint32      `msgpack:"v"`
	Limits QuotaLimits `msgpack:"l"`
}

// QuotaReq asks for the usage and limits of one ID. A user may ask about
// itself and its groups, root about anyone.
type QuotaReq struct {
	Cred Cred   `msgpack:"C"`
	Type uint8  `msgpack:"t"`
	ID   uint32 `msgpack:"i"`
}

// QuotaResp is an ID's usage and limits.
type QuotaResp struct {
	Type   uint8       `msgpack:"t" json:"-"`
	ID     uint32      `msgpack:"i" json:"id"`
	Bytes  int64       `msgpack:"b" json:"bytes"`
	Inodes int64       `msgpack:"n" json:"inodes"`
	Limits QuotaLimits `msgpack:"l" json:"limits"`
}

// QuotaGrantReq asks for room to extend an open file (through a handle
// open for writing) to End.
type QuotaGrantReq struct {
	Session uint64 `msgpack:"S"`
	Ino     uint64 `msgpack:"i"`
	Handle  uint64 `msgpack:"h"`
	End     uint64 `msgpack:"e"`
}

// QuotaGrantResp grants extending the file up to End (at least the end
// asked for), or the request fails with EDQUOT.
type QuotaGrantResp struct {
	End uint64 `msgpack:"e"`
}

// ProjectReq sets a file's or directory's project ID (SetID) and a
// directory's inherit flag (SetInherit: new entries take its project), as
// lfs project -p ID -s does; with neither it only reads them. Changing a
// project needs the owner or root, as setting it does on Linux.
type ProjectReq struct {
	Cred       Cred   `msgpack:"C"`
	Ino        uint64 `msgpack:"i"`
	SetID      bool   `msgpack:"s,omitempty"`
	Project    uint32 `msgpack:"p,omitempty"`
	SetInherit bool   `msgpack:"h,omitempty"`
	Inherit    bool   `msgpack:"I,omitempty"`
}

// ProjectResp is an inode's project ID and inherit flag.
type ProjectResp struct {
	Project uint32 `msgpack:"p" json:"project"`
	Inherit bool   `msgpack:"I" json:"inherit"`
}
