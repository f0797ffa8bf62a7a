package mds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Xattr limits, as Linux's.
const (
	maxXattrName  = 255
	maxXattrValue = 64 << 10
)

// Xattr namespaces.
const (
	xattrUser     = "user."
	xattrTrusted  = "trusted."
	xattrSecurity = "security."
	// xattrReserved holds the virtual xattrs the client serves itself
	// (user.strata.layout, user.strata.targets); none are stored.
	xattrReserved = "user.strata."
)

// checkXattrName validates an xattr name: ERANGE for an empty or too long
// name, EOPNOTSUPP outside the user, trusted and security namespaces and
// the two POSIX ACL names of system.*, EINVAL for a bare namespace prefix.
func checkXattrName(name string) error {
	if name == "" || len(name) > maxXattrName {
		return fmt.Errorf("mds: xattr name of %d bytes: %w", len(name), syscall.ERANGE)
	}
	if isACLName(name) {
		return nil
	}
	for _, ns := range []string{xattrUser, xattrTrusted, xattrSecurity} {
		if strings.HasPrefix(name, ns) {
			if len(name) == len(ns) {
				return fmt.Errorf("mds: xattr name %q: %w", name, syscall.EINVAL)
			}
			return nil
		}
	}
	return fmt.Errorf("mds: xattr namespace of %q: %w", name, syscall.EOPNOTSUPP)
}

// xattrAccess applies Linux's xattr permission rules: trusted.* is for
// root only (others see no such attribute), security.* may be written by
// the owner or root, user.* exists only on regular files and directories
// and may not be written by others than the owner in a sticky directory;
// then reading needs read permission and writing write permission.
func xattrAccess(c *proto.Cred, in *inode, name string, write bool) error {
	denied := syscall.ENODATA
	if write {
		denied = syscall.EPERM
	}
	switch {
	case strings.HasPrefix(name, xattrReserved):
		return fmt.Errorf("mds: %q is a virtual attribute of the client: %w", name, denied)
	case strings.HasPrefix(name, xattrTrusted):
		if c.Uid != 0 {
			return fmt.Errorf("mds: %q for uid %d: %w", name, c.Uid, denied)
		}
		return nil
	case strings.HasPrefix(name, xattrSecurity):
		if write && !isOwner(c, in) {
			return fmt.Errorf("mds: set %q of %#x by uid %d: %w", name, in.Ino, c.Uid, syscall.EPERM)
		}
		return nil
	}
	if !in.isRegular() && !in.isDir() {
		return fmt.Errorf("mds: user xattr %q on a special file: %w", name, denied)
	}
	if write && in.isDir() && in.Mode&modeStick != 0 && !isOwner(c, in) {
		return fmt.Errorf("mds: set %q of sticky directory %#x by uid %d: %w", name, in.Ino, c.Uid, syscall.EPERM)
	}
	if write {
		return need(c, in, mayWrite, "setxattr")
	}
	return need(c, in, mayRead, "getxattr")
}

