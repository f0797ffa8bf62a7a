package proto

// Changelog (Lustre's changelog, read by policy engines and indexers).
// Every namespace change is recorded in the transaction that makes it, in a
// log per MDT numbered by the MDS that owns the MDT. Numbers are handed out
// before the transactions commit, so one may commit after a higher one: a
// reader gets only the entries below the MDT's safe point, under which no
// transaction is still in flight, and so never skips an entry that commits
// late. Two changes that touch a common record are numbered in the order
// they commit.

// Changelog record types, with Lustre's numbers.
const (
	ChangelogCreate  uint8 = 1  // CREAT
	ChangelogMkdir   uint8 = 2  // MKDIR
	ChangelogHLink   uint8 = 3  // HLINK
	ChangelogSLink   uint8 = 4  // SLINK
	ChangelogMknod   uint8 = 5  // MKNOD
	ChangelogUnlink  uint8 = 6  // UNLNK
	ChangelogRmdir   uint8 = 7  // RMDIR
	ChangelogRename  uint8 = 8  // RENME
	ChangelogClose   uint8 = 11 // CLOSE (after writes)
	ChangelogLayout  uint8 = 12 // LYOUT
	ChangelogTrunc   uint8 = 13 // TRUNC
	ChangelogSetattr uint8 = 14 // SATTR
	ChangelogXattr   uint8 = 15 // XATTR
	ChangelogHsm     uint8 = 16 // HSM
	ChangelogMigrate uint8 = 20 // MIGRT
)

// ChangelogTypeNames are Lustre's names of the record types.
var ChangelogTypeNames = map[uint8]string{
	ChangelogCreate: "CREAT", ChangelogMkdir: "MKDIR", ChangelogHLink: "HLINK", ChangelogSLink: "SLINK",
	ChangelogMknod: "MKNOD", ChangelogUnlink: "UNLNK", ChangelogRmdir: "RMDIR", ChangelogRename: "RENME",
	ChangelogClose: "CLOSE", ChangelogLayout: "LYOUT", ChangelogTrunc: "TRUNC", ChangelogSetattr: "SATTR",
	ChangelogXattr: "XATTR", ChangelogHsm: "HSM", ChangelogMigrate: "MIGRT",
}

// ChangelogEntry is one change: its MDT and number, type, time (unix
// nanoseconds), the inode it is about (t=), the directory and name it has
// there (p=, the new name of a rename), for a rename the old directory and
// name (sp=, s=) and the inode a rename replaced (0: none), the caller's
// identity, and type-specific flags (SATTR: the SetattrReq.Valid bits).
type ChangelogEntry struct {
	MDT       uint32 `msgpack:"m" json:"mdt"`
	Index     uint64 `msgpack:"i" json:"index"`
	Type      uint8  `msgpack:"t" json:"-"`
	Time      int64  `msgpack:"T" json:"time"`
	Ino       uint64 `msgpack:"o" json:"target"`
	Parent    uint64 `msgpack:"p,omitempty" json:"parent,omitempty"`
	Name      string `msgpack:"n,omitempty" json:"name,omitempty"`
	SrcParent uint64 `msgpack:"P,omitempty" json:"source_parent,omitempty"`
	SrcName   string `msgpack:"N,omitempty" json:"source_name,omitempty"`
	Victim    uint64 `msgpack:"v,omitempty" json:"overwritten,omitempty"`
	Uid       uint32 `msgpack:"u" json:"uid"`
	Gid       uint32 `msgpack:"g" json:"gid"`
	Flags     uint32 `msgpack:"f,omitempty" json:"flags,omitempty"`
}

// ChangelogReq reads entries of one MDT after After, at most Limit, from
// the MDS that owns it. Wait, in milliseconds, holds the request until
// there is an entry to return or it passes (follow mode).
type ChangelogReq struct {
	MDT   uint32 `msgpack:"m"`
	After uint64 `msgpack:"a,omitempty"`
	Limit int    `msgpack:"l,omitempty"`
	Wait  int64  `msgpack:"w,omitempty"`
}

// ChangelogResp returns entries in number order, all at or below the
// MDT's safe point, and the oldest number still kept (0: none).
type ChangelogResp struct {
	Entries   []ChangelogEntry `msgpack:"e,omitempty"`
	SafePoint uint64           `msgpack:"s"`
	First     uint64           `msgpack:"f,omitempty"`
}

// Changelog consumer operations (ChangelogUserReq.Op).
const (
	ChangelogRegister   = "register"
	ChangelogClear      = "clear"
	ChangelogDeregister = "deregister"
	ChangelogUsers      = "list"
)

// ChangelogUserReq registers a consumer (which gets an id, cl1, cl2, ...,
// with no entry cleared: from then on nothing it has not cleared is
// purged), moves its cursor on one MDT
// (clear: the consumer is done with every entry up to Index, which the
// MDT's owner may then purge), deregisters it, or lists the consumers.
// Clear goes to the owner of MDT, which caps Index at the safe point.
type ChangelogUserReq struct {
	Op    string `msgpack:"o"`
	ID    string `msgpack:"i,omitempty"`
	Name  string `msgpack:"n,omitempty"`
	MDT   uint32 `msgpack:"m,omitempty"`
	Index uint64 `msgpack:"x,omitempty"`
}

// ChangelogUserResp lists consumers (register: the new one).
type ChangelogUserResp struct {
	Users []ChangelogUser `msgpack:"u"`
}

// ChangelogUser is a consumer and its cursor on each MDT: the last entry
// it cleared.
type ChangelogUser struct {
	ID      string            `msgpack:"i" json:"id"`
	Name    string            `msgpack:"n,omitempty" json:"name,omitempty"`
	Cursors map[uint32]uint64 `msgpack:"c" json:"cursors"`
}
