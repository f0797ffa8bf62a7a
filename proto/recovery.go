package proto

// Recovery. A client resends a request whose reply it did not get (a broken
// connection, a restarted or moved MDS) with the same ReqTag, and the MDS
// answers a request it already committed with the reply it recorded then
// (Lustre's last_rcvd), never a second execution: a resent create does not
// fail with EEXIST, nor a resent unlink with ENOENT.
//
// A client keeps up to ReplySlots modifying requests in flight; each takes
// a free slot, and its ID grows with every request through the slot. The
// MDS keeps one reply per (session, slot), overwritten by the next request
// through the slot, so reply records need no garbage collection.

// ReplySlots is how many modifying requests a client keeps in flight.
const ReplySlots = 64

// ReqTag names one modifying request of a client. The zero tag (Session 0)
// asks for no reply record: tools and tests that never resend use it.
type ReqTag struct {
	Session uint64 `msgpack:"s"`
	Slot    uint16 `msgpack:"l"`
	ID      uint64 `msgpack:"i"`
}

// IsZero reports whether t asks for no reply record.
func (t ReqTag) IsZero() bool { return t.Session == 0 }

// RecoveredReq tells the MDS that a client has replayed everything it held
// (opens and locks) after a restart or takeover: once every client known
// from before has, or the recovery window has passed, new conflicting
// locks are granted again.
type RecoveredReq struct {
	Session uint64 `msgpack:"s"`
}

// SetTag implements the client's tagging of modifying requests.
func (r *CreateReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *MkdirReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *MknodReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *SymlinkReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *LinkReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *UnlinkReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *RmdirReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *RenameReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *SetattrReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *OpenReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *CloseReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *AppendReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *SetxattrReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *RemovexattrReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *SetLayoutReq) SetTag(t ReqTag) { r.Tag = t }

// SetTag tags the request.
func (r *SetConsistencyReq) SetTag(t ReqTag) { r.Tag = t }

// HandOffReq asks the MDS that owns an MDT to give it up (a planned move,
// for an upgrade): another MDS takes it over within a third of a lease.
type HandOffReq struct {
	MDT uint32 `msgpack:"m"`
}

// MDTTableReq asks any MDS for the MDT table as the store holds it.
type MDTTableReq struct{}

// MDTTableResp is the MDT table: who serves each MDT.
type MDTTableResp struct {
	MDTs []MDT `msgpack:"m"`
}

// EvictReq ends a client's session on the MDS that receives it (its locks
// released, its opens closed) and deletes it from the store, so no other
// MDS resumes it. Session 0 with ClientID names the client by its id.
type EvictReq struct {
	Session  uint64 `msgpack:"s"`
	ClientID string `msgpack:"c,omitempty"`
}

// EvictResp says how many sessions were evicted.
type EvictResp struct {
	Evicted int `msgpack:"n"`
}

// AbortRecoveryReq closes an MDS's recovery window at once: the clients
// that have not come back are evicted.
type AbortRecoveryReq struct{}
