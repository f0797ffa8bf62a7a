package proto

// Metadata leases (Lustre's inode bits locks, NFSv4's delegations, in
// spirit). A client session that polls an MDS (OpLeaseWait) may be granted
// leases with the replies of lookups, getattrs, readdirs and creates (their
// Lease field): while it holds one it answers from its cache, and lets the
// kernel cache, the attributes of an inode and, for a directory, the names
// in it. Before a change to them commits, the MDS that owns the inode calls
// every other holder back (a Revoke in the reply to its poll) and waits for
// the holder to acknowledge it (in its next poll) or for its leases to run
// out, whichever is first; a holder that runs out is evicted.
//
// A lease lasts as long as the session keeps polling: all the leases a
// session holds at an MDS are good until Term after the sending of the last
// poll the MDS answered. The MDS owns the MDTs the reply lists; leases on
// inodes of other MDTs (by the MDT bits of the inode number) are not
// renewed by it. When an MDT changes owner (a restart, a takeover), the
// client drops every lease on it and says so to the new owner (Reset), which
// until then, or until Term has passed, waits before any change on the MDT.

// LeaseWaitReq polls for callbacks. Acks lists the Revoke ids handled since
// the last poll; Reset the MDTs on which the client dropped all its leases.
// Wait bounds how long the MDS holds the poll when it has nothing to say.
type LeaseWaitReq struct {
	Session    uint64   `msgpack:"S"`
	Acks       []uint64 `msgpack:"a,omitempty"`
	Reset      []uint32 `msgpack:"r,omitempty"`
	WaitMillis uint32   `msgpack:"w"`
}

// LeaseWaitResp answers a poll: callbacks to honour, the lease term, and
// the MDTs whose leases this reply renews.
type LeaseWaitResp struct {
	Revokes   []Revoke `msgpack:"v,omitempty"`
	TermMilli uint32   `msgpack:"t"`
	MDTs      []uint32 `msgpack:"m"`
}

// Revoke calls a lease back: the attributes of Ino and, for a directory,
// the names listed (or every name, with AllNames). The client stops using
// them before it acknowledges ID.
type Revoke struct {
	ID       uint64   `msgpack:"i"`
	Ino      uint64   `msgpack:"n"`
	Names    []string `msgpack:"N,omitempty"`
	AllNames bool     `msgpack:"A,omitempty"`
}

// LeaseBreakReq asks the MDS owning the inodes to call back their leases
// for a change another MDS is about to commit, and to grant none on them
// until Release names Token again (or HoldMillis passes). Except is the
// changing client's session; its leases on Keep stay.
type LeaseBreakReq struct {
	Token      uint64      `msgpack:"T"`
	Release    bool        `msgpack:"R,omitempty"`
	Inos       []uint64    `msgpack:"i,omitempty"`
	Names      []LeaseName `msgpack:"n,omitempty"`
	Except     uint64      `msgpack:"e,omitempty"`
	Keep       []uint64    `msgpack:"k,omitempty"`
	HoldMillis uint32      `msgpack:"h,omitempty"`
}

// LeaseName is a name in a directory that a change adds or removes.
type LeaseName struct {
	Dir  uint64 `msgpack:"d"`
	Name string `msgpack:"n"`
}
