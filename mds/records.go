package mds

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// clusterRecord is the filesystem-wide record written at format.
type clusterRecord struct {
	FSName     string      `msgpack:"f"`
	Default    layout.Spec `msgpack:"d"` // filesystem default layout, resolved
	FormatTime int64       `msgpack:"t"` // unix nanoseconds
	NextOST    uint32      `msgpack:"o"` // smallest OST index never assigned
}

// mdtRecord is one metadata target and its owner (see ownership.go).
type mdtRecord struct {
	Index uint32 `msgpack:"i"`
	Addr  string `msgpack:"a"`           // address of the MDS serving it, "" if none yet
	Owner uint64 `msgpack:"o,omitempty"` // instance of the owning MDS; 0: none
	Epoch uint64 `msgpack:"e,omitempty"` // bumped at every change of owner
	Lease uint64 `msgpack:"l,omitempty"` // store timestamp the owner's lease runs to
}

// ostRecord is one registered object storage target, with its liveness:
// every heartbeat, which its OSS sends to any MDS, advances Beat and
// records the usage, so every MDS sees every OST alive (it watches Beat
// move on its own clock; no wall clock crosses hosts).
type ostRecord struct {
	Index      uint32            `msgpack:"i"`
	UUID       string            `msgpack:"U"`
	Addr       string            `msgpack:"a"`
	Pools      []string          `msgpack:"p,omitempty"`
	Registered int64             `msgpack:"r"` // unix nanoseconds of the first registration
	Beat       uint64            `msgpack:"b,omitempty"`
	Usage      proto.OSTAnnounce `msgpack:"u,omitempty"`
}

// dentry is a directory entry's value.
type dentry struct {
	Ino  uint64 `msgpack:"i"`
	Type uint32 `msgpack:"t"` // S_IFMT bits of the child
}

// inode is an inode record. Which fields count depends on the type.
type inode struct {
	Ino uint64 `msgpack:"-"` // from the key
	// partial marks a record read without its layout (mtx.inodeAttrs),
	// which must not be written back.
	partial bool

	Mode  uint32 `msgpack:"m"`
	Uid   uint32 `msgpack:"u"`
	Gid   uint32 `msgpack:"g"`
	Nlink uint32 `msgpack:"n"`
	Size  uint64 `msgpack:"s,omitempty"`
	Rdev  uint32 `msgpack:"r,omitempty"`
	Atime int64  `msgpack:"a"`
	Mtime int64  `msgpack:"M"`
	Ctime int64  `msgpack:"c"`
	// Flags are proto.AttrFlag* bits: a file's consistency mode, or the
	// mode a directory gives the files and directories created in it.
	Flags uint32 `msgpack:"F,omitempty"`
	// ACL is the POSIX access ACL; nil when the mode says it all (an ACL
	// of the three base entries is never stored).
	ACL acl `msgpack:"A,omitempty"`

	// Directories.
	Parent    uint64       `msgpack:"p,omitempty"` // for the rename subtree check and ".."
	DirLayout *layout.Spec `msgpack:"d,omitempty"` // default layout of new files
	DefACL    acl          `msgpack:"D,omitempty"` // default POSIX ACL of new entries

	// Regular files.
	Layout      *layout.Layout `msgpack:"l,omitempty"`
	NextObjSeq  uint32         `msgpack:"q,omitempty"` // next object sequence to hand out
	DataVersion uint64         `msgpack:"v,omitempty"`
	// TruncEpoch counts the truncates that cut objects; capabilities carry
	// it, objects remember the epoch that last cut them, and sizes reported
	// from an older epoch are not merged (see truncate.go).
	TruncEpoch uint64 `msgpack:"e,omitempty"`
	// Written marks the objects of Layout that writers reported writing,
	// one bit per object in layout order, so that fsck can tell an object
	// lost on its OST from a stripe never written (see written.go).
	Written []byte `msgpack:"w,omitempty"`

	// HSM is the file's HSM state (hsm.go); nil for a file never archived.
	HSM *hsmState `msgpack:"H,omitempty"`

	// Symbolic links.
	Target string `msgpack:"T,omitempty"`

	// Project is the project ID quotas count the inode under (quota.go);
	// ProjInherit, on a directory, gives it to the entries created in it.
	Project     uint32 `msgpack:"j,omitempty"`
	ProjInherit bool   `msgpack:"J,omitempty"`
}

