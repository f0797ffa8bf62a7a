package proto

import "github.com/stratafs/strata/layout"

// Migrate (strata migrate, lfs migrate) restripes a file online, keeping
// its inode number. The migrating client drives it through the MDS that
// owns the file, one phase per request:
//
//   - start: the MDS allocates the new layout (the next generation) and
//     records the migration; the reply has both layouts and a capability
//     of the new generation, which reads the old objects and writes the
//     new ones. The client copies the data (pass 1) while the file stays in
//     use.
//   - freeze: the MDS holds capability refreshes and truncates of the file
//     until commit or abort (or the freeze's deadline); the client fences
//     the old objects (OpObjFence: they take the new generation, so I/O of
//     the old one gets ESTALE, and refreshes wait), then copies what
//     changed since pass 1 (pass 2) and renews the freeze while it works.
//   - commit: the layout is swapped in one transaction if it is still the
//     one the migration started from; the old objects are queued for
//     destruction and every waiting refresh gets the new layout.
//   - abort: the new objects are queued for destruction; a frozen file
//     keeps its old objects under the new generation.
const (
	MigrateStart  = "start"
	MigrateFreeze = "freeze"
	MigrateRenew  = "renew"
	MigrateCommit = "commit"
	MigrateAbort  = "abort"
)

// MigrateReq is one phase of a migration of Ino. Spec (start) gives the new
// layout's fields; those it leaves unset keep the file's (an empty Spec
// keeps the whole shape and only moves the objects). Gen names the
// migration in later phases: the new layout's generation. Written (commit)
// marks the new layout's objects the copy wrote, one bit per object in
// layout order (see CloseReq.Written).
type MigrateReq struct {
	Cred    Cred        `msgpack:"C"`
	Ino     uint64      `msgpack:"i"`
	Phase   string      `msgpack:"p"`
	Spec    layout.Spec `msgpack:"s,omitempty"`
	Gen     uint32      `msgpack:"g,omitempty"`
	Written []byte      `msgpack:"w,omitempty"`
	Tag     ReqTag      `msgpack:"R,omitempty"`
}

// SetTag tags the request.
func (r *MigrateReq) SetTag(t ReqTag) { r.Tag = t }

// MigrateResp answers a phase: the layouts (start, freeze), a capability
// for the copy (start, freeze: of the new generation, at the file's
// current truncate epoch), the file's size at the MDS, and at freeze
// whether its data version moved since start (writers reported writes).
type MigrateResp struct {
	Old     layout.Layout `msgpack:"o"`
	New     layout.Layout `msgpack:"n"`
	Cap     Capability    `msgpack:"c"`
	Size    uint64        `msgpack:"s"`
	Changed bool          `msgpack:"x,omitempty"`
	// FreezeMillis is how long a freeze lasts unless renewed.
	FreezeMillis int64 `msgpack:"f,omitempty"`
}

// ObjFenceReq gives an object the capability's layout generation if it is
// older (creating the object if missing), durably, after every request
// already using the object has finished: from then on I/O with an older
// generation gets ESTALE.
type ObjFenceReq struct {
	Cap Capability `msgpack:"c"`
	Obj ObjRef     `msgpack:"o"`
}
