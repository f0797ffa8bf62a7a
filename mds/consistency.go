package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Consistency modes of SetConsistencyReq.
const (
	consistencyStrict      = "strict"
	consistencyCloseToOpen = "close-to-open"
	consistencyInherit     = ""
)

// consistencyFlags are the inode flags that carry a consistency mode.
const consistencyFlags = proto.AttrFlagStrict | proto.AttrFlagCloseToOpen

// SetConsistency sets the consistency mode a directory gives what is
// created in it from now on: "strict", "close-to-open", or "" to take its
// parent's mode again (the root then has none). Existing files keep the
// mode they were created with. Only the directory's owner or root may set
// it (EPERM); a file fails with ENOTDIR and any other mode with EINVAL.
func (s *Service) SetConsistency(ctx context.Context, req *proto.SetConsistencyReq) error {
	var bits uint32
	switch req.Mode {
	case consistencyStrict:
		bits = proto.AttrFlagStrict
	case consistencyCloseToOpen:
		bits = proto.AttrFlagCloseToOpen
	case consistencyInherit:
	default:
		return fmt.Errorf("mds: consistency mode %q: %w", req.Mode, syscall.EINVAL)
	}
	return s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpSetConsistency, nil, func(t *mtx) error {
		dir, err := t.dir(req.Ino)
		if err != nil {
			return err
		}
		if !isOwner(&req.Cred, dir) {
			return fmt.Errorf("mds: set consistency of %#x by uid %d, not the owner: %w", dir.Ino, req.Cred.Uid, syscall.EPERM)
		}
		flags := bits
		if req.Mode == consistencyInherit && dir.Ino != RootIno && dir.Parent != 0 {
			parent, err := t.dir(dir.Parent)
			if err != nil {
				return err
			}
			flags = parent.Flags & consistencyFlags
		}
		dir.Flags = dir.Flags&^consistencyFlags | flags
		t.changed(dir)
		return nil
	}))
}

// inheritedFlags returns the flags a new inode takes from its directory: a
// subdirectory its consistency mode, a regular file strictness.
func inheritedFlags(dir, in *inode) uint32 {
	switch {
	case in.isDir():
		return dir.Flags & consistencyFlags
	case in.isRegular():
		return dir.Flags & proto.AttrFlagStrict
	}
	return 0
}
