package fuse

import (
	"encoding/json"
	"strings"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/proto"
)

// HSM through the mount: `strata hsm` (and `lfs hsm_*`) work on mounted
// paths as lfs does through ioctls, with the caller's credentials, which
// the MDS checks.
const (
	// xattrHsm reads as the JSON of proto.HsmState; writing the JSON of
	// an HsmRequest asks for an action (with Wait, the write returns when
	// it finished, or EINTR when the caller is interrupted).
	xattrHsm = "user.strata.hsm"
	// xattrHsmImport, written on a directory with the JSON of a
	// proto.HsmImportReq (Parent and Cred are filled in), creates a
	// released stub of an archived object in it.
	xattrHsmImport = "user.strata.hsm.import"
	// xattrHsmList reads as the JSON of proto.HsmListResp: the
	// coordinator's queue and agents.
	xattrHsmList = "user.strata.hsm.list"
)

// HsmRequest is the value written to user.strata.hsm.
type HsmRequest struct {
	Action    uint8  `json:"action"` // proto.HsmArchive...
	ArchiveID uint32 `json:"archive_id,omitempty"`
	Set       uint32 `json:"set,omitempty"`
	Clear     uint32 `json:"clear,omitempty"`
	Wait      bool   `json:"wait,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
}

// isHsmXattr reports whether name is one of the HSM virtual attributes.
func isHsmXattr(name string) bool { return strings.HasPrefix(name, xattrHsm) }

// getHsmXattr reads an HSM virtual attribute.
func (fs *fileSystem) getHsmXattr(cancel <-chan struct{}, ino uint64, name string) ([]byte, error) {
	var v any
	switch name {
	case xattrHsm:
		st, err := fs.c.HsmState(fs.ctx(cancel), ino)
		if err != nil {
			return nil, err
		}
		v = st
	case xattrHsmList:
		l, err := fs.c.HsmList(fs.ctx(cancel))
		if err != nil {
			return nil, err
		}
		v = l
	default:
		return nil, syscall.ENODATA
	}
	return json.Marshal(v)
}

// setHsmXattr writes an HSM virtual attribute.
func (fs *fileSystem) setHsmXattr(cancel <-chan struct{}, h *gofuse.InHeader, ino uint64, name string, data []byte) gofuse.Status {
	cred := fs.cred(h)
	switch name {
	case xattrHsm:
		var r HsmRequest
		if err := json.Unmarshal(data, &r); err != nil {
			return gofuse.EINVAL
		}
		req := proto.HsmRequestReq{Ino: ino, Action: r.Action, ArchiveID: r.ArchiveID, Set: r.Set, Clear: r.Clear, Wait: r.Wait, Seq: r.Seq}
		_, err := fs.c.HsmRequest(fs.ctx(cancel), cred, req)
		return fs.status("hsm", err)
	case xattrHsmImport:
		var req proto.HsmImportReq
		if err := json.Unmarshal(data, &req); err != nil {
			return gofuse.EINVAL
		}
		req.Parent = ino
		_, err := fs.c.HsmImport(fs.ctx(cancel), cred, req)
		return fs.status("hsm import", err)
	}
	return gofuse.EPERM
}
