package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Readdir page bounds.
const maxReaddir = 1024

// Lookup returns the attributes of the entry name in a directory. The
// caller needs search permission on the directory. "." and ".." resolve to
// the directory and its parent (the root is its own parent).
func (s *Service) Lookup(ctx context.Context, req *proto.LookupReq) (*proto.EntryResp, error) {
	if req.Name != "." && req.Name != ".." {
		if err := checkName(req.Name); err != nil {
			return nil, err
		}
	}
	var resp proto.EntryResp
	var leased [2]*inode
	tok := s.leases.token()
	err := s.view(ctx, func(t *mtx) error {
		dir, err := t.dirAttrs(req.Parent)
		if err != nil {
			return err
		}
		if err := need(&req.Cred, dir, mayExec, "lookup"); err != nil {
			return err
		}
		child := dir.Ino
		switch req.Name {
		case ".":
		case "..":
			child = dir.Parent
		default:
			d, ok, err := t.lookup(dir.Ino, req.Name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("mds: lookup %q in %#x: %w", req.Name, dir.Ino, syscall.ENOENT)
			}
			child = d.Ino
		}
		in, err := t.inodeAttrs(child)
		if err != nil {
			return err
		}
		seen, err := t.folded(in)
		if err != nil {
			return err
		}
		resp.Attr = seen.attr()
		leased = [2]*inode{dir, in}
		return nil
	})
	if err != nil {
		return nil, err
	}
	resp.Lease = s.grantLease(ctx, tok, leased[:]...)
	return &resp, nil
}

// Getattr returns an inode's attributes. It checks no permission: a client
// reaches an inode number only through a lookup that did.
func (s *Service) Getattr(ctx context.Context, req *proto.GetattrReq) (*proto.AttrResp, error) {
	var resp proto.AttrResp
	var leased *inode
	tok := s.leases.token()
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		seen, err := t.folded(in)
		if err != nil {
			return err
		}
		resp.Attr = seen.attr()
		leased = in
		return nil
	})
	if err != nil {
		return nil, err
	}
	resp.Lease = s.grantLease(ctx, tok, leased)
	return &resp, nil
}

// Access checks access(2) permission bits (R_OK=4, W_OK=2, X_OK=1; 0 tests
// existence).
func (s *Service) Access(ctx context.Context, req *proto.AccessReq) error {
	if req.Mask&^7 != 0 {
		return fmt.Errorf("mds: access mask %#o: %w", req.Mask, syscall.EINVAL)
	}
	return s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		return need(&req.Cred, in, req.Mask, "access")
	})
}

// newEntry is the part that mkdir, mknod, symlink and create share: it
// checks the name and the parent, makes inode ino with type and permission
// bits mode owned by the caller (setgid rules applied), gives it the
// permissions the parent's default ACL or else the umask leaves, and the
// parent's consistency flags, lets fill set the type-specific fields,
// links it into the parent and updates the parent's times. It fails with
// EEXIST if the name exists.
func (s *Service) newEntry(t *mtx, c *proto.Cred, parent uint64, name string, ino uint64, mode, umask uint32,
	fill func(dir, in *inode) error) (*inode, error) {
	dir, err := t.dir(parent)
	if err != nil {
		return nil, err
	}
	if err := mayChangeEntries(c, dir); err != nil {
		return nil, err
	}
	if _, ok, err := t.lookup(dir.Ino, name); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("mds: create %q in %#x: %w", name, dir.Ino, syscall.EEXIST)
	}
	in := &inode{Ino: ino, Nlink: 1, Atime: t.now, Mtime: t.now, Ctime: t.now}
	initOwner(c, dir, in, mode)
	if dir.ProjInherit {
		// lfs project -s: the directory's project, and for a
		// subdirectory the flag, go to what is made in it.
		in.Project, in.ProjInherit = dir.Project, mode&modeType == proto.ModeDir
	}
	initACLs(dir, in, umask)
	in.Flags = inheritedFlags(dir, in)
	if fill != nil {
		if err := fill(dir, in); err != nil {
			return nil, err
		}
	}
	t.put(in)
	t.fresh = append(t.fresh, in.Ino)
	if err := t.link(dir.Ino, name, in); err != nil {
		return nil, err
	}
	var subdir int32
	if in.isDir() {
		subdir = 1 // its ".."
	}
	if err := t.touchEntry(dir, name, subdir); err != nil {
		return nil, err
	}
	return in, nil
}

