package proto

import "github.com/stratafs/strata/layout"

// HSM: the states and actions of Lustre's hierarchical storage management.
// A file's HSM flags and its current or last action live at the MDS that
// owns it; the action queue (the coordinator's) lives in the store, so it
// outlives any MDS. Copytools (agents) register, claim queued actions from
// the MDS that owns MDT0, fetch what an action needs from the MDS that owns
// the file (OpHsmStart), report progress and complete it there.

// HSM opcodes, MDS range.
const (
	OpHsmState    uint16 = 136 // HsmStateReq -> HsmStateResp
	OpHsmRequest  uint16 = 137 // HsmRequestReq -> HsmRequestResp (archive, restore, release, remove, cancel, set flags; waits)
	OpHsmImport   uint16 = 138 // HsmImportReq -> EntryResp (a released stub for an object already in the archive)
	OpHsmScan     uint16 = 139 // HsmScanReq -> HsmScanResp (policy candidates from inode records, in pages)
	OpHsmRegister uint16 = 184 // HsmRegisterReq -> HsmRegisterResp (an agent, to MDT0's MDS)
	OpHsmClaim    uint16 = 185 // HsmClaimReq -> HsmClaimResp (queued actions, to MDT0's MDS)
	OpHsmStart    uint16 = 186 // HsmStartReq -> HsmWork (what a claimed action needs, to the file's MDS)
	OpHsmProgress uint16 = 187 // HsmProgressReq -> HsmProgressResp
	OpHsmComplete uint16 = 188 // HsmCompleteReq -> Empty
	OpHsmList     uint16 = 189 // HsmListReq -> HsmListResp (the queue and the agents)
)

// HSM state flags, Lustre's values (hsm_states), so that `hsm state` prints
// the same hexadecimal a Lustre site knows.
const (
	HsmExists    uint32 = 0x01 // the file has (or had) an archive copy requested
	HsmDirty     uint32 = 0x02 // the data changed since it was archived
	HsmReleased  uint32 = 0x04 // the OST objects are freed; data only in the archive
	HsmArchived  uint32 = 0x08 // an archive copy exists
	HsmNoRelease uint32 = 0x10 // never release
	HsmNoArchive uint32 = 0x20 // never archive
	HsmLost      uint32 = 0x40 // the archive copy is lost
)

// HsmUserFlags are the flags `hsm set` and `hsm clear` may change.
const HsmUserFlags = HsmNoRelease | HsmNoArchive | HsmLost | HsmDirty | HsmExists | HsmArchived

// hsmFlagNames lists the flags in Lustre's printing order.
var hsmFlagNames = []struct {
	flag uint32
	name string
}{
	{HsmReleased, "released"}, {HsmExists, "exists"}, {HsmDirty, "dirty"}, {HsmArchived, "archived"},
	{HsmNoRelease, "never_release"}, {HsmNoArchive, "never_archive"}, {HsmLost, "lost_from_hsm"},
}

