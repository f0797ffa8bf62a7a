package proto

// Find (strata find, lfs find). The MDS runs the search over its records: a
// depth-first walk of the subtree's directory entries and inodes in the
// store, a bounded page per request, so a search of millions of entries
// costs a request per page rather than one per entry. The walk's position
// travels with the requests (FindReq.Stack), so no MDS keeps state for it
// and any MDS owning the directory at the top of the stack may continue
// it. A subdirectory on an MDT the MDS does not serve is handed back
// (FindResp.Remote) for the client to search at its owner.

// FindCmp is one numeric test of lfs find: the value, rounded up to Unit
// (sizes, stripe sizes, stripe counts) or down to it (ages), compared with
// N: Sign +1 greater, -1 less, 0 equal. Set false means no test.
type FindCmp struct {
	Set  bool   `msgpack:"s,omitempty" json:"set,omitempty"`
	Sign int8   `msgpack:"g,omitempty" json:"sign,omitempty"`
	N    uint64 `msgpack:"n,omitempty" json:"n,omitempty"`
	Unit uint64 `msgpack:"u,omitempty" json:"unit,omitempty"`
}

// FindFilter is what an entry must satisfy to be reported; the zero
// filter matches everything. Layout tests (StripeCount, StripeSize, OSTs,
// Pool, Layout) match regular files by their layout and directories by
// their default layout, if they have one; anything else never matches
// them.
type FindFilter struct {
	// Type is the S_IFMT bits the entry must have (0: any).
	Type uint32 `msgpack:"t,omitempty" json:"type,omitempty"`
	// Name is a shell pattern the entry's name must match (find -name).
	Name string `msgpack:"n,omitempty" json:"name,omitempty"`
	// Uid, with HasUid, is the owner the entry must have.
	HasUid bool   `msgpack:"U,omitempty" json:"has_uid,omitempty"`
	Uid    uint32 `msgpack:"u,omitempty" json:"uid,omitempty"`
	// Size tests the size in bytes (Unit 1 if unset).
	Size FindCmp `msgpack:"z,omitempty" json:"size,omitempty"`
	// Mtime tests the age of the modification time, in seconds, against
	// Now (the find's start, unix seconds): lfs find --mtime.
	Mtime FindCmp `msgpack:"m,omitempty" json:"mtime,omitempty"`
	Now   int64   `msgpack:"w,omitempty" json:"now,omitempty"`
	// StripeCount and StripeSize test any component of the layout.
	StripeCount FindCmp `msgpack:"c,omitempty" json:"stripe_count,omitempty"`
	StripeSize  FindCmp `msgpack:"S,omitempty" json:"stripe_size,omitempty"`
	// OSTs, if any, are OST indices one of which must hold an object of
	// the file.
	OSTs []uint32 `msgpack:"o,omitempty" json:"osts,omitempty"`
	// Pool, with HasPool, is the pool a component must name.
	HasPool bool   `msgpack:"P,omitempty" json:"has_pool,omitempty"`
	Pool    string `msgpack:"p,omitempty" json:"pool,omitempty"`
	// Layout is "raid0" (a file with objects, or a directory default) or
	// "released" (an HSM-released file, its objects freed); "" any.
	Layout string `msgpack:"L,omitempty" json:"layout,omitempty"`
	// MaxDepth bounds the depth of entries reported and searched (the
	// start is depth 0); negative means no bound.
	MaxDepth int32 `msgpack:"d" json:"maxdepth"`
}

// FindFrame is a directory of the walk: its inode, its path relative to
// the start ("" for the start itself), the depth of its entries, and the
// last entry name done ("" for none yet).
type FindFrame struct {
	Dir   uint64 `msgpack:"i"`
	Path  string `msgpack:"p"`
	Depth int32  `msgpack:"d"`
	After string `msgpack:"a,omitempty"`
}

// FindReq asks for the next page of a search. The first request names the
// start (Start, which may be a file) and no Stack; later ones carry the
// Stack the previous page returned, whose last frame is on an MDT the
// receiving MDS serves. Limit bounds the entries reported per page.
// Find is read-only: it carries no ReqTag, and a resend walks again.
type FindReq struct {
	Cred  Cred   `msgpack:"c"`
	Start uint64 `msgpack:"s,omitempty"`
	// StartName is the start's own name, for the Name test of the start.
	StartName string      `msgpack:"n,omitempty"`
	Stack     []FindFrame `msgpack:"k,omitempty"`
	Filter    FindFilter  `msgpack:"f"`
	Limit     int         `msgpack:"l,omitempty"`
}

// FindEntry is one entry that matched: its path relative to the start and
// its attributes.
type FindEntry struct {
	Path string `msgpack:"p" json:"path"`
	Attr Attr   `msgpack:"a" json:"attr"`
}

// FindError is a directory the walk could not search (the caller lacks
// read or search permission: EACCES), as find reports and goes on.
type FindError struct {
	Path  string `msgpack:"p" json:"path"`
	Errno int32  `msgpack:"e" json:"errno"`
}

// FindResp is one page: the matches found, the directories that could not
// be searched, the subdirectories on other MDTs (each to be searched with
// a request of its own, a Stack of that one frame), and where to go on
// (an empty Stack: this part of the walk is done).
type FindResp struct {
	Entries []FindEntry `msgpack:"e,omitempty"`
	Errors  []FindError `msgpack:"E,omitempty"`
	Remote  []FindFrame `msgpack:"r,omitempty"`
	Stack   []FindFrame `msgpack:"k,omitempty"`
	// Scanned counts the entries the page looked at.
	Scanned int `msgpack:"n,omitempty"`
}