// sessionRecord is a client session.
type sessionRecord struct {
	ClientID string `msgpack:"c"`
	Created  int64  `msgpack:"t"` // unix nanoseconds
	// Leases: the session polls for metadata lease callbacks, so it may
	// hold leases a new owner of an MDT must wait out (leaseTable.takeOver).
	Leases bool `msgpack:"L,omitempty"`
	// LeaseMark is the token of the last setting of Leases: clearing it
	// (unmarkLeasing) happens only if no MDS set it again since.
	LeaseMark uint64 `msgpack:"LM,omitempty"`
}

// handleRecord is a file open for writing.
type handleRecord struct {
	Session uint64 `msgpack:"s"`
	Ino     uint64 `msgpack:"i"`
	Flags   uint32 `msgpack:"f"`
	Uid     uint32 `msgpack:"u"`
	Rights  uint8  `msgpack:"r"`
}

// replyRecord is what a reply slot holds: the request id and opcode that
// last went through it and the reply it got (msgpack of the reply body).
type replyRecord struct {
	ID    uint64 `msgpack:"i"`
	Op    uint16 `msgpack:"o"`
	Reply []byte `msgpack:"r"`
}

// truncateRecord is a truncate in progress: the size it sets and the epoch
// its punches carry.
type truncateRecord struct {
	Size  uint64 `msgpack:"s"`
	Epoch uint64 `msgpack:"e"`
}

// orphanRecord marks a file whose last link went while it was open.
type orphanRecord struct {
	Since int64 `msgpack:"s"` // unix nanoseconds of the unlink
}

// destroyRecord is a batch of objects the OSTs must delete.
type destroyRecord struct {
	Objs   []proto.ObjRef `msgpack:"o"`
	Queued int64          `msgpack:"t"`
}

func (i *inode) isDir() bool     { return i.Mode&proto.ModeType == proto.ModeDir }
func (i *inode) isRegular() bool { return i.Mode&proto.ModeType == proto.ModeRegular }
func (i *inode) isSymlink() bool { return i.Mode&proto.ModeType == proto.ModeSymlink }

// attr converts the record to wire attributes.
func (i *inode) attr() proto.Attr {
	a := proto.Attr{
		Ino:         i.Ino,
		Mode:        i.Mode,
		Nlink:       i.Nlink,
		Uid:         i.Uid,
		Gid:         i.Gid,
		Rdev:        i.Rdev,
		Size:        i.Size,
		Blocks:      (i.Size + 511) / 512,
		Atime:       i.Atime,
		Mtime:       i.Mtime,
		Ctime:       i.Ctime,
		DataVersion: i.DataVersion,
		Flags:       i.Flags,
	}
	if i.released() {
		// The data is in the archive: nothing allocated on the OSTs.
		a.Flags |= proto.AttrFlagReleased
		a.Blocks = 0
	}
	return a
}

// objects lists every object of a file's layout, for the destroy queue.
func (i *inode) objects() []proto.ObjRef {
	if i.Layout == nil {
		return nil
	}
	return layoutObjects(i.Layout)
}

// layoutObjects lists the objects of a layout with their stripe numbers.
func layoutObjects(l *layout.Layout) []proto.ObjRef {
	var objs []proto.ObjRef
	for _, c := range l.Components {
		for s, o := range c.Objects {
			objs = append(objs, proto.ObjRef{OST: o.OST, ID: o.ID, Stripe: uint32(s)})
		}
	}
	return objs
}

func encode(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mds: encode %T: %w", v, err)
	}
	return b, nil
}

func decode(b []byte, v any) error {
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("mds: decode %T: %w", v, err)
	}
	return nil
}

// encodeU64 and decodeU64 are the codec of counter values and registry
// entries.
func encodeU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("mds: bad counter value of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
