package fuse

import (
	"encoding/json"
	"strconv"
	"strings"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/proto"
)

// Quotas through the mount, as the caller:
//   - getxattr user.strata.quota.T.ID (T is u, g or p) reads the JSON of
//     proto.QuotaResp for that user, group or project;
//   - getxattr user.strata.project reads the JSON of proto.ProjectResp of
//     the inode, and setxattr of it with the JSON of a ProjectRequest sets
//     its project ID and inherit flag (strata project).
const (
	xattrQuotaPrefix = "user.strata.quota."
	xattrProject     = "user.strata.project"
)

// ProjectRequest is the value that sets an inode's project.
type ProjectRequest struct {
	SetID      bool   `json:"set_id"`
	Project    uint32 `json:"project"`
	SetInherit bool   `json:"set_inherit"`
	Inherit    bool   `json:"inherit"`
}

// getQuotaXattr serves the quota and project reads.
func (fs *fileSystem) getQuotaXattr(cancel <-chan struct{}, h *gofuse.InHeader, ino uint64, name string) ([]byte, error) {
	if name == xattrProject {
		resp, err := fs.c.Project(fs.ctx(cancel), fs.cred(h), ino, proto.ProjectReq{})
		if err != nil {
			return nil, err
		}
		return json.Marshal(&resp)
	}
	typ, idStr, ok := strings.Cut(strings.TrimPrefix(name, xattrQuotaPrefix), ".")
	id, err := strconv.ParseUint(idStr, 10, 32)
	t, known := map[string]uint8{"u": proto.QuotaUser, "g": proto.QuotaGroup, "p": proto.QuotaProject}[typ]
	if !ok || err != nil || !known {
		return nil, syscall.ENODATA
	}
	resp, err := fs.c.Quota(fs.ctx(cancel), fs.cred(h), t, uint32(id))
	if err != nil {
		return nil, err
	}
	return json.Marshal(&resp)
}

// setProjectXattr sets an inode's project ID and inherit flag.
func (fs *fileSystem) setProjectXattr(cancel <-chan struct{}, h *gofuse.InHeader, ino uint64, data []byte) gofuse.Status {
	var req ProjectRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return gofuse.EINVAL
	}
	_, err := fs.c.Project(fs.ctx(cancel), fs.cred(h), ino, proto.ProjectReq{SetID: req.SetID, Project: req.Project,
		SetInherit: req.SetInherit, Inherit: req.Inherit})
	return fs.status("project", err)
}

// isQuotaXattr reports whether name belongs to the quota channel.
func isQuotaXattr(name string) bool {
	return name == xattrProject || strings.HasPrefix(name, xattrQuotaPrefix)
}
