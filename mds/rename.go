package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// maxTreeDepth bounds the parent walk of the subtree check, so a corrupt
// parent chain cannot loop forever.
const maxTreeDepth = 1 << 16

// Rename moves Parent/Name to NewParent/NewName in one transaction. It
// replaces an existing target (a non-directory by a non-directory, an
// empty directory by a directory), refuses to move a directory into its
// own subtree (EINVAL), and honours RENAME_NOREPLACE (EEXIST if the target
// exists) and RENAME_EXCHANGE (both must exist; they swap).
func (s *Service) Rename(ctx context.Context, req *proto.RenameReq) error {
	if err := checkName(req.Name); err != nil {
		return err
	}
	if err := checkName(req.NewName); err != nil {
		return err
	}
	switch {
	case req.Flags&^(proto.RenameNoReplace|proto.RenameExchange) != 0:
		return fmt.Errorf("mds: rename flags %#x: %w", req.Flags, syscall.EINVAL)
	case req.Flags&proto.RenameNoReplace != 0 && req.Flags&proto.RenameExchange != 0:
		return fmt.Errorf("mds: rename with both NOREPLACE and EXCHANGE: %w", syscall.EINVAL)
	}
	gate := gateHold{s: s}
	defer gate.release()
	queued := false
	err := s.update(ctx, s.tagged(req.Tag, proto.OpRename, nil, func(t *mtx) error {
		var err error
		queued, err = s.rename(t, req, &gate)
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

// renameSide is one end of a rename: the directory, the name and the inode
// the name points at (nil if none).
type renameSide struct {
	dir  *inode
	name string
	in   *inode
}

// side loads one end of a rename, checking permission on its directory.
func (t *mtx) side(c *proto.Cred, parent uint64, name string) (renameSide, error) {
	dir, err := t.dir(parent)
	if err != nil {
		return renameSide{}, err
	}
	if err := mayChangeEntries(c, dir); err != nil {
		return renameSide{}, err
	}
	rs := renameSide{dir: dir, name: name}
	d, ok, err := t.lookup(dir.Ino, name)
	if err != nil || !ok {
		return rs, err
	}
	rs.in, err = t.inode(d.Ino)
	return rs, err
}

func (s *Service) rename(t *mtx, req *proto.RenameReq, gate *gateHold) (bool, error) {
	c := &req.Cred
	src, err := t.side(c, req.Parent, req.Name)
	if err != nil {
		return false, err
	}
	if src.in == nil {
		return false, fmt.Errorf("mds: rename %q in %#x: %w", req.Name, req.Parent, syscall.ENOENT)
	}
	dst, err := t.side(c, req.NewParent, req.NewName)
	if err != nil {
		return false, err
	}
	exchange := req.Flags&proto.RenameExchange != 0
	switch {
	case exchange && dst.in == nil:
		return false, fmt.Errorf("mds: exchange with missing %q: %w", req.NewName, syscall.ENOENT)
	case dst.in != nil && req.Flags&proto.RenameNoReplace != 0:
		return false, fmt.Errorf("mds: rename onto existing %q: %w", req.NewName, syscall.EEXIST)
	case dst.in != nil && dst.in.Ino == src.in.Ino:
		// The same file under both names (or the same name): POSIX says
		// rename does nothing and succeeds.
		return false, nil
	}
	if err := stickyAllows(c, src.dir, src.in); err != nil {
		return false, err
	}
	if dst.in != nil {
		if err := stickyAllows(c, dst.dir, dst.in); err != nil {
			return false, err
		}
	}
	if err := t.checkMove(c, src.in, src.dir, dst.dir, dst.name); err != nil {
		return false, err
	}
	if exchange {
		if err := t.checkMove(c, dst.in, dst.dir, src.dir, src.name); err != nil {
			return false, err
		}
		t.changelogRename(c, src.in.Ino, dst.dir.Ino, dst.name, src.dir.Ino, src.name, 0)
		t.changelogRename(c, dst.in.Ino, src.dir.Ino, src.name, dst.dir.Ino, dst.name, 0)
		return false, t.exchange(src, dst)
	}
	queued := false
	if dst.in != nil {
		if queued, err = s.replace(t, src.in, dst, gate); err != nil {
			return false, err
		}
	}
	if err := t.unlinkEntry(src.dir.Ino, src.name); err != nil {
		return false, err
	}
	if err := t.link(dst.dir.Ino, dst.name, src.in); err != nil {
		return false, err
	}
	var moved int32
	if src.in.isDir() && src.dir.Ino != dst.dir.Ino {
		src.in.Parent = dst.dir.Ino
		moved = 1
	}
	t.changed(src.in)
	if err := t.touchEntry(src.dir, src.name, -moved); err != nil {
		return false, err
	}
	if err := t.touchEntry(dst.dir, dst.name, moved); err != nil {
		return false, err
	}
	var victim uint64
	if dst.in != nil {
		victim = dst.in.Ino
	}
	t.changelogRename(c, src.in.Ino, dst.dir.Ino, dst.name, src.dir.Ino, src.name, victim)
	return queued, nil
}

// checkMove checks that directory in may move from dir from to dir to
// under name: the caller needs write permission on it (its ".." changes),
// to must not lie inside it, and to must have room for another
// subdirectory. A non-directory, or a move within one directory, needs
// nothing.
func (t *mtx) checkMove(c *proto.Cred, in, from, to *inode, name string) error {
	if !in.isDir() || from.Ino == to.Ino {
		return nil
	}
	if err := need(c, in, mayWrite, "move directory"); err != nil {
		return err
	}
	if n, err := t.linkCount(to, name); err != nil {
		return err
	} else if n >= maxLinks {
		return fmt.Errorf("mds: rename into %#x: %w", to.Ino, syscall.EMLINK)
	}
	// The walk below only reads the ancestors, which protects nothing
	// under snapshot isolation: two crossing moves (a/x into b/y/z, b/y
	// into a/x/w) write disjoint keys and would both commit, leaving a
	// cycle cut off from the root. Every such move writes the one rename
	// lock key, so they conflict and the loser retries on the new tree.
	if err := t.kv.Set(t.k.renameLock(), encodeU64(uint64(t.now))); err != nil {
		return fmt.Errorf("mds: take the rename lock: %w", err)
	}
	// Walk from the target directory up to the root: meeting the moved
	// directory means the move would detach a loop from the tree.
	cur := to
	for depth := 0; ; depth++ {
		if cur.Ino == in.Ino {
			return fmt.Errorf("mds: rename directory %#x into its own subtree %#x: %w", in.Ino, to.Ino, syscall.EINVAL)
		}
		if cur.Ino == RootIno || cur.Parent == 0 || cur.Parent == cur.Ino {
			return nil
		}
		if depth > maxTreeDepth {
			return fmt.Errorf("mds: parent chain of %#x too deep: %w", to.Ino, syscall.ELOOP)
		}
		next, err := t.dir(cur.Parent)
		if err != nil {
			return fmt.Errorf("mds: walk parents of %#x: %w", to.Ino, err)
		}
		cur = next
	}
}

// replace removes the target dst.in that moving in onto dst displaces. A
// directory may replace only an empty directory, a non-directory only a
// non-directory. It reports whether objects were queued for destruction.
func (s *Service) replace(t *mtx, in *inode, dst renameSide, gate *gateHold) (bool, error) {
	switch {
	case in.isDir() && !dst.in.isDir():
		return false, fmt.Errorf("mds: rename directory onto %q: %w", dst.name, syscall.ENOTDIR)
	case !in.isDir() && dst.in.isDir():
		return false, fmt.Errorf("mds: rename onto directory %q: %w", dst.name, syscall.EISDIR)
	case dst.in.isDir():
		return false, t.removeDir(dst.dir, dst.name, dst.in)
	}
	if err := t.unlinkEntry(dst.dir.Ino, dst.name); err != nil {
		return false, err
	}
	return s.dropLink(t, dst.in, gate)
}

// exchange swaps the inodes two names point at (RENAME_EXCHANGE), moving
// directories' parent pointers and their parents' link counts with them.
func (t *mtx) exchange(a, b renameSide) error {
	if err := t.link(a.dir.Ino, a.name, b.in); err != nil {
		return err
	}
	if err := t.link(b.dir.Ino, b.name, a.in); err != nil {
		return err
	}
	// Each directory loses the inode its name pointed at and gains the
	// other's: a subdirectory moving across changes both link counts.
	var da, db int32
	if a.dir.Ino != b.dir.Ino {
		if a.in.isDir() {
			a.in.Parent = b.dir.Ino
			da, db = da-1, db+1
		}
		if b.in.isDir() {
			b.in.Parent = a.dir.Ino
			da, db = da+1, db-1
		}
	}
	t.changed(a.in)
	t.changed(b.in)
	if err := t.touchEntry(a.dir, a.name, da); err != nil {
		return err
	}
	return t.touchEntry(b.dir, b.name, db)
}