// Mkdir creates a directory. MDT -1 places it on its parent's MDT, except
// that new top-level directories spread round robin over the MDTs.
func (s *Service) Mkdir(ctx context.Context, req *proto.MkdirReq) (*proto.EntryResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	mdt, err := s.placeDir(ctx, req.Parent, req.MDT)
	if err != nil {
		return nil, err
	}
	ino, err := s.newIno(ctx, mdt)
	if err != nil {
		return nil, err
	}
	var resp proto.EntryResp
	err = s.update(ctx, s.tagged(req.Tag, proto.OpMkdir, &resp, func(t *mtx) error {
		mode := proto.ModeDir | req.Mode&(0o777|modeStick)
		in, err := s.newEntry(t, &req.Cred, req.Parent, req.Name, ino, mode, req.Umask, func(dir, in *inode) error {
			if n, err := t.linkCount(dir, req.Name); err != nil {
				return err
			} else if n >= maxLinks {
				return fmt.Errorf("mds: mkdir %q: %#x has too many subdirectories: %w", req.Name, dir.Ino, syscall.EMLINK)
			}
			in.Nlink = 2
			in.Parent = dir.Ino
			return nil
		})
		if err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogMkdir, in.Ino, req.Parent, req.Name)
		resp.Attr = in.attr()
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Mknod creates a FIFO, socket, device or empty regular file. Devices need
// root; a regular file gets its layout as Create would give it.
func (s *Service) Mknod(ctx context.Context, req *proto.MknodReq) (*proto.EntryResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	mode := req.Mode
	switch mode & modeType {
	case 0:
		mode |= proto.ModeRegular
	case proto.ModeRegular, proto.ModeFIFO, proto.ModeSocket:
	case proto.ModeChar, proto.ModeBlock:
		if req.Cred.Uid != 0 {
			return nil, fmt.Errorf("mds: mknod device %q by uid %d: %w", req.Name, req.Cred.Uid, syscall.EPERM)
		}
	case proto.ModeDir:
		return nil, fmt.Errorf("mds: mknod of a directory %q: %w", req.Name, syscall.EPERM)
	default:
		return nil, fmt.Errorf("mds: mknod %q type %#o: %w", req.Name, mode&modeType, syscall.EINVAL)
	}
	mode &= modeType | modePerm
	rootDef, err := s.rootDefault(ctx)
	if err != nil {
		return nil, err
	}
	ino, err := s.newIno(ctx, inoMDT(req.Parent))
	if err != nil {
		return nil, err
	}
	var resp proto.EntryResp
	err = s.update(ctx, s.tagged(req.Tag, proto.OpMknod, &resp, func(t *mtx) error {
		in, err := s.newEntry(t, &req.Cred, req.Parent, req.Name, ino, mode, req.Umask, func(dir, in *inode) error {
			if in.isRegular() {
				return s.instantiate(t, dir, in, layout.Spec{}, rootDef)
			}
			if mode&modeType == proto.ModeChar || mode&modeType == proto.ModeBlock {
				in.Rdev = req.Rdev
			}
			return nil
		})
		if err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogMknod, in.Ino, req.Parent, req.Name)
		resp.Attr = in.attr()
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Symlink creates a symbolic link to Target.
func (s *Service) Symlink(ctx context.Context, req *proto.SymlinkReq) (*proto.EntryResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	switch {
	case req.Target == "":
		return nil, fmt.Errorf("mds: symlink %q to an empty target: %w", req.Name, syscall.ENOENT)
	case len(req.Target) > maxSymlinkLen:
		return nil, fmt.Errorf("mds: symlink target of %d bytes: %w", len(req.Target), syscall.ENAMETOOLONG)
	}
	ino, err := s.newIno(ctx, inoMDT(req.Parent))
	if err != nil {
		return nil, err
	}
	var resp proto.EntryResp
	err = s.update(ctx, s.tagged(req.Tag, proto.OpSymlink, &resp, func(t *mtx) error {
		in, err := s.newEntry(t, &req.Cred, req.Parent, req.Name, ino, proto.ModeSymlink|0o777, 0, func(_, in *inode) error {
			in.Mode = proto.ModeSymlink | 0o777 // the setgid rule does not apply
			in.Target = req.Target
			in.Size = uint64(len(req.Target))
			return nil
		})
		if err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogSLink, in.Ino, req.Parent, req.Name)
		resp.Attr = in.attr()
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Readlink returns a symbolic link's target.
func (s *Service) Readlink(ctx context.Context, req *proto.ReadlinkReq) (*proto.ReadlinkResp, error) {
	var resp proto.ReadlinkResp
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		if !in.isSymlink() {
			return fmt.Errorf("mds: readlink %#x: not a symlink: %w", req.Ino, syscall.EINVAL)
		}
		resp.Target = in.Target
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Link makes a new name for a non-directory.
func (s *Service) Link(ctx context.Context, req *proto.LinkReq) (*proto.EntryResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	var resp proto.EntryResp
	err := s.update(ctx, s.tagged(req.Tag, proto.OpLink, &resp, func(t *mtx) error {
		dir, err := t.dir(req.NewParent)
		if err != nil {
			return err
		}
		if err := mayChangeEntries(&req.Cred, dir); err != nil {
			return err
		}
		in, err := t.inode(req.Ino)
		switch {
		case err != nil:
			return err
		case in.isDir():
			return fmt.Errorf("mds: link to directory %#x: %w", in.Ino, syscall.EPERM)
		case in.Nlink == 0:
			return fmt.Errorf("mds: link to unlinked %#x: %w", in.Ino, syscall.ENOENT)
		case in.Nlink >= maxLinks:
			return fmt.Errorf("mds: link to %#x: %w", in.Ino, syscall.EMLINK)
		}
		if _, ok, err := t.lookup(dir.Ino, req.Name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("mds: link %q in %#x: %w", req.Name, dir.Ino, syscall.EEXIST)
		}
		if err := t.link(dir.Ino, req.Name, in); err != nil {
			return err
		}
		in.Nlink++
		t.changed(in)
		if err := t.touchEntry(dir, req.Name, 0); err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogHLink, in.Ino, dir.Ino, req.Name)
		resp.Attr = in.attr()
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Unlink removes a non-directory entry. A regular file losing its last
// link is destroyed (objects queued for the OSTs, inode deleted), or, if a
// session holds it open, kept as an orphan until its last close.
func (s *Service) Unlink(ctx context.Context, req *proto.UnlinkReq) error {
	if err := checkName(req.Name); err != nil {
		return err
	}
	gate := gateHold{s: s}
	defer gate.release()
	queued := false
	err := s.update(ctx, s.tagged(req.Tag, proto.OpUnlink, nil, func(t *mtx) error {
		queued = false
		dir, err := t.dir(req.Parent)
		if err != nil {
			return err
		}
		if err := mayChangeEntries(&req.Cred, dir); err != nil {
			return err
		}
		d, ok, err := t.lookup(dir.Ino, req.Name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("mds: unlink %q in %#x: %w", req.Name, dir.Ino, syscall.ENOENT)
		}
		in, err := t.inode(d.Ino)
		if err != nil {
			return err
		}
		if in.isDir() {
			return fmt.Errorf("mds: unlink %q: %w", req.Name, syscall.EISDIR)
		}
		if err := stickyAllows(&req.Cred, dir, in); err != nil {
			return err
		}
		if err := t.unlinkEntry(dir.Ino, req.Name); err != nil {
			return err
		}
		if err := t.touchEntry(dir, req.Name, 0); err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogUnlink, in.Ino, dir.Ino, req.Name)
		queued, err = s.dropLink(t, in, &gate)
		return err
	}))
	if err != nil {
		return err
	}
	if queued {
		s.kickDestroy()
	}
	return nil
}

// dropLink removes one link of the non-directory in, whose entry the
// caller deleted. At the last link a regular file is destroyed or, if
// open, becomes an orphan; other types are deleted. It reports whether
// objects were queued for destruction.
func (s *Service) dropLink(t *mtx, in *inode, gate *gateHold) (bool, error) {
	if in.Nlink > 0 {
		in.Nlink--
	}
	t.changed(in)
	if in.Nlink > 0 {
		return false, nil
	}
	if !in.isRegular() {
		return false, t.remove(in)
	}
	gate.hold(in.Ino)
	if s.open.count(in.Ino) > 0 {
		return false, t.setRecord(t.k.orphan(in.Ino), &orphanRecord{Since: t.now})
	}
	return s.destroyInode(t, in)
}

// destroyInode deletes a regular file's inode and orphan record and queues
// its objects. It reports whether objects were queued.
func (s *Service) destroyInode(t *mtx, in *inode) (bool, error) {
	if err := t.kv.Delete(t.k.orphan(in.Ino)); err != nil {
		return false, err
	}
	queued, err := t.queueDestroy(in.Ino, in.objects())
	if err != nil {
		return false, err
	}
	return queued, t.remove(in)
}

// Rmdir removes an empty directory.
func (s *Service) Rmdir(ctx context.Context, req *proto.RmdirReq) error {
	if err := checkName(req.Name); err != nil {
		return err
	}
	return s.update(ctx, s.tagged(req.Tag, proto.OpRmdir, nil, func(t *mtx) error {
		dir, err := t.dir(req.Parent)
		if err != nil {
			return err
		}
		if err := mayChangeEntries(&req.Cred, dir); err != nil {
			return err
		}
		d, ok, err := t.lookup(dir.Ino, req.Name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("mds: rmdir %q in %#x: %w", req.Name, dir.Ino, syscall.ENOENT)
		}
		victim, err := t.inode(d.Ino)
		if err != nil {
			return err
		}
		if !victim.isDir() {
			return fmt.Errorf("mds: rmdir %q: %w", req.Name, syscall.ENOTDIR)
		}
		if err := stickyAllows(&req.Cred, dir, victim); err != nil {
			return err
		}
		if err := t.removeDir(dir, req.Name, victim); err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogRmdir, victim.Ino, dir.Ino, req.Name)
		return nil
	}))
}

// removeDir deletes the empty directory victim, entry name of dir, and
// the parent's link from victim's "..". It fails with ENOTEMPTY.
func (t *mtx) removeDir(dir *inode, name string, victim *inode) error {
	empty, err := t.empty(victim.Ino)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("mds: remove directory %q: %w", name, syscall.ENOTEMPTY)
	}
	if err := t.unlinkEntry(dir.Ino, name); err != nil {
		return err
	}
	if err := t.touchEntry(dir, name, -1); err != nil {
		return err
	}
	return t.remove(victim)
}

// Readdir returns the entries of a directory after req.After in name
// order, at most req.Max (capped at 1024), without "." and "..". It needs
// read permission; attributes (Plus) are returned only to a caller that
// may also search the directory.
func (s *Service) Readdir(ctx context.Context, req *proto.ReaddirReq) (*proto.ReaddirResp, error) {
	limit := req.Max
	if limit <= 0 || limit > maxReaddir {
		limit = maxReaddir
	}
	resp := proto.ReaddirResp{Entries: make([]proto.Dirent, 0, min(limit, 64))}
	var leased []*inode
	tok := s.leases.token()
	err := s.view(ctx, func(t *mtx) error {
		resp.Entries, resp.More = resp.Entries[:0], false
		dir, err := t.dirAttrs(req.Ino)
		if err != nil {
			return err
		}
		leased = append(leased[:0], dir)
		if err := need(&req.Cred, dir, mayRead, "readdir"); err != nil {
			return err
		}
		plus := req.Plus && permits(&req.Cred, dir, mayExec)
		start, end := t.k.dentryRange(dir.Ino, req.After)
		var scanErr error
		err = t.kv.Scan(ctx, start, end, limit+1, func(k, v []byte) bool {
			if len(resp.Entries) == limit {
				resp.More = true
				return false
			}
			name, err := t.k.dentryName(k)
			if err != nil {
				scanErr = err
				return false
			}
			var d dentry
			if scanErr = decode(v, &d); scanErr != nil {
				return false
			}
			resp.Entries = append(resp.Entries, proto.Dirent{Name: name, Ino: d.Ino, Mode: d.Type})
			return true
		})
		if err != nil {
			return fmt.Errorf("mds: readdir %#x: %w", dir.Ino, err)
		}
		if scanErr != nil || !plus {
			return scanErr
		}
		inos := make([]uint64, len(resp.Entries))
		for i := range resp.Entries {
			inos[i] = resp.Entries[i].Ino
		}
		attrs, err := t.inodesAttrs(inos)
		if err != nil {
			return err
		}
		seen, err := t.foldedAll(attrs)
		if err != nil {
			return err
		}
		for i := range resp.Entries {
			a := seen[i].attr()
			resp.Entries[i].Mode, resp.Entries[i].Attr = a.Mode, &a
		}
		leased = append(leased, attrs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	resp.Lease = s.grantLease(ctx, tok, leased...)
	return &resp, nil
}
