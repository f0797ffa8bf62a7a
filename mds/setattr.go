package mds

import (
	"context"
	"fmt"
	"math"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Setattr changes attributes, enforcing who may change what: chmod by the
// owner or root (dropping setgid for a caller outside the file's group,
// and carrying the new bits into the access ACL if there is one),
// chown by root only (the owner may change the group to one of his), a size
// change by a writer or through a handle open for writing (clearing the
// set-id bits when SetKillPrivs says the caller lacks CAP_FSETID), times set to now
// by the owner or a writer and explicit times by the owner or root. A size
// change truncates the file's objects before it commits, so a crash never
// exposes stale data past the new end.
func (s *Service) Setattr(ctx context.Context, req *proto.SetattrReq) (*proto.AttrResp, error) {
	if !req.Tag.IsZero() {
		// A resend of a setattr that committed answers with the file as
		// it is; it must not, say, truncate again what was written since.
		var resp proto.AttrResp
		done := false
		err := s.view(ctx, func(t *mtx) error {
			var err error
			done, err = replayed(t, req.Tag, proto.OpSetattr, &resp)
			return err
		})
		if err != nil {
			return nil, err
		}
		if done {
			return &resp, nil
		}
	}
	in, err := s.setattr(ctx, req, false)
	if err != nil {
		return nil, err
	}
	return &proto.AttrResp{Attr: in.attr()}, nil
}

// setattr is Setattr; trusted skips the size permission checks, for
// open(O_TRUNC), which made its own.
func (s *Service) setattr(ctx context.Context, req *proto.SetattrReq, trusted bool) (*inode, error) {
	viaHandle := trusted
	if req.Valid&(proto.SetSize|proto.SetKillPrivs) != 0 && req.Handle != 0 && !trusted {
		h, err := s.open.get(req.Handle, req.Ino)
		if err != nil {
			return nil, err
		}
		if h.rights&proto.RightWrite == 0 {
			return nil, fmt.Errorf("mds: ftruncate through read-only handle %#x: %w", req.Handle, syscall.EINVAL)
		}
		viaHandle = true
	}
	if req.Valid&proto.SetSize != 0 {
		if req.Size > math.MaxInt64 {
			return nil, fmt.Errorf("mds: truncate %#x to %d: %w", req.Ino, req.Size, syscall.EFBIG)
		}
		unlock, err := s.lockTruncThawed(ctx, req.Ino)
		if err != nil {
			return nil, err
		}
		defer unlock()
		return s.truncate(ctx, req, viaHandle)
	}
	var out *inode
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := s.applySetattr(t, req, viaHandle)
		if err != nil {
			return err
		}
		if in.isDir() && req.Valid&(proto.SetMtime|proto.SetCtime) != 0 && req.Valid&proto.SetMtimeNow == 0 {
			// Times set explicitly stand over those of the entries'
			// changes so far.
			if err := t.clearShardTimes(in.Ino); err != nil {
				return err
			}
		}
		if out, err = t.folded(in); err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogSetattr, in.Ino, 0, "")
		t.changelogFlags(req.Valid)
		return t.remember(req.Tag, proto.OpSetattr, &proto.AttrResp{Attr: out.attr()})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// applySetattr checks and applies a setattr request to the inode in t.
func (s *Service) applySetattr(t *mtx, req *proto.SetattrReq, viaHandle bool) (*inode, error) {
	c, v := &req.Cred, req.Valid
	in, err := t.inode(req.Ino)
	if err != nil {
		return nil, err
	}
	root := c.Uid == 0
	owner := root || c.Uid == in.Uid
	atNow, mtNow := v&proto.SetAtimeNow != 0, v&proto.SetMtimeNow != 0
	atSet, mtSet := v&proto.SetAtime != 0 && !atNow, v&proto.SetMtime != 0 && !mtNow
	switch {
	case v&proto.SetSize != 0 && in.isDir():
		return nil, fmt.Errorf("mds: truncate directory %#x: %w", in.Ino, syscall.EISDIR)
	case v&proto.SetSize != 0 && !in.isRegular():
		return nil, fmt.Errorf("mds: truncate special file %#x: %w", in.Ino, syscall.EINVAL)
	case v&proto.SetSize != 0 && !viaHandle && !permits(c, in, mayWrite):
		return nil, fmt.Errorf("mds: truncate %#x denied to uid %d: %w", in.Ino, c.Uid, syscall.EACCES)
	case v&proto.SetKillPrivs != 0 && !viaHandle && !owner && !permits(c, in, mayWrite):
		return nil, fmt.Errorf("mds: clear set-id bits of %#x by uid %d: %w", in.Ino, c.Uid, syscall.EPERM)
	case v&proto.SetMode != 0 && !owner:
		return nil, fmt.Errorf("mds: chmod %#x by uid %d, not the owner: %w", in.Ino, c.Uid, syscall.EPERM)
	case v&proto.SetUid != 0 && !root && (c.Uid != in.Uid || req.Uid != in.Uid):
		return nil, fmt.Errorf("mds: chown %#x to uid %d by uid %d: %w", in.Ino, req.Uid, c.Uid, syscall.EPERM)
	case v&proto.SetGid != 0 && !root && (c.Uid != in.Uid || req.Gid != in.Gid && !inGroup(c, req.Gid)):
		return nil, fmt.Errorf("mds: chgrp %#x to gid %d by uid %d: %w", in.Ino, req.Gid, c.Uid, syscall.EPERM)
	case (atSet || mtSet || v&proto.SetCtime != 0) && !owner:
		return nil, fmt.Errorf("mds: set times of %#x by uid %d, not the owner: %w", in.Ino, c.Uid, syscall.EPERM)
	case (atNow || mtNow) && !owner && !permits(c, in, mayWrite):
		return nil, fmt.Errorf("mds: touch %#x denied to uid %d: %w", in.Ino, c.Uid, syscall.EACCES)
	}
	if v&proto.SetSize != 0 {
		if req.Size != in.Size || in.DataVersion != 0 {
			in.DataVersion++
			in.hsmDataChanged()
		}
		in.Size = req.Size
		in.Mtime = t.now
	}
	if v&proto.SetKillPrivs != 0 && !in.isDir() {
		// The caller's kernel asked (it lacks CAP_FSETID), not its uid:
		// root's truncate keeps the bits, as on Linux.
		killPrivs(in)
	}
	if v&proto.SetUid != 0 {
		in.Uid = req.Uid
	}
	if v&proto.SetGid != 0 {
		in.Gid = req.Gid
	}
	if v&(proto.SetUid|proto.SetGid) != 0 && v&proto.SetMode == 0 && !in.isDir() {
		// As Linux chown: a changed owner must not inherit set-id powers.
		killPrivs(in)
	}
	if v&proto.SetMode != 0 {
		mode := req.Mode & modePerm
		if !root && !inGroup(c, in.Gid) {
			mode &^= modeSgid
		}
		in.Mode = in.Mode&modeType | mode
		if in.ACL != nil {
			in.ACL.chmod(in.Mode)
		}
	}
	switch {
	case atNow:
		in.Atime = t.now
	case atSet:
		in.Atime = req.Atime
	}
	switch {
	case mtNow:
		in.Mtime = t.now
	case mtSet:
		in.Mtime = req.Mtime
	}
	t.changed(in)
	if v&proto.SetCtime != 0 {
		in.Ctime = req.Ctime
	}
	return in, nil
}
