package proto

import "github.com/stratafs/strata/layout"

// FsckReq asks the MDS for the next page of a filesystem check (strata
// fsck, Lustre's LFSCK). The first request of a run has Run 0 and names the
// checks to run (Checkers, empty for all of them) and whether to repair;
// the MDS answers with the run's id, which every later request carries
// until a reply says Done, with Page, the number of replies it has had.
// Each reply covers a bounded piece of work, so no request runs long while
// the filesystem stays in use; a request resent because its reply was lost
// (Page one short) gets that reply again rather than the next page.
type FsckReq struct {
	Run      uint64   `msgpack:"r,omitempty"`
	Page     uint64   `msgpack:"p,omitempty"`
	Repair   bool     `msgpack:"R,omitempty"`
	Checkers []string `msgpack:"c,omitempty"`
}

// FsckResp is one page of a check: the findings made during it, the
// checker it ran and the running count of items each checker has looked
// at. Done says the run is over (and forgotten by the MDS).
type FsckResp struct {
	Run      uint64            `msgpack:"r"`
	Checker  string            `msgpack:"k"`
	Findings []FsckFinding     `msgpack:"f,omitempty"`
	Checked  map[string]uint64 `msgpack:"c"`
	Done     bool              `msgpack:"d"`
	// Checkers lists the run's checks in the order they run.
	Checkers []string `msgpack:"C,omitempty"`
	// Notes say what the page could not check (an OST that did not
	// answer), so that a clean result is not taken for a complete one.
	Notes []string `msgpack:"n,omitempty"`
}

// FsckFinding is one inconsistency a checker found: its class (the
// checker's name), the inode and, for an object problem, the object
// concerned, what is wrong, and whether the run repaired it (and how).
type FsckFinding struct {
	Class    string  `msgpack:"k"`
	Ino      uint64  `msgpack:"i,omitempty"`
	Object   *ObjRef `msgpack:"o,omitempty"`
	Problem  string  `msgpack:"p"`
	Repaired bool    `msgpack:"R,omitempty"`
	Action   string  `msgpack:"a,omitempty"` // what the repair did
}

// OSTListReq lists the objects of one OST for fsck, in pages: the objects
// after After in the OST's own order (fan-out directory, then inode, then
// sequence; the zero After starts at the beginning), at most Limit of them.
// With IDs set it reports just those objects instead, present or not, so
// the MDS can look again at the few a page made suspect. Cap is a
// capability the MDS signed for inode 0, which no file has: it lets its
// holder list any object but read or write none.
type OSTListReq struct {
	Cap   Capability        `msgpack:"c"`
	OST   uint32            `msgpack:"o"`
	After layout.ObjectID   `msgpack:"a"`
	Limit int               `msgpack:"l,omitempty"`
	IDs   []layout.ObjectID `msgpack:"I,omitempty"`
}

// OSTListResp is one page of an OST listing; More says there are objects
// after the last one.
type OSTListResp struct {
	Objects []ObjInfo `msgpack:"o"`
	More    bool      `msgpack:"m,omitempty"`
}

// ObjInfo is what an OST knows of one object: the owner stripe recorded
// at its creation (Owned false if the file system kept no owner), size and
// modification time, whether its file exists, and whether the OST
// remembers destroying it (a tombstone: its file, if any, is a leftover a
// crash brought back and no request will use).
type ObjInfo struct {
	ID        layout.ObjectID `msgpack:"i"`
	Stripe    uint32          `msgpack:"s,omitempty"`
	Owned     bool            `msgpack:"w,omitempty"`
	Size      int64           `msgpack:"z,omitempty"`
	Mtime     int64           `msgpack:"t,omitempty"` // unix nanoseconds
	Exists    bool            `msgpack:"e,omitempty"`
	Destroyed bool            `msgpack:"d,omitempty"`
}

// FsckIno is the inode number an OST listing capability names: no file
// has it, so such a capability opens no object.
const FsckIno uint64 = 0