// HsmFlagNames returns the names of the flags set, in Lustre's order
// ("released exists archived").
func HsmFlagNames(flags uint32) []string {
	out := []string{}
	for _, f := range hsmFlagNames {
		if flags&f.flag != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// HSM actions, Lustre's values (hsm_copytool_action).
const (
	HsmNone    uint8 = 10
	HsmArchive uint8 = 20
	HsmRestore uint8 = 21
	HsmRemove  uint8 = 22
	HsmCancel  uint8 = 23
	// HsmRelease and HsmSetFlags are requests the MDS carries out itself,
	// never queued for an agent.
	HsmRelease  uint8 = 30
	HsmSetFlags uint8 = 31
	// HsmWait only waits for the action of Seq to finish.
	HsmWait uint8 = 32
	// HsmAccess records that a reader opened the file: its atime moves
	// to now if it is older than HsmAccessGrain (least recently used
	// first, for release policies; reads bypass the MDS).
	HsmAccess uint8 = 33
)

// HsmAccessGrain is how coarsely access times are recorded.
const HsmAccessGrain = 3600 // seconds

// HsmActionName names an action as `hsm action` prints it.
func HsmActionName(kind uint8) string {
	switch kind {
	case HsmArchive:
		return "ARCHIVE"
	case HsmRestore:
		return "RESTORE"
	case HsmRemove:
		return "REMOVE"
	case HsmCancel:
		return "CANCEL"
	case HsmRelease:
		return "RELEASE"
	}
	return "NOOP"
}

// Action statuses.
const (
	HsmWaiting uint8 = 1
	HsmRunning uint8 = 2
	HsmDone    uint8 = 3
	HsmFailed  uint8 = 4
)

// HsmStatusName names a status as `hsm action --json` prints it.
func HsmStatusName(status uint8) string {
	switch status {
	case HsmWaiting:
		return "waiting"
	case HsmRunning:
		return "running"
	case HsmFailed:
		return "failed"
	}
	return "done"
}

// HsmWaitSlice is how long the MDS holds a request waiting for an action to
// finish before answering EAGAIN; the client asks again until the action is
// done or its caller is interrupted (checked between slices, as for locks).
const HsmWaitSlice = 2000 // milliseconds

// AttrFlagReleased marks (in Attr.Flags) a file whose data is released to
// the archive: stat shows it without a restore.
const AttrFlagReleased uint32 = 1 << 2

// HsmAction is an action on one file: the one queued or running, or the
// last one finished.
type HsmAction struct {
	Ino       uint64 `msgpack:"i"`
	Seq       uint64 `msgpack:"q"` // counts the actions queued for the file
	Kind      uint8  `msgpack:"k"`
	Status    uint8  `msgpack:"s"`
	ArchiveID uint32 `msgpack:"a,omitempty"`
	Bytes     uint64 `msgpack:"b,omitempty"` // moved so far
	Agent     uint64 `msgpack:"g,omitempty"`
	Error     string `msgpack:"e,omitempty"`
	Queued    int64  `msgpack:"t,omitempty"` // unix nanoseconds
}

// HsmState is a file's HSM state.
type HsmState struct {
	Ino       uint64 `msgpack:"i"`
	Flags     uint32 `msgpack:"f"`
	ArchiveID uint32 `msgpack:"a,omitempty"`
	// Version is the data version the archive copy holds; DataVersion the
	// file's now.
	Version     uint64 `msgpack:"v,omitempty"`
	DataVersion uint64 `msgpack:"d,omitempty"`
	// Action is the action queued or running, else the last finished
	// (Kind HsmNone if there never was one).
	Action HsmAction `msgpack:"A"`
}

// HsmStateReq reads a file's HSM state.
type HsmStateReq struct {
	Ino uint64 `msgpack:"i"`
}

// HsmStateResp carries a file's HSM state.
type HsmStateResp struct {
	State HsmState `msgpack:"s"`
}

// HsmRequestReq asks for an HSM action on a file: queue an archive, restore
// or remove for an agent, cancel the action queued, release the file's
// objects (done at once), or set and clear flags. With Wait the MDS holds
// the request up to HsmWaitSlice for the action (Seq, or the one this
// request queued) to finish and answers EAGAIN if it has not.
type HsmRequestReq struct {
	Cred      Cred   `msgpack:"C"`
	Ino       uint64 `msgpack:"i"`
	Action    uint8  `msgpack:"k"`
	ArchiveID uint32 `msgpack:"a,omitempty"`
	Set       uint32 `msgpack:"s,omitempty"` // HsmSetFlags
	Clear     uint32 `msgpack:"c,omitempty"`
	Wait      bool   `msgpack:"w,omitempty"`
	Seq       uint64 `msgpack:"q,omitempty"` // the action waited for
}

// HsmRequestResp is the state after a request; Seq names the action it
// queued or found (0 for none), Done says that action has finished (its
// outcome is State.Action).
type HsmRequestResp struct {
	State HsmState `msgpack:"s"`
	Seq   uint64   `msgpack:"q,omitempty"`
	Done  bool     `msgpack:"d,omitempty"`
}

// HsmImportReq creates, in directory Parent, a released stub of an object
// that is already in archive ArchiveID under Key: size and mtime from the
// object, ETag its identity (a restore refuses an object that changed).
type HsmImportReq struct {
	Cred      Cred   `msgpack:"C"`
	Parent    uint64 `msgpack:"p"`
	Name      string `msgpack:"n"`
	Mode      uint32 `msgpack:"m"`
	Umask     uint32 `msgpack:"u"`
	Size      uint64 `msgpack:"s"`
	Mtime     int64  `msgpack:"M"`
	ArchiveID uint32 `msgpack:"a"`
	Key       string `msgpack:"k"`
	ETag      string `msgpack:"e,omitempty"`
	Tag       ReqTag `msgpack:"R,omitempty"`
}

// SetTag tags the request.
func (r *HsmImportReq) SetTag(t ReqTag) { r.Tag = t }

// HsmScanReq asks the MDS serving MDT for the regular files of that MDT
// after inode After, at most Limit: the candidates of HSM policies.
type HsmScanReq struct {
	MDT   uint32 `msgpack:"m"`
	After uint64 `msgpack:"a"`
	Limit int    `msgpack:"l"`
}

// HsmFile is a regular file as policies see it.
type HsmFile struct {
	Ino       uint64   `msgpack:"i"`
	Size      uint64   `msgpack:"s"`
	Atime     int64    `msgpack:"a"`
	Mtime     int64    `msgpack:"M"`
	Flags     uint32   `msgpack:"f,omitempty"`
	ArchiveID uint32   `msgpack:"A,omitempty"`
	Busy      bool     `msgpack:"b,omitempty"` // an action is queued or running
	OSTs      []uint32 `msgpack:"o,omitempty"`
}

// HsmScanResp is one page of a scan; Done when the MDT has no more.
type HsmScanResp struct {
	Files []HsmFile `msgpack:"f"`
	Next  uint64    `msgpack:"n"`
	Done  bool      `msgpack:"d"`
}

// HsmRegisterReq registers a copytool. Name is stable across its restarts
// (host and backend): registering again under a name hands the actions the
// previous run left running back to the queue at once.
type HsmRegisterReq struct {
	Name     string   `msgpack:"n"`
	Archives []uint32 `msgpack:"a"`
}

// HsmRegisterResp names the agent for its claims.
type HsmRegisterResp struct {
	Agent uint64 `msgpack:"g"`
}

// HsmClaimReq takes up to Max queued actions for the agent's archives,
// restores first. With none queued the MDS holds the request up to
// HsmWaitSlice for one to come.
type HsmClaimReq struct {
	Agent    uint64   `msgpack:"g"`
	Archives []uint32 `msgpack:"a"`
	Max      int      `msgpack:"m"`
	Tag      ReqTag   `msgpack:"R,omitempty"`
}

// SetTag tags the request.
func (r *HsmClaimReq) SetTag(t ReqTag) { r.Tag = t }

// HsmClaimResp lists the actions claimed: each runs under Attempt, which
// every later request about it names.
type HsmClaimResp struct {
	Actions []HsmClaim `msgpack:"a"`
}

// HsmClaim is one claimed action.
type HsmClaim struct {
	Ino     uint64 `msgpack:"i"`
	Seq     uint64 `msgpack:"q"`
	Attempt uint32 `msgpack:"t"`
	Kind    uint8  `msgpack:"k"`
}

// HsmStartReq asks the MDS owning a file for what a claimed action needs.
type HsmStartReq struct {
	Ino     uint64 `msgpack:"i"`
	Seq     uint64 `msgpack:"q"`
	Attempt uint32 `msgpack:"t"`
}

// HsmWork is what an agent needs to carry an action out. Archive: Layout
// is the file's, Cap reads it, DataVersion is the version copied. Restore:
// Layout is a new one of the file's shape, Cap writes it, Checksum and ETag
// are what the archive copy must match. Key names the archive object ("":
// the default for the file).
type HsmWork struct {
	Ino         uint64        `msgpack:"i"`
	Seq         uint64        `msgpack:"q"`
	Attempt     uint32        `msgpack:"t"`
	Kind        uint8         `msgpack:"k"`
	ArchiveID   uint32        `msgpack:"a"`
	FSName      string        `msgpack:"f"`
	Size        uint64        `msgpack:"s"`
	DataVersion uint64        `msgpack:"v"`
	Layout      layout.Layout `msgpack:"l"`
	Cap         Capability    `msgpack:"c"`
	Key         string        `msgpack:"K,omitempty"`
	Checksum    string        `msgpack:"x,omitempty"`
	ETag        string        `msgpack:"e,omitempty"`
	Imported    bool          `msgpack:"I,omitempty"`
}

// HsmProgressReq reports bytes moved for an action (and that its agent is
// alive).
type HsmProgressReq struct {
	Ino     uint64 `msgpack:"i"`
	Seq     uint64 `msgpack:"q"`
	Attempt uint32 `msgpack:"t"`
	Bytes   uint64 `msgpack:"b"`
}

// HsmProgressResp says whether the action was cancelled: the agent stops
// and completes it with ECANCELED.
type HsmProgressResp struct {
	Cancel bool `msgpack:"c,omitempty"`
}

// HsmCompleteReq ends an action: Errno 0 for success (with the archive
// copy's Checksum and Key for an archive), else the failure.
type HsmCompleteReq struct {
	Ino      uint64 `msgpack:"i"`
	Seq      uint64 `msgpack:"q"`
	Attempt  uint32 `msgpack:"t"`
	Errno    int32  `msgpack:"n,omitempty"`
	Error    string `msgpack:"e,omitempty"`
	Bytes    uint64 `msgpack:"b,omitempty"`
	Checksum string `msgpack:"x,omitempty"`
	Key      string `msgpack:"K,omitempty"`
	Tag      ReqTag `msgpack:"R,omitempty"`
}

// SetTag tags the request.
func (r *HsmCompleteReq) SetTag(t ReqTag) { r.Tag = t }

// HsmListReq asks for the queue and the registered agents.
type HsmListReq struct{}

// HsmAgent is a registered copytool.
type HsmAgent struct {
	ID       uint64   `msgpack:"g"`
	Name     string   `msgpack:"n"`
	Archives []uint32 `msgpack:"a"`
}

// HsmListResp lists the actions queued or running and the agents.
type HsmListResp struct {
	Actions []HsmAction `msgpack:"a"`
	Agents  []HsmAgent  `msgpack:"g"`
}
