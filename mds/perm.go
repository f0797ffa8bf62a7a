package mds

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Mode bits beyond the type.
const (
	modeType  = proto.ModeType
	modeSuid  = 0o4000
	modeSgid  = 0o2000
	modeStick = 0o1000
	modePerm  = 0o7777
)

// access(2) mask bits.
const (
	mayRead  = 4
	mayWrite = 2
	mayExec  = 1
)

// POSIX limits.
const (
	maxNameLen    = 255
	maxSymlinkLen = 4095
	maxLinks      = 65000 // as ldiskfs: link(2) and mkdir fail with EMLINK beyond
)

// checkName enforces the rules for a new or looked-up entry name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("mds: invalid name %q: %w", name, syscall.EINVAL)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("mds: name %q contains '/' or NUL: %w", name, syscall.EINVAL)
	case len(name) > maxNameLen:
		return fmt.Errorf("mds: name of %d bytes: %w", len(name), syscall.ENAMETOOLONG)
	}
	return nil
}

// inGroup reports whether the caller is a member of gid.
func inGroup(c *proto.Cred, gid uint32) bool {
	return c.Gid == gid || slices.Contains(c.Groups, gid)
}

// isOwner reports whether the caller owns in or is root.
func isOwner(c *proto.Cred, in *inode) bool { return c.Uid == 0 || c.Uid == in.Uid }

// permits reports whether the caller may access in with mask (mayRead,
// mayWrite, mayExec bits), by the inode's access ACL if it has one and else
// by the classic owner/group/other rule. Root may read and write anything,
// and execute (search) directories and files that have at least one
// execute bit.
func permits(c *proto.Cred, in *inode, mask uint32) bool {
	if c.Uid == 0 {
		return mask&mayExec == 0 || in.isDir() || in.Mode&0o111 != 0
	}
	if in.ACL != nil {
		return in.ACL.permits(c, in, mask)
	}
	var bits uint32
	switch {
	case c.Uid == in.Uid:
		bits = in.Mode >> 6
	case inGroup(c, in.Gid):
		bits = in.Mode >> 3
	default:
		bits = in.Mode
	}
	return bits&7&mask == mask
}

// need returns EACCES unless the caller may access in with mask.
func need(c *proto.Cred, in *inode, mask uint32, what string) error {
	if permits(c, in, mask) {
		return nil
	}
	return fmt.Errorf("mds: %s of %#x denied to uid %d: %w", what, in.Ino, c.Uid, syscall.EACCES)
}

// mayChangeEntries checks write and search permission on a directory whose
// entries the caller adds or removes.
func mayChangeEntries(c *proto.Cred, dir *inode) error {
	return need(c, dir, mayWrite|mayExec, "entry change")
}

// stickyAllows applies the sticky-directory rule: in a directory with the
// sticky bit, only the owner of the entry, the owner of the directory and
// root may remove or rename it.
func stickyAllows(c *proto.Cred, dir, victim *inode) error {
	if dir.Mode&modeStick == 0 || c.Uid == 0 || c.Uid == victim.Uid || c.Uid == dir.Uid {
		return nil
	}
	return fmt.Errorf("mds: %#x in sticky directory %#x not owned by uid %d: %w",
		victim.Ino, dir.Ino, c.Uid, syscall.EPERM)
}

// initOwner sets the owner, group and mode of a new inode created by c in
// dir, applying the setgid-directory rules: the new entry takes the
// directory's group, a new subdirectory also its setgid bit, and a
// non-directory keeps a requested setgid bit only if the caller belongs
// to the group.
func initOwner(c *proto.Cred, dir, in *inode, mode uint32) {
	in.Uid, in.Gid = c.Uid, c.Gid
	if dir.Mode&modeSgid != 0 {
		in.Gid = dir.Gid
		if mode&modeType == proto.ModeDir {
			mode |= modeSgid
		} else if mode&(modeSgid|0o010) == modeSgid|0o010 && c.Uid != 0 && !inGroup(c, in.Gid) {
			mode &^= modeSgid
		}
	}
	in.Mode = mode
}

// killPrivs clears the set-user-ID bit, and the set-group-ID bit if the
// group may execute, as a write or truncate by an unprivileged caller
// does. It reports whether anything changed.
func killPrivs(in *inode) bool {
	old := in.Mode
	in.Mode &^= modeSuid
	if in.Mode&(modeSgid|0o010) == modeSgid|0o010 {
		in.Mode &^= modeSgid
	}
	return in.Mode != old
}
