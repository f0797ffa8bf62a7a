package fuse

import (
	"encoding/json"
	"strings"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Virtual extended attributes: the control channel that lets tools such as
// `strata getstripe` work on a mounted path without the cluster secret (see
// docs/internals.md). They never reach the MDS's xattr store and are hidden
// from listxattr.
const (
	// xattrLayout reads as the JSON of proto.GetLayoutResp; writing the
	// JSON of a layout.Spec sets the layout (setstripe); removing it
	// removes a directory's default.
	xattrLayout = "user.strata.layout"
	// xattrTargets reads as the JSON of proto.TargetsResp on any inode.
	xattrTargets = "user.strata.targets"
	// xattrConsistency is the consistency mode, as plain text: "strict",
	// "close-to-open" or "" (inherited from the directory above). Setting
	// it on a directory sets the mode of the files created below it from
	// then on; removing it (or setting "") makes the directory inherit
	// again. It reads on any inode; a file's is "strict" or "".
	xattrConsistency = "user.strata.consistency"
	// xattrMkdir, written on a directory with the JSON of a MkdirRequest,
	// creates a subdirectory on a chosen MDT (strata mkdir -i). It is
	// write-only.
	xattrMkdir = "user.strata.mkdir"
	// reservedPrefix is the namespace of virtual attributes.
	reservedPrefix = "user.strata."
	// xattrCapability holds file capabilities, which Strata does not keep:
	// it reads as absent without asking the MDS, as the kernel asks for it
	// on writes, and cannot be set.
	xattrCapability = "security.capability"
)

// MkdirRequest is the value of the user.strata.mkdir virtual attribute.
type MkdirRequest struct {
	Name  string `json:"name"`
	Mode  uint32 `json:"mode"`
	Umask uint32 `json:"umask"`
	MDT   int32  `json:"mdt"` // -1: the MDS chooses
}

// virtualXattr returns the value of a virtual attribute; ok is false for a
// name that is not one.
func (fs *fileSystem) virtualXattr(cancel <-chan struct{}, ino uint64, name string) (value []byte, ok bool, err error) {
	var v any
	switch name {
	case xattrLayout:
		resp, err := fs.c.GetLayout(fs.ctx(cancel), ino)
		if err != nil {
			return nil, true, err
		}
		v = resp
	case xattrTargets:
		resp, err := fs.c.Targets(fs.ctx(cancel))
		if err != nil {
			return nil, true, err
		}
		v = resp
	case xattrConsistency:
		a, err := fs.c.Getattr(fs.ctx(cancel), ino)
		if err != nil {
			return nil, true, err
		}
		return []byte(client.ConsistencyOf(&a)), true, nil
	case xattrCapability, xattrMkdir:
		return nil, true, syscall.ENODATA
	default:
		return nil, false, nil
	}
	b, err := json.Marshal(v)
	return b, true, err
}

// GetXAttr reads an extended attribute; with a buffer too small it returns
// ERANGE and the size needed.
func (fs *fileSystem) GetXAttr(cancel <-chan struct{}, h *gofuse.InHeader, name string, dest []byte) (uint32, gofuse.Status) {
	ino := fs.ino(h.NodeId)
	value, virtual, err := fs.virtualXattr(cancel, ino, name)
	if isHsmXattr(name) {
		virtual = true
		value, err = fs.getHsmXattr(cancel, ino, name)
	}
	if isFindXattr(name) {
		virtual = true
		value, err = fs.getFindXattr(cancel, h, name)
	}
	if name == xattrMigrate {
		virtual = true
		value, err = fs.getMigrateXattr(ino)
	}
	if isQuotaXattr(name) {
		virtual = true
		value, err = fs.getQuotaXattr(cancel, h, ino, name)
	}
	if !virtual {
		value, err = fs.c.Getxattr(fs.ctx(cancel), fs.cred(h), ino, name)
	}
	if err != nil {
		return 0, fs.status("getxattr", err)
	}
	if len(dest) < len(value) {
		return uint32(len(value)), gofuse.ERANGE
	}
	return uint32(copy(dest, value)), gofuse.OK
}

// ListXAttr lists extended attribute names, without the virtual ones.
func (fs *fileSystem) ListXAttr(cancel <-chan struct{}, h *gofuse.InHeader, dest []byte) (uint32, gofuse.Status) {
	names, err := fs.c.Listxattr(fs.ctx(cancel), fs.cred(h), fs.ino(h.NodeId))
	if err != nil {
		return 0, fs.status("listxattr", err)
	}
	var buf []byte
	for _, n := range names {
		if strings.HasPrefix(n, reservedPrefix) {
			continue
		}
		buf = append(append(buf, n...), 0)
	}
	if len(dest) < len(buf) {
		return uint32(len(buf)), gofuse.ERANGE
	}
	return uint32(copy(dest, buf)), gofuse.OK
}

// SetXAttr writes an extended attribute; writing xattrLayout sets the layout
// and xattrConsistency a directory's consistency mode. POSIX ACLs
// (system.posix_acl_access and system.posix_acl_default) pass through like
// any other attribute: the MDS validates them, keeps the mode in step and
// enforces them, and the kernel forgets its cached ACLs and attributes of
// the inode after setting one.
func (fs *fileSystem) SetXAttr(cancel <-chan struct{}, in *gofuse.SetXAttrIn, name string, data []byte) gofuse.Status {
	defer fs.changed()
	ino := fs.ino(in.NodeId)
	if isHsmXattr(name) {
		return fs.setHsmXattr(cancel, &in.InHeader, ino, name, data)
	}
	if isFindXattr(name) {
		return fs.setFindXattr(&in.InHeader, ino, name, data)
	}
	if name == xattrMigrate {
		return fs.setMigrateXattr(cancel, &in.InHeader, ino, data)
	}
	if name == xattrProject {
		return fs.setProjectXattr(cancel, &in.InHeader, ino, data)
	}
	cred := fs.cred(&in.InHeader)
	switch name {
	case xattrLayout:
		var spec layout.Spec
		if err := json.Unmarshal(data, &spec); err != nil {
			fs.log.Debug("fuse: setstripe: bad layout JSON", "ino", ino, "err", err)
			return gofuse.EINVAL
		}
		if err := spec.Validate(); err != nil {
			fs.log.Debug("fuse: setstripe: invalid layout", "ino", ino, "err", err)
			return gofuse.EINVAL
		}
		_, err := fs.c.SetLayout(fs.ctx(cancel), cred, ino, spec)
		return fs.status("setstripe", err)
	case xattrConsistency:
		return fs.status("setconsistency", fs.c.SetConsistency(fs.ctx(cancel), cred, ino, string(data)))
	case xattrMkdir:
		var req MkdirRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return gofuse.EINVAL
		}
		_, err := fs.c.Mkdir(fs.ctx(cancel), cred, ino, req.Name, req.Mode, req.Umask, req.MDT)
		return fs.status("mkdir", err)
	case xattrTargets:
		return gofuse.EPERM
	case xattrCapability:
		return gofuse.Status(syscall.EOPNOTSUPP)
	}
	var flags uint32
	if in.Flags&unix.XATTR_CREATE != 0 {
		flags |= proto.XattrCreate
	}
	if in.Flags&unix.XATTR_REPLACE != 0 {
		flags |= proto.XattrReplace
	}
	return fs.status("setxattr", fs.c.Setxattr(fs.ctx(cancel), cred, ino, name, data, flags))
}

// RemoveXAttr removes an extended attribute; removing xattrLayout removes a
// directory's default layout.
func (fs *fileSystem) RemoveXAttr(cancel <-chan struct{}, h *gofuse.InHeader, name string) gofuse.Status {
	defer fs.changed()
	ino := fs.ino(h.NodeId)
	if isHsmXattr(name) {
		return gofuse.EPERM
	}
	if isFindXattr(name) {
		fs.finds.drop(strings.TrimPrefix(name, xattrFindPrefix))
		return gofuse.OK
	}
	switch name {
	case xattrLayout:
		_, err := fs.c.SetLayout(fs.ctx(cancel), fs.cred(h), ino, layout.Spec{})
		return fs.status("setstripe", err)
	case xattrConsistency:
		return fs.status("setconsistency", fs.c.SetConsistency(fs.ctx(cancel), fs.cred(h), ino, ""))
	case xattrTargets, xattrMkdir:
		return gofuse.EPERM
	}
	return fs.status("removexattr", fs.c.Removexattr(fs.ctx(cancel), fs.cred(h), ino, name))
}
