package mds

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// The namespace side of fsck: the keys it scans, the census of inodes and
// entries the link and directory checkers share, /lost+found, and the
// dangling-entries checker.

// Decoders and ranges for the scans fsck makes over keys of keys.go.

// inodeRange covers every inode record.
func (k keys) inodeRange() ([]byte, []byte) { return rangeOf(k.tagged(tagInode, 0)) }

// inodeIno returns the inode an inode key names.
func (k keys) inodeIno(key []byte) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) != n+8 || key[len(k.prefix)] != tagInode {
		return 0, fmt.Errorf("mds: bad inode key %q", key)
	}
	return binary.BigEndian.Uint64(key[n:]), nil
}

// allDentries covers the entries of every directory.
func (k keys) allDentries() ([]byte, []byte) { return rangeOf(k.tagged(tagDentry, 0)) }

// dentryParent returns the directory a dentry key is in.
func (k keys) dentryParent(key []byte) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) <= n+8 || key[len(k.prefix)] != tagDentry {
		return 0, fmt.Errorf("mds: bad dentry key %q", key)
	}
	return binary.BigEndian.Uint64(key[n:]), nil
}

// destroysOf covers the destroy-queue entries of one inode.
func (k keys) destroysOf(ino uint64) ([]byte, []byte) {
	return rangeOf(binary.BigEndian.AppendUint64(k.tagged(tagDestroy, 8), ino))
}

// lostFoundName is the root directory where repairs put what they find no
// place for.
const lostFoundName = "lost+found"

