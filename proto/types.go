package proto

import "github.com/stratafs/strata/layout"

// Empty is the body of requests and replies that carry nothing.
type Empty struct{}

// Cred is the identity a client acts under for one request. The MDS checks
// permissions against it; the kernel's checks on the client are not trusted.
type Cred struct {
	Uid    uint32   `msgpack:"u"`
	Gid    uint32   `msgpack:"g"`
	Groups []uint32 `msgpack:"G,omitempty"` // supplementary groups
	Pid    uint32   `msgpack:"p,omitempty"` // caller's pid, for lock ownership reporting
	// Session is the caller's client session, if it has one: its
	// metadata leases are granted to it, and its own changes do not call
	// it back (see LeaseWaitReq).
	Session uint64 `msgpack:"S,omitempty"`
}

// Inode types, as the S_IFMT bits of Attr.Mode.
const (
	ModeType    = 0o170000
	ModeRegular = 0o100000
	ModeDir     = 0o040000
	ModeSymlink = 0o120000
	ModeFIFO    = 0o010000
	ModeChar    = 0o020000
	ModeBlock   = 0o060000
	ModeSocket  = 0o140000
)

// Attr is an inode's attributes as the client sees them. Times are
// nanoseconds since the Unix epoch.
type Attr struct {
	Ino    uint64 `msgpack:"i"`
	Mode   uint32 `msgpack:"m"` // type bits | permission bits (incl. suid/sgid/sticky)
	Nlink  uint32 `msgpack:"n"`
	Uid    uint32 `msgpack:"u"`
	Gid    uint32 `msgpack:"g"`
	Rdev   uint32 `msgpack:"r,omitempty"`
	Size   uint64 `msgpack:"s"`
	Blocks uint64 `msgpack:"b,omitempty"` // 512-byte blocks, best effort
	Atime  int64  `msgpack:"a"`
	Mtime  int64  `msgpack:"M"`
	Ctime  int64  `msgpack:"c"`
	// DataVersion increases whenever file data may have changed (every
	// close or size report after writes, every truncate). Clients use it for
	// close-to-open cache validation.
	DataVersion uint64 `msgpack:"v,omitempty"`
	// Flags are AttrFlag* bits.
	Flags uint32 `msgpack:"F,omitempty"`
}

// Attr flags.
const (
	// AttrFlagStrict marks a file (or a directory's default for new files)
	// as strict consistency: clients keep no data cache for it and make
	// every write visible to every client once it returns (MPI-IO shared
	// files). A file takes its directory's setting when it is created.
	AttrFlagStrict uint32 = 1 << 0
	// AttrFlagCloseToOpen marks a directory whose subtree is explicitly
	// close-to-open even on a strict mount's defaults; files created in it
	// are not strict.
	AttrFlagCloseToOpen uint32 = 1 << 1
)

// IsDir reports whether the attributes describe a directory.
func (a *Attr) IsDir() bool { return a.Mode&ModeType == ModeDir }

// IsRegular reports whether the attributes describe a regular file.
func (a *Attr) IsRegular() bool { return a.Mode&ModeType == ModeRegular }

// MDT describes one metadata target and the MDS that serves it.
type MDT struct {
	Index uint32 `msgpack:"i"`
	Addr  string `msgpack:"a"` // MDS address serving this MDT ("" if none)
	// Owner is the instance of the owning MDS (0: none), Epoch counts
	// changes of owner, LeaseMillis is how much of the owner's lease is
	// left (negative: run out), and State is "serving", "recovering",
	// or "down" (no live owner).
	Owner       uint64 `msgpack:"o,omitempty"`
	Epoch       uint64 `msgpack:"e,omitempty"`
	LeaseMillis int64  `msgpack:"l,omitempty"`
	State       string `msgpack:"s,omitempty"`
}

// OST describes one object storage target and the OSS that serves it.
type OST struct {
	Index  uint32   `msgpack:"i"`
	UUID   string   `msgpack:"U"`
	Addr   string   `msgpack:"a"` // OSS address
	Pools  []string `msgpack:"p,omitempty"`
	Active bool     `msgpack:"A"` // heartbeat seen recently
	Total  uint64   `msgpack:"t"` // bytes
	Used   uint64   `msgpack:"u"`
	Avail  uint64   `msgpack:"v"`
	Files  uint64   `msgpack:"f,omitempty"` // inodes total
	FFree  uint64   `msgpack:"F,omitempty"` // inodes free
	// Transport is how the asking client reaches the OSS ("tcp", "rdma",
	// "" before its first call): filled by the client, not the MDS.
	Transport string `msgpack:"x,omitempty"`
}