// Getxattr returns one extended attribute, or ENODATA. The POSIX ACL
// names read the inode's ACLs (see acl.go).
func (s *Service) Getxattr(ctx context.Context, req *proto.GetxattrReq) (*proto.GetxattrResp, error) {
	if err := checkXattrName(req.Name); err != nil {
		return nil, err
	}
	var resp proto.GetxattrResp
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		if isACLName(req.Name) {
			resp.Value, err = getACL(in, req.Name)
			return err
		}
		if err := xattrAccess(&req.Cred, in, req.Name, false); err != nil {
			return err
		}
		v, err := t.kv.Get(ctx, t.k.xattr(in.Ino, req.Name))
		if err != nil {
			return fmt.Errorf("mds: read xattr %q of %#x: %w", req.Name, in.Ino, err)
		}
		if v == nil {
			return fmt.Errorf("mds: xattr %q of %#x: %w", req.Name, in.Ino, syscall.ENODATA)
		}
		resp.Value = []byte{}
		return decode(v, &resp.Value)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Setxattr writes one extended attribute. XattrCreate fails with EEXIST if
// it exists, XattrReplace with ENODATA if it does not. The POSIX ACL names
// set the inode's ACLs, and the access ACL its mode (see acl.go).
func (s *Service) Setxattr(ctx context.Context, req *proto.SetxattrReq) error {
	if err := checkXattrName(req.Name); err != nil {
		return err
	}
	switch {
	case req.Flags&^(proto.XattrCreate|proto.XattrReplace) != 0,
		req.Flags == proto.XattrCreate|proto.XattrReplace:
		return fmt.Errorf("mds: setxattr flags %#x: %w", req.Flags, syscall.EINVAL)
	case len(req.Value) > maxXattrValue:
		return fmt.Errorf("mds: xattr value of %d bytes: %w", len(req.Value), syscall.E2BIG)
	}
	return s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpSetxattr, nil, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if isACLName(req.Name) {
			return t.setACL(&req.Cred, in, req.Name, req.Value, req.Flags, false)
		}
		if err := xattrAccess(&req.Cred, in, req.Name, true); err != nil {
			return err
		}
		key := t.k.xattr(in.Ino, req.Name)
		old, err := t.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("mds: read xattr %q of %#x: %w", req.Name, in.Ino, err)
		}
		switch {
		case old != nil && req.Flags&proto.XattrCreate != 0:
			return fmt.Errorf("mds: xattr %q of %#x: %w", req.Name, in.Ino, syscall.EEXIST)
		case old == nil && req.Flags&proto.XattrReplace != 0:
			return fmt.Errorf("mds: xattr %q of %#x: %w", req.Name, in.Ino, syscall.ENODATA)
		}
		// msgpack, so that an empty value is not an empty (absent) one.
		if err := t.setRecord(key, req.Value); err != nil {
			return err
		}
		t.changed(in)
		t.changelog(&req.Cred, proto.ChangelogXattr, in.Ino, 0, req.Name)
		return nil
	}))
}

// Listxattr lists the names of an inode's extended attributes, in name
// order: trusted.* names only for root, the POSIX ACL names of the ACLs
// the inode has.
func (s *Service) Listxattr(ctx context.Context, req *proto.ListxattrReq) (*proto.ListxattrResp, error) {
	resp := proto.ListxattrResp{Names: []string{}}
	err := s.view(ctx, func(t *mtx) error {
		resp.Names = resp.Names[:0]
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		start, end := t.k.xattrRange(in.Ino)
		var kerr error
		err = t.kv.Scan(ctx, start, end, 0, func(k, _ []byte) bool {
			name, err := t.k.xattrName(k)
			if err != nil {
				kerr = err
				return false
			}
			if req.Cred.Uid == 0 || !strings.HasPrefix(name, xattrTrusted) {
				resp.Names = append(resp.Names, name)
			}
			return true
		})
		resp.Names = append(resp.Names, aclNames(in)...)
		slices.Sort(resp.Names)
		return firstErr(err, kerr)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Removexattr removes one extended attribute, or fails with ENODATA.
func (s *Service) Removexattr(ctx context.Context, req *proto.RemovexattrReq) error {
	if err := checkXattrName(req.Name); err != nil {
		return err
	}
	return s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpRemovexattr, nil, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if isACLName(req.Name) {
			return t.setACL(&req.Cred, in, req.Name, nil, 0, true)
		}
		if err := xattrAccess(&req.Cred, in, req.Name, true); err != nil {
			return err
		}
		key := t.k.xattr(in.Ino, req.Name)
		old, err := t.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("mds: read xattr %q of %#x: %w", req.Name, in.Ino, err)
		}
		if old == nil {
			return fmt.Errorf("mds: xattr %q of %#x: %w", req.Name, in.Ino, syscall.ENODATA)
		}
		if err := t.kv.Delete(key); err != nil {
			return err
		}
		t.changed(in)
		t.changelog(&req.Cred, proto.ChangelogXattr, in.Ino, 0, req.Name)
		return nil
	}))
}
