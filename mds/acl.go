package mds

import (
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// POSIX ACLs (POSIX.1e draft 17, as Linux implements them). The access ACL
// of an inode and the default ACL of a directory live in the inode record;
// clients read and write them as the xattrs system.posix_acl_access and
// system.posix_acl_default, in Linux's binary format: a little-endian u32
// version (2), then one {u16 tag, u16 perm, u32 id} per entry.
//
// The mode and the access ACL describe the same permissions: the owner bits
// are the USER_OBJ entry, the group bits the MASK entry (GROUP_OBJ when
// there is no mask) and the other bits the OTHER entry. Whichever of the two
// changes, the other follows in the same transaction.

// ACL xattr names.
const (
	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
)

// ACL entry tags.
const (
	aclUserObj  uint16 = 0x01
	aclUser     uint16 = 0x02
	aclGroupObj uint16 = 0x04
	aclGroup    uint16 = 0x08
	aclMask     uint16 = 0x10
	aclOther    uint16 = 0x20
)

const (
	aclVersion     = 2
	aclUndefinedID = 0xffffffff // the id of the entries that name no one
	aclHeaderLen   = 4
	aclEntryLen    = 8
)

// aclEntry is one entry of an ACL. ID names a user (aclUser) or a group
// (aclGroup) and is aclUndefinedID for the other tags.
type aclEntry struct {
	Tag  uint16 `msgpack:"t"`
	Perm uint16 `msgpack:"p"`
	ID   uint32 `msgpack:"i"`
}

// acl is a valid ACL, its entries in the canonical order: by tag, then by
// id. A nil acl is no ACL.
type acl []aclEntry

// isACLName reports whether name is one of the POSIX ACL xattrs.
func isACLName(name string) bool { return name == xattrACLAccess || name == xattrACLDefault }

// parseACL decodes and validates an ACL xattr value. An empty value, or a
// header with no entries, decodes to nil: no ACL. A malformed or invalid
// ACL fails with EINVAL.
func parseACL(b []byte) (acl, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < aclHeaderLen || (len(b)-aclHeaderLen)%aclEntryLen != 0 {
		return nil, fmt.Errorf("mds: ACL of %d bytes: %w", len(b), syscall.EINVAL)
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("mds: ACL version %d: %w", v, syscall.EINVAL)
	}
	n := (len(b) - aclHeaderLen) / aclEntryLen
	if n == 0 {
		return nil, nil
	}
	a := make(acl, n)
	for i := range a {
		e := b[aclHeaderLen+i*aclEntryLen:]
		a[i] = aclEntry{
			Tag:  binary.LittleEndian.Uint16(e),
			Perm: binary.LittleEndian.Uint16(e[2:]),
			ID:   binary.LittleEndian.Uint32(e[4:]),
		}
		if a[i].Tag != aclUser && a[i].Tag != aclGroup {
			a[i].ID = aclUndefinedID
		}
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// encode returns the ACL in the xattr format.
func (a acl) encode() []byte {
	b := make([]byte, 0, aclHeaderLen+len(a)*aclEntryLen)
	b = binary.LittleEndian.AppendUint32(b, aclVersion)
	for _, e := range a {
		b = binary.LittleEndian.AppendUint16(b, e.Tag)
		b = binary.LittleEndian.AppendUint16(b, e.Perm)
		b = binary.LittleEndian.AppendUint32(b, e.ID)
	}
	return b
}

// validate checks the rules of a valid ACL, as Linux's posix_acl_valid:
// entries in tag order, exactly one USER_OBJ, GROUP_OBJ and OTHER, at most
// one MASK and one if there is any named entry, named entries with strictly
// increasing ids, permissions within rwx. It fails with EINVAL.
func (a acl) validate() error {
	var counts [0x21]int
	named := false
	for i, e := range a {
		switch e.Tag {
		case aclUserObj, aclUser, aclGroupObj, aclGroup, aclMask, aclOther:
		default:
			return fmt.Errorf("mds: ACL entry %d has tag %#x: %w", i, e.Tag, syscall.EINVAL)
		}
		if e.Perm&^7 != 0 {
			return fmt.Errorf("mds: ACL entry %d has permissions %#o: %w", i, e.Perm, syscall.EINVAL)
		}
		if i > 0 {
			prev := a[i-1]
			if e.Tag < prev.Tag || e.Tag == prev.Tag && (e.Tag != aclUser && e.Tag != aclGroup || e.ID <= prev.ID) {
				return fmt.Errorf("mds: ACL entry %d (tag %#x id %d) out of order or repeated: %w", i, e.Tag, e.ID, syscall.EINVAL)
			}
		}
		counts[e.Tag]++
		named = named || e.Tag == aclUser || e.Tag == aclGroup
	}
	switch {
	case counts[aclUserObj] != 1 || counts[aclGroupObj] != 1 || counts[aclOther] != 1:
		return fmt.Errorf("mds: ACL without exactly one owner, group and other entry: %w", syscall.EINVAL)
	case named && counts[aclMask] == 0:
		return fmt.Errorf("mds: ACL with named entries but no mask: %w", syscall.EINVAL)
	}
	return nil
}

// find returns the index of the first entry with tag, or -1.
func (a acl) find(tag uint16) int {
	return slices.IndexFunc(a, func(e aclEntry) bool { return e.Tag == tag })
}

// groupClass returns the index of the entry that the mode's group bits
// stand for: the mask if there is one, else the owning group.
func (a acl) groupClass() int {
	if i := a.find(aclMask); i >= 0 {
		return i
	}
	return a.find(aclGroupObj)
}

// modeBits returns the permission bits (0777) the ACL implies.
func (a acl) modeBits() uint32 {
	return uint32(a[a.find(aclUserObj)].Perm)<<6 |
		uint32(a[a.groupClass()].Perm)<<3 |
		uint32(a[a.find(aclOther)].Perm)
}

// minimal reports whether the mode alone can express the ACL: it has only
// the three base entries.
func (a acl) minimal() bool { return len(a) == 3 }

// chmod makes the ACL follow new permission bits, as chmod(2) does:
// USER_OBJ, the mask (or GROUP_OBJ without one) and OTHER take the owner,
// group and other bits; named entries keep theirs, limited by the mask.
func (a acl) chmod(mode uint32) {
	a[a.find(aclUserObj)].Perm = uint16(mode >> 6 & 7)
	a[a.groupClass()].Perm = uint16(mode >> 3 & 7)
	a[a.find(aclOther)].Perm = uint16(mode & 7)
}

// inherit returns the access ACL and the mode of a new inode created with
// mode in a directory whose default ACL is a, as Linux's posix_acl_create:
// the owner, group-class and other entries of a copy of a are limited to
// the requested permission bits, and the mode becomes what the copy
// implies. The returned ACL is nil when the mode says it all.
func (a acl) inherit(mode uint32) (acl, uint32) {
	in := slices.Clone(a)
	in.chmod(mode & in.modeBits())
	mode = mode&^0o777 | in.modeBits()
	if in.minimal() {
		return nil, mode
	}
	return in, mode
}

// permits applies the POSIX.1e access check algorithm to a caller who is
// not root: the owner gets USER_OBJ; a named user its entry limited by the
// mask; a member of the owning group or of named groups gets access if one
// of those entries, limited by the mask, grants every bit asked, and is
// denied otherwise; anyone else gets OTHER.
func (a acl) permits(c *proto.Cred, in *inode, mask uint32) bool {
	grants := func(perm uint16) bool { return uint32(perm)&mask == mask }
	maskPerm := uint16(7)
	if i := a.find(aclMask); i >= 0 {
		maskPerm = a[i].Perm
	}
	if c.Uid == in.Uid {
		return grants(a[a.find(aclUserObj)].Perm)
	}
	for _, e := range a {
		if e.Tag == aclUser && e.ID == c.Uid {
			return grants(e.Perm & maskPerm)
		}
	}
	member := false
	for _, e := range a {
		var gid uint32
		switch e.Tag {
		case aclGroupObj:
			gid = in.Gid
		case aclGroup:
			gid = e.ID
		default:
			continue
		}
		if inGroup(c, gid) {
			if grants(e.Perm & maskPerm) {
				return true
			}
			member = true
		}
	}
	if member {
		return false
	}
	return grants(a[a.find(aclOther)].Perm)
}

// initACLs gives a new inode, whose mode the caller set from the request,
// its permissions: with a default ACL on dir, the access ACL it implies
// (and, for a directory, the default ACL itself) with the umask ignored;
// without one, the mode less the umask. Symbolic links have neither.
func initACLs(dir, in *inode, umask uint32) {
	if in.isSymlink() {
		return
	}
	if dir.DefACL == nil {
		in.Mode &^= umask & 0o777
		return
	}
	in.ACL, in.Mode = dir.DefACL.inherit(in.Mode)
	if in.isDir() {
		in.DefACL = slices.Clone(dir.DefACL)
	}
}

// getACL returns an ACL xattr's value, or ENODATA if the inode has none.
// Reading an ACL needs no permission, as on Linux.
func getACL(in *inode, name string) ([]byte, error) {
	a := in.ACL
	if name == xattrACLDefault {
		a = in.DefACL
	}
	if a == nil {
		return nil, fmt.Errorf("mds: %s of %#x: %w", name, in.Ino, syscall.ENODATA)
	}
	return a.encode(), nil
}

// setACL sets (value non-empty) or removes (value empty or nil) an ACL of
// in, for the caller c, who must own in or be root. Setting the access ACL
// also sets the mode's permission bits; a default ACL exists only on a
// directory. XattrCreate and XattrReplace apply as to any xattr. With
// remove set the ACL must exist (removexattr).
func (t *mtx) setACL(c *proto.Cred, in *inode, name string, value []byte, flags uint32, remove bool) error {
	if in.isSymlink() {
		return fmt.Errorf("mds: %s on symlink %#x: %w", name, in.Ino, syscall.EOPNOTSUPP)
	}
	if !isOwner(c, in) {
		return fmt.Errorf("mds: set %s of %#x by uid %d, not the owner: %w", name, in.Ino, c.Uid, syscall.EPERM)
	}
	a, err := parseACL(value)
	if err != nil {
		return err
	}
	def := name == xattrACLDefault
	cur := in.ACL
	if def {
		cur = in.DefACL
	}
	switch {
	case (remove || flags&proto.XattrReplace != 0) && cur == nil:
		return fmt.Errorf("mds: %s of %#x: %w", name, in.Ino, syscall.ENODATA)
	case flags&proto.XattrCreate != 0 && cur != nil:
		return fmt.Errorf("mds: %s of %#x: %w", name, in.Ino, syscall.EEXIST)
	}
	if def {
		if !in.isDir() {
			if a == nil {
				return nil
			}
			return fmt.Errorf("mds: default ACL on non-directory %#x: %w", in.Ino, syscall.EACCES)
		}
		in.DefACL = a
		t.changed(in)
		return nil
	}
	if a != nil {
		mode := in.Mode&^0o777 | a.modeBits()
		if c.Uid != 0 && !inGroup(c, in.Gid) {
			mode &^= modeSgid
		}
		in.Mode = mode
		if a.minimal() {
			a = nil
		}
	}
	in.ACL = a
	t.changed(in)
	return nil
}

// aclNames returns the names of the ACL xattrs in has.
func aclNames(in *inode) []string {
	var names []string
	if in.ACL != nil {
		names = append(names, xattrACLAccess)
	}
	if in.DefACL != nil {
		names = append(names, xattrACLDefault)
	}
	return names
}