// Capability rights.
const (
	RightRead  uint8 = 1
	RightWrite uint8 = 2
)

// Capability lets its holder read or write the objects of one file until it
// expires. The MDS signs it with the cluster secret at open; the OSS checks it
// on every object request (see Sign and Verify).
type Capability struct {
	Ino    uint64 `msgpack:"i"`
	Rights uint8  `msgpack:"r"`
	Expiry int64  `msgpack:"e"` // unix nanoseconds
	// Gen is the layout generation the holder's layout has, and Epoch the
	// file's truncate epoch the holder knows: an OSS refuses (ESTALE) I/O
	// to an object of a newer generation, a write or punch to an object
	// truncated at a newer epoch, and any I/O to a destroyed object.
	Gen   uint32 `msgpack:"g,omitempty"`
	Epoch uint64 `msgpack:"E,omitempty"`
	MAC   []byte `msgpack:"m"`
}

// ---- session ----

// ConnectReq opens a client session with the MDS.
type ConnectReq struct {
	FSName   string `msgpack:"f"`
	ClientID string `msgpack:"c"` // hostname:pid:random, for logs and recovery
	// Session, if not zero, resumes that session (after a broken
	// connection or an MDS restart): its opens, reply records and locks
	// are kept, or replayed. ENOTCONN means it is gone (evicted).
	Session uint64 `msgpack:"S,omitempty"`
}

// ConnectResp returns the session and everything a client needs to route.
type ConnectResp struct {
	Session     uint64      `msgpack:"s"`
	LeaseMillis int64       `msgpack:"l"` // renew well before this elapses
	FSName      string      `msgpack:"f"`
	Root        uint64      `msgpack:"r"`
	MDTs        []MDT       `msgpack:"m"`
	OSTs        []OST       `msgpack:"o"`
	Defaults    layout.Spec `msgpack:"d"` // filesystem default layout
	// Instance names this run of the MDS: a client that sees it change
	// replays its opens and locks (the new run holds only what the store
	// kept) and then sends OpRecovered.
	Instance uint64 `msgpack:"I,omitempty"`
	// Recovering: the MDS is in its recovery window.
	Recovering bool `msgpack:"v,omitempty"`
}

// RenewReq keeps a session alive.
type RenewReq struct {
	Session uint64 `msgpack:"s"`
}

// RenewResp carries the current OST table so clients learn of new OSTs and
// changed addresses.
type RenewResp struct {
	OSTs     []OST  `msgpack:"o"`
	Instance uint64 `msgpack:"I,omitempty"` // as ConnectResp.Instance
}

// DisconnectReq ends a session: its opens are closed and locks released.
type DisconnectReq struct {
	Session uint64 `msgpack:"s"`
}

// StatfsReq asks for filesystem-wide usage.
type StatfsReq struct{}

// StatfsResp is filesystem-wide usage, summed over OSTs (blocks) and MDTs (files).
type StatfsResp struct {
	Bsize  uint32 `msgpack:"B"`
	Blocks uint64 `msgpack:"b"`
	Bfree  uint64 `msgpack:"f"`
	Bavail uint64 `msgpack:"a"`
	Files  uint64 `msgpack:"F"`
	Ffree  uint64 `msgpack:"R"`
}

// TargetsReq asks for every target's usage.
type TargetsReq struct{}

// TargetsResp lists every OST and MDT with its usage.
type TargetsResp struct {
	FSName string     `msgpack:"f"`
	OSTs   []OST      `msgpack:"o"`
	MDTs   []MDTUsage `msgpack:"m"`
	// Pools lists the OST pools, empty ones included.
	Pools []Pool `msgpack:"p,omitempty"`
}

// MDTUsage is one MDT's usage for df.
type MDTUsage struct {
	Index uint32 `msgpack:"i"`
	Total uint64 `msgpack:"t"`
	Used  uint64 `msgpack:"u"`
	Avail uint64 `msgpack:"a"`
	Files uint64 `msgpack:"f"`
	FFree uint64 `msgpack:"F"`
	// Who serves it (see MDT).
	Owner MDT `msgpack:"o,omitempty"`
}
