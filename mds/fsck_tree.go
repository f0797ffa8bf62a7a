package mds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// The checkers that judge the namespace census: link counts, and the shape
// of the directory tree (every directory reachable from the root through
// entries that agree with its parent pointer).

// linkChecker finds inodes whose link count disagrees with the entries
// pointing at them: for a directory 2 plus its subdirectories, for anything
// else the number of entries. An inode with links but no entry at all goes
// to /lost+found. Unlinked inodes (no link, no entry: open files on the
// orphan list) and directories no entry points at (the directory checker's
// business) are left alone.
type linkChecker struct {
	inos []uint64 // the census's inodes in order, once it is complete
	pos  int
}

// linkFix is what repairing a link count needs.
type linkFix struct {
	ino   uint64
	want  uint32
	adopt bool // no entry points at it: link it into /lost+found
}

func (c *linkChecker) name() string { return fsckLinks }

func (c *linkChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	if complete, err := r.buildCensus(ctx); !complete || err != nil {
		return nil, 0, false, err
	}
	census := r.census
	if c.inos == nil {
		c.inos = slices.Sorted(maps.Keys(census.inodes))
	}
	page := c.inos[c.pos:min(len(c.inos), c.pos+fsckPage)]
	var suspects []*fsckFinding
	for _, ino := range page {
		ci := census.inodes[ino]
		var fix linkFix
		var problem string
		switch {
		case ci.dir && (ci.refs > 0 || ino == RootIno):
			fix = linkFix{ino: ino, want: 2 + ci.subdirs}
			problem = fmt.Sprintf("directory has %d links, want %d (2 + %d subdirectories)", ci.nlink, fix.want, ci.subdirs)
		case ci.dir:
			continue
		case ci.refs == 0 && ci.nlink == 0:
			continue
		case ci.refs == 0:
			fix = linkFix{ino: ino, want: 1, adopt: true}
			problem = fmt.Sprintf("has %d links but no entry points at it", ci.nlink)
		default:
			fix = linkFix{ino: ino, want: ci.refs}
			problem = fmt.Sprintf("has %d links but %d entries point at it", ci.nlink, ci.refs)
		}
		if fix.adopt || fix.want != ci.nlink {
			suspects = append(suspects, &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino, Problem: problem}, fix: fix})
		}
	}
	found, err := r.stillUnchanged(ctx, suspects, func(f *fsckFinding) []uint64 { return []uint64{f.Ino} })
	if err != nil {
		return nil, 0, false, err
	}
	c.pos += len(page)
	return found, len(page), c.pos == len(c.inos), nil
}

// stillUnchanged keeps the suspects whose inodes (as verify lists them)
// still have the records the census read, looking in one fresh snapshot.
func (r *fsckRun) stillUnchanged(ctx context.Context, suspects []*fsckFinding, verify func(*fsckFinding) []uint64) ([]*fsckFinding, error) {
	if len(suspects) == 0 {
		return nil, nil
	}
	var found []*fsckFinding
	err := r.s.view(ctx, func(t *mtx) error {
		found = nil
		for _, f := range suspects {
			ok, err := r.census.unchanged(ctx, t, verify(f)...)
			if err != nil {
				return err
			}
			if ok {
				found = append(found, f)
			}
		}
		return nil
	})
	return found, err
}

func (c *linkChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(linkFix)
	var lf uint64
	if fix.adopt {
		var err error
		if lf, err = r.lostFoundDir(ctx); err != nil {
			return "", err
		}
	}
	action := ""
	err := r.s.update(ctx, func(t *mtx) error {
		if ok, err := r.census.unchanged(ctx, t, fix.ino); err != nil || !ok {
			return firstErr(err, errFsckVanished)
		}
		in, err := t.inode(fix.ino)
		if err != nil {
			return err
		}
		if in.isDir() {
			if err := t.setLinkCount(in, fix.want); err != nil {
				return err
			}
		} else {
			in.Nlink = fix.want
		}
		t.changed(in)
		action = fmt.Sprintf("set the link count to %d", fix.want)
		if fix.adopt {
			path, err := t.adopt(lf, in)
			if err != nil {
				return err
			}
			action = "linked it as " + path
		}
		return nil
	})
	return action, err
}

// dirChecker finds directories cut off from the root: no entry points at
// them, several do, their parent pointer disagrees with the entry that
// does, their parent does not exist, or their parent chain loops (a
// detached cycle, such as two crossing renames can leave). A cycle is
// reported once, at its smallest inode; directories hanging below a cycle
// or below a lost parent are not reported, since repairing that one makes
// them reachable again.
type dirChecker struct {
	dirs []uint64 // the census's directories in order, once it is complete
	pos  int
}

// Kinds of directory repair.
const (
	dirAdopt     = iota // drop its entries (if any) and link it into /lost+found
	dirKeepOne          // drop every entry but one, which becomes its parent
	dirSetParent        // point its parent at the one entry there is
)

// dirFix is what repairing a directory needs.
type dirFix struct {
	ino    uint64
	kind   int
	drop   []censusName // entries pointing at it to remove
	keep   censusName   // the entry that stays (dirKeepOne, dirSetParent)
	verify []uint64     // inodes whose census records must still hold
	// lostParent: the parent that does not exist, which must still not.
	lostParent uint64
}

func (c *dirChecker) name() string { return fsckDirs }

