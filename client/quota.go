package client

import (
	"context"
	"fmt"

	"github.com/stratafs/strata/proto"
)

// Block quotas (see proto/quota.go). A file whose owner, group or project
// has block limits is flagged at open (proto.AttrFlagQuota); before a write
// extends it past what the MDS granted, its writer asks for room, and the
// MDS grants the end asked for plus up to a qunit, or refuses with EDQUOT.

// quotaRoom makes sure a write ending at end may extend the file.
func (f *File) quotaRoom(ctx context.Context, end int64) error {
	if !f.quota {
		return nil
	}
	in := f.in
	in.mu.Lock()
	room := end <= in.quotaEnd || end <= max(in.mdsSize, in.writeEnd)
	in.mu.Unlock()
	if room {
		return nil
	}
	req := proto.QuotaGrantReq{Session: f.session, Ino: f.ino, Handle: f.handle, End: uint64(end)}
	var resp proto.QuotaGrantResp
	if err := f.c.mdsCall(ctx, f.ino, proto.OpQuotaGrant, &req, &resp); err != nil {
		return fmt.Errorf("client: room to write %#x to %d: %w", f.ino, end, err)
	}
	in.mu.Lock()
	in.quotaEnd = max(in.quotaEnd, int64(resp.End))
	in.mu.Unlock()
	return nil
}

// Quota returns the usage and limits of a user, group or project, asked
// as cred (a user may ask about itself, its groups and projects).
func (c *Client) Quota(ctx context.Context, cred proto.Cred, typ uint8, id uint32) (proto.QuotaResp, error) {
	var resp proto.QuotaResp
	if err := c.mdsCall(ctx, c.Root(), proto.OpQuota, &proto.QuotaReq{Cred: cred, Type: typ, ID: id}, &resp); err != nil {
		return proto.QuotaResp{}, fmt.Errorf("client: quota of %d %d: %w", typ, id, err)
	}
	return resp, nil
}

// Project reads or sets (req.SetID, req.SetInherit) the project ID of
// ino and its inherit flag.
func (c *Client) Project(ctx context.Context, cred proto.Cred, ino uint64, req proto.ProjectReq) (proto.ProjectResp, error) {
	req.Cred, req.Ino = cred, ino
	var resp proto.ProjectResp
	if err := c.mdsCall(ctx, ino, proto.OpProject, &req, &resp); err != nil {
		return proto.ProjectResp{}, fmt.Errorf("client: project of %#x: %w", ino, err)
	}
	return resp, nil
}