// lostFoundDir returns /lost+found, creating it (root's, mode 0700, on MDT
// 0) the first time a repair needs it.
func (r *fsckRun) lostFoundDir(ctx context.Context) (uint64, error) {
	if r.lostFound != 0 {
		return r.lostFound, nil
	}
	s := r.s
	var ino uint64
	err := s.view(ctx, func(t *mtx) error {
		d, ok, err := t.lookup(RootIno, lostFoundName)
		if ok {
			ino = d.Ino
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if ino == 0 {
		resp, err := s.Mkdir(ctx, &proto.MkdirReq{Parent: RootIno, Name: lostFoundName, Mode: 0o700, MDT: 0})
		if err != nil && !isErrno(err, syscall.EEXIST) {
			return 0, fmt.Errorf("mds: fsck: create /%s: %w", lostFoundName, err)
		}
		if err != nil {
			return r.lostFoundDir(ctx)
		}
		ino = resp.Attr.Ino
	}
	r.lostFound = ino
	return ino, nil
}

// adopt links in into lost+found (lf) under a name made of its inode
// number; a directory gets lost+found as its parent, which gains a link.
// The caller sets in's own link count.
func (t *mtx) adopt(lf uint64, in *inode) (string, error) {
	dir, err := t.dir(lf)
	if err != nil {
		return "", fmt.Errorf("mds: fsck: /%s: %w", lostFoundName, err)
	}
	name := fmt.Sprintf("#%x", in.Ino)
	for i := 1; ; i++ {
		_, ok, err := t.lookup(dir.Ino, name)
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		name = fmt.Sprintf("#%x.%d", in.Ino, i)
	}
	if err := t.link(dir.Ino, name, in); err != nil {
		return "", err
	}
	if in.isDir() {
		in.Parent = dir.Ino
		dir.Nlink++
	}
	t.touch(dir)
	t.changed(in)
	return "/" + lostFoundName + "/" + name, nil
}

// dropEntry removes the entry name of parent, which must point at ino, and
// the link it gave parent if ino is a directory (by the entry's type).
func (t *mtx) dropEntry(parent uint64, name string, ino uint64) error {
	d, ok, err := t.lookup(parent, name)
	if err != nil {
		return err
	}
	if !ok || d.Ino != ino {
		return errFsckVanished
	}
	if err := t.unlinkEntry(parent, name); err != nil {
		return err
	}
	dir, err := t.dir(parent)
	if isErrno(err, syscall.ENOENT) || isErrno(err, syscall.ENOTDIR) {
		return nil // an entry of a directory that does not exist
	}
	if err != nil {
		return err
	}
	if d.Type == proto.ModeDir && dir.Nlink > 2 {
		dir.Nlink--
	}
	t.touch(dir)
	return nil
}

// danglingChecker finds directory entries that point at inodes that do not
// exist, or that lie in directories that do not exist. Entry and inodes are
// read in one snapshot, and a create or unlink writes both in one
// transaction, so what it finds is never a half-done operation.
type danglingChecker struct {
	cursor []byte
}

// danglingFix is what repairing a dangling entry needs.
type danglingFix struct {
	parent uint64
	name   string
	ino    uint64
}

func (c *danglingChecker) name() string { return fsckDangling }

func (c *danglingChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	k := r.s.keys
	start, end := k.allDentries()
	if c.cursor == nil {
		c.cursor = start
	}
	var found []*fsckFinding
	var n int
	var done bool
	err := r.s.fsckView(ctx, &c.cursor, func(t *mtx, cur *[]byte) error {
		found = nil
		dirOK := map[uint64]bool{}
		var err error
		n, done, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
			parent, err := k.dentryParent(key)
			if err != nil {
				return err
			}
			name, err := k.dentryName(key)
			if err != nil {
				return err
			}
			var d dentry
			if err := decode(v, &d); err != nil {
				return err
			}
			ok, seen := dirOK[parent]
			if !seen {
				dir, err := t.dirAttrs(parent)
				if err != nil && !isErrno(err, syscall.ENOENT) && !isErrno(err, syscall.ENOTDIR) {
					return err
				}
				ok = dir != nil && err == nil
				dirOK[parent] = ok
			}
			problem := ""
			if !ok {
				problem = fmt.Sprintf("entry %q is in %#x, which is not a directory that exists", name, parent)
			} else if b, err := t.kv.Get(ctx, k.inode(d.Ino)); err != nil {
				return err
			} else if b == nil {
				problem = fmt.Sprintf("entry %q in %#x points at inode %#x, which does not exist", name, parent, d.Ino)
			}
			if problem != "" {
				found = append(found, &fsckFinding{
					FsckFinding: proto.FsckFinding{Ino: d.Ino, Problem: problem},
					fix:         danglingFix{parent: parent, name: name, ino: d.Ino},
				})
			}
			return nil
		})
		return err
	})
	return found, n, done, err
}

func (c *danglingChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(danglingFix)
	err := r.s.update(ctx, func(t *mtx) error {
		_, perr := t.dirAttrs(fix.parent)
		child, err := t.kv.Get(ctx, t.k.inode(fix.ino))
		if err != nil {
			return err
		}
		if perr == nil && child != nil {
			return errFsckVanished
		}
		return t.dropEntry(fix.parent, fix.name, fix.ino)
	})
	if err != nil {
		return "", err
	}
	return "removed the entry", nil
}

// fsckCensus is one pass over every inode and then every entry: what the
// link-count and directory checkers judge by. It is built in pages, so it is
// not a snapshot; each inode's fingerprint, taken in the first pass, is what
// a checker compares a fresh read with before it trusts the counts.
type fsckCensus struct {
	entries bool   // the inodes are in; the entries are being read
	done    bool   // both passes are over
	cursor  []byte // position of the pass under way
	inodes  map[uint64]*censusInode
}

// censusInode is what the census knows of one inode.
type censusInode struct {
	nlink   uint32
	dir     bool
	parent  uint64
	fp      uint64 // fingerprint of the record as the census read it
	refs    uint32 // entries pointing at it
	subdirs uint32 // entries in it pointing at directories
	// names are the entries pointing at a directory (normally one).
	names []censusName
}

// censusName is one entry pointing at a directory.
type censusName struct {
	parent uint64
	name   string
}

// buildCensus reads the next page of the run's census and reports whether
// the census is complete.
func (r *fsckRun) buildCensus(ctx context.Context) (bool, error) {
	c := r.census
	if c == nil {
		c = &fsckCensus{inodes: map[uint64]*censusInode{}}
		c.cursor, _ = r.s.keys.inodeRange()
		r.census = c
	}
	if c.done {
		return true, nil
	}
	k := r.s.keys
	var passDone bool
	err := r.s.fsckView(ctx, &c.cursor, func(t *mtx, cur *[]byte) error {
		var err error
		if !c.entries {
			_, end := k.inodeRange()
			page := map[uint64]*censusInode{}
			_, passDone, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
				ino, err := k.inodeIno(key)
				if err != nil {
					return err
				}
				var in inode
				if err := decodeInodeAttrs(v, &in); err != nil {
					return fmt.Errorf("inode %#x: %w", ino, err)
				}
				page[ino] = &censusInode{nlink: in.Nlink, dir: in.isDir(), parent: in.Parent, fp: fingerprint(v)}
				return nil
			})
			if err != nil {
				return err
			}
			// A directory's link count is its inode's plus its shards'.
			var dirs []uint64
			for ino, ci := range page {
				if ci.dir {
					dirs = append(dirs, ino)
				}
			}
			deltas, err := t.shardLinks(dirs)
			if err != nil {
				return err
			}
			for i, ino := range dirs {
				ci := page[ino]
				ci.nlink = uint32(max(int64(ci.nlink)+deltas[i], 2))
				ci.fp ^= uint64(deltas[i])
			}
			for ino, ci := range page {
				c.inodes[ino] = ci
			}
			return nil
		}
		_, end := k.allDentries()
		type seen struct {
			parent uint64
			name   string
			d      dentry
		}
		var page []seen
		_, passDone, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
			parent, err := k.dentryParent(key)
			if err != nil {
				return err
			}
			name, err := k.dentryName(key)
			if err != nil {
				return err
			}
			var d dentry
			if err := decode(v, &d); err != nil {
				return err
			}
			page = append(page, seen{parent, name, d})
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			child := c.inodes[e.d.Ino]
			isDir := e.d.Type == proto.ModeDir
			if child != nil {
				child.refs++
				isDir = child.dir
				if child.dir {
					child.names = append(child.names, censusName{e.parent, e.name})
				}
			}
			if p := c.inodes[e.parent]; p != nil && isDir {
				p.subdirs++
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if passDone && !c.entries {
		c.entries = true
		c.cursor, _ = k.allDentries()
	} else if passDone {
		c.done = true
	}
	return c.done, nil
}

// unchanged reports, in t, whether every inode of inos still has the record
// the census read (false also if one is gone).
func (c *fsckCensus) unchanged(ctx context.Context, t *mtx, inos ...uint64) (bool, error) {
	for _, ino := range inos {
		ci := c.inodes[ino]
		if ci == nil {
			return false, nil
		}
		b, err := t.kv.Get(ctx, t.k.inode(ino))
		if err != nil {
			return false, fmt.Errorf("mds: read inode %#x: %w", ino, err)
		}
		if b == nil {
			return false, nil
		}
		fp := fingerprint(b)
		if ci.dir {
			deltas, err := t.shardLinks([]uint64{ino})
			if err != nil {
				return false, err
			}
			fp ^= uint64(deltas[0])
		}
		if fp != ci.fp {
			return false, nil
		}
	}
	return true, nil
}