func (c *dirChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	if complete, err := r.buildCensus(ctx); !complete || err != nil {
		return nil, 0, false, err
	}
	census := r.census
	if c.dirs == nil {
		c.dirs = []uint64{}
		for _, ino := range slices.Sorted(maps.Keys(census.inodes)) {
			if census.inodes[ino].dir && ino != RootIno {
				c.dirs = append(c.dirs, ino)
			}
		}
	}
	page := c.dirs[c.pos:min(len(c.dirs), c.pos+fsckPage)]
	var suspects []*fsckFinding
	for _, ino := range page {
		if f := census.judgeDir(ino); f != nil {
			suspects = append(suspects, f)
		}
	}
	found, err := r.stillUnchanged(ctx, suspects, func(f *fsckFinding) []uint64 { return f.fix.(dirFix).verify })
	if err != nil {
		return nil, 0, false, err
	}
	c.pos += len(page)
	return found, len(page), c.pos == len(c.dirs), nil
}

// judgeDir returns what is wrong with directory ino by the census, or nil.
func (c *fsckCensus) judgeDir(ino uint64) *fsckFinding {
	ci := c.inodes[ino]
	finding := func(problem string, fix dirFix) *fsckFinding {
		fix.ino = ino
		if fix.verify == nil {
			fix.verify = []uint64{ino}
		}
		return &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino, Problem: problem}, fix: fix}
	}
	switch {
	case len(ci.names) == 0:
		return finding("directory is unreachable: no entry points at it", dirFix{kind: dirAdopt})
	case len(ci.names) > 1:
		keep := ci.names[0]
		for _, n := range ci.names {
			if n.parent == ci.parent {
				keep = n
			}
		}
		drop := slices.DeleteFunc(slices.Clone(ci.names), func(n censusName) bool { return n == keep })
		return finding(fmt.Sprintf("%d entries point at the directory", len(ci.names)),
			dirFix{kind: dirKeepOne, drop: drop, keep: keep})
	case ci.names[0].parent != ci.parent:
		return finding(fmt.Sprintf("its parent pointer names %#x but its entry %q is in %#x", ci.parent, ci.names[0].name, ci.names[0].parent),
			dirFix{kind: dirSetParent, keep: ci.names[0]})
	}
	// Its one entry is in its parent: walk up to the root.
	if pc := c.inodes[ci.parent]; pc == nil || !pc.dir {
		return finding(fmt.Sprintf("its parent %#x does not exist", ci.parent),
			dirFix{kind: dirAdopt, drop: ci.names, lostParent: ci.parent})
	}
	path := []uint64{ino}
	at := map[uint64]int{ino: 0}
	for p := ci.parent; p != RootIno; {
		if i, loop := at[p]; loop {
			cycle := path[i:]
			if i != 0 || slices.Min(cycle) != ino {
				return nil // below the cycle, or reported at its smallest member
			}
			return finding(fmt.Sprintf("directories %s form a cycle unreachable from the root", inoList(cycle)),
				dirFix{kind: dirAdopt, drop: ci.names, verify: slices.Clone(cycle)})
		}
		pc := c.inodes[p]
		if pc == nil || !pc.dir {
			return nil // an ancestor's parent is lost: reported there
		}
		at[p] = len(path)
		path = append(path, p)
		p = pc.parent
	}
	return nil
}

// inoList formats inode numbers for a finding.
func inoList(inos []uint64) string {
	s := ""
	for i, ino := range inos {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%#x", ino)
	}
	return s
}

func (c *dirChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(dirFix)
	var lf uint64
	if fix.kind == dirAdopt {
		var err error
		if lf, err = r.lostFoundDir(ctx); err != nil {
			return "", err
		}
	}
	action := ""
	err := r.s.update(ctx, func(t *mtx) error {
		// A repair moves a directory, as a rename does: it takes the
		// rename lock, so that a concurrent move of a directory whose
		// ancestor check read what this changes conflicts with it.
		if err := t.kv.Set(t.k.renameLock(), encodeU64(uint64(t.now))); err != nil {
			return fmt.Errorf("mds: take the rename lock: %w", err)
		}
		if ok, err := r.census.unchanged(ctx, t, fix.verify...); err != nil || !ok {
			return firstErr(err, errFsckVanished)
		}
		if fix.lostParent != 0 {
			if _, err := t.dirAttrs(fix.lostParent); err == nil {
				return errFsckVanished
			} else if !isErrno(err, syscall.ENOENT) && !isErrno(err, syscall.ENOTDIR) {
				return err
			}
		}
		for _, n := range fix.drop {
			if err := t.dropEntry(n.parent, n.name, fix.ino); err != nil {
				return err
			}
		}
		in, err := t.dir(fix.ino)
		if err != nil {
			return err
		}
		switch fix.kind {
		case dirAdopt:
			path, err := t.adopt(lf, in)
			if err != nil {
				return err
			}
			action = "moved it to " + path
		case dirKeepOne:
			in.Parent = fix.keep.parent
			t.changed(in)
			action = fmt.Sprintf("removed %d entries, kept %q in %#x", len(fix.drop), fix.keep.name, fix.keep.parent)
		case dirSetParent:
			in.Parent = fix.keep.parent
			t.changed(in)
			action = fmt.Sprintf("set its parent to %#x", fix.keep.parent)
		}
		return nil
	})
	return action, err
}
