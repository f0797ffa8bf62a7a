package mds

import (
	"context"
	"fmt"
	"slices"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// The checkers of the MDS's own work lists: the orphan list (files
// unlinked while open) and the destroy queue (objects the OSTs must
// delete).

// fsckQueueGrace is how long a destroy-queue entry, and the MDS that
// drains it, must have existed before fsck judges the entry by its objects:
// the destroy worker drains a pass at start, when kicked and every
// destroyIdle, and deletes an entry only after its objects are gone, so a
// younger entry whose objects are gone may simply be in the middle of a
// pass. An older one is one no worker finishes.
const fsckQueueGrace = 2 * destroyIdle

// orphanListChecker finds orphan-list entries of inodes that do not exist
// or that have links again: the list is for files whose last link went
// while they were open, to be destroyed at their last close.
type orphanListChecker struct {
	cursor []byte
}

func (c *orphanListChecker) name() string { return fsckOrphanList }

func (c *orphanListChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	k := r.s.keys
	start, end := k.orphanRange()
	return r.s.fsckRecords(ctx, &c.cursor, start, end, func(t *mtx, key, _ []byte) (*fsckFinding, error) {
		ino, err := k.orphanIno(key)
		if err != nil {
			return nil, err
		}
		problem, err := orphanProblem(t, ino)
		if err != nil || problem == "" {
			return nil, err
		}
		return &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino, Problem: problem}}, nil
	})
}

// orphanProblem says what is wrong with the orphan-list entry of ino, if
// anything.
func orphanProblem(t *mtx, ino uint64) (string, error) {
	in, err := t.inodeAttrs(ino)
	switch {
	case isErrno(err, syscall.ENOENT):
		return "on the orphan list but the inode does not exist", nil
	case err != nil:
		return "", err
	case in.Nlink > 0:
		return fmt.Sprintf("on the orphan list but has %d links", in.Nlink), nil
	}
	return "", nil
}

func (c *orphanListChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	err := r.s.update(ctx, func(t *mtx) error {
		var rec orphanRecord
		if ok, err := t.getRecord(t.k.orphan(f.Ino), &rec); err != nil || !ok {
			return firstErr(err, errFsckVanished)
		}
		if problem, err := orphanProblem(t, f.Ino); err != nil || problem == "" {
			return firstErr(err, errFsckVanished)
		}
		return t.kv.Delete(t.k.orphan(f.Ino))
	})
	return "removed the orphan-list entry", err
}

// destroyQueueChecker finds destroy-queue entries that list objects of a
// live file's current layout (which must never be destroyed) and entries
// whose objects are all gone already (which no pass will ever finish if
// their OST is gone, and which otherwise only cost a pass).
type destroyQueueChecker struct {
	cursor []byte
}

// queueFix is what repairing a destroy-queue entry needs.
type queueFix struct {
	key  []byte
	ino  uint64
	fp   uint64 // fingerprint of the entry when judged (gone entries)
	live bool   // it lists live objects: take them off, else drop it
}

// queuedEntry is a destroy-queue entry read in a step.
type queuedEntry struct {
	key []byte
	ino uint64
	fp  uint64
	rec destroyRecord
}

func (c *destroyQueueChecker) name() string { return fsckDestroyQueue }

func (c *destroyQueueChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	k := r.s.keys
	start, end := k.destroyRange()
	if c.cursor == nil {
		c.cursor = start
	}
	var found []*fsckFinding
	var old []queuedEntry
	var n int
	var done bool
	cutoff := r.start.Add(-fsckQueueGrace).UnixNano()
	if r.start.Sub(r.s.start) < fsckQueueGrace {
		cutoff = 0 // this MDS's worker has not had its time yet
	}
	cursor := slices.Clone(c.cursor)
	err := r.s.view(ctx, func(t *mtx) error {
		found, old = nil, nil
		cursor = slices.Clone(c.cursor)
		var err error
		n, done, err = fsckScan(ctx, t, &cursor, end, func(key, v []byte) error {
			q := queuedEntry{key: slices.Clone(key), fp: fingerprint(v)}
			var err error
			if q.ino, _, err = k.destroyID(key); err != nil {
				return err
			}
			if err := decode(v, &q.rec); err != nil {
				return err
			}
			live, err := liveQueued(t, q.ino, q.rec.Objs)
			if err != nil {
				return err
			}
			switch {
			case len(live) > 0:
				found = append(found, &fsckFinding{
					FsckFinding: proto.FsckFinding{Ino: q.ino, Object: &live[0],
						Problem: fmt.Sprintf("destroy-queue entry lists %d objects of the file's current layout", len(live))},
					fix: queueFix{key: q.key, ino: q.ino, live: true},
				})
			case q.rec.Queued < cutoff:
				old = append(old, q)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, n, false, err
	}
	gone, err := r.allGone(ctx, old)
	if err != nil {
		return nil, n, false, err
	}
	found = append(found, gone...)
	c.cursor = cursor
	return found, n, done, nil
}

// liveQueued returns the objects of objs that ino's current layout holds.
func liveQueued(t *mtx, ino uint64, objs []proto.ObjRef) ([]proto.ObjRef, error) {
	in, err := t.inode(ino)
	if isErrno(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil || in.Layout == nil {
		return nil, err
	}
	cur := map[layout.Object]bool{}
	for _, o := range layoutObjects(in.Layout) {
		cur[layout.Object{OST: o.OST, ID: o.ID}] = true
	}
	var live []proto.ObjRef
	for _, o := range objs {
		if cur[layout.Object{OST: o.OST, ID: o.ID}] {
			live = append(live, o)
		}
	}
	return live, nil
}

// allGone returns findings for the entries whose objects the OSTs all
// report absent, each checked unchanged in a fresh snapshot. Entries with
// an object on an OST that could not be asked are not judged.
func (r *fsckRun) allGone(ctx context.Context, entries []queuedEntry) ([]*fsckFinding, error) {
	var objs []proto.ObjRef
	for _, q := range entries {
		objs = append(objs, q.rec.Objs...)
	}
	if len(objs) == 0 {
		return nil, nil
	}
	state, err := r.probeObjects(ctx, objs)
	if err != nil {
		return nil, err
	}
	var suspects []queuedEntry
	for _, q := range entries {
		gone := true
		for _, o := range q.rec.Objs {
			st, asked := state[layout.Object{OST: o.OST, ID: o.ID}]
			gone = gone && asked && !st.Exists
		}
		if gone {
			suspects = append(suspects, q)
		}
	}
	var found []*fsckFinding
	err = r.s.view(ctx, func(t *mtx) error {
		found = nil
		for _, q := range suspects {
			b, err := t.kv.Get(ctx, q.key)
			if err != nil {
				return err
			}
			if b != nil && fingerprint(b) == q.fp {
				found = append(found, &fsckFinding{
					FsckFinding: proto.FsckFinding{Ino: q.ino,
						Problem: fmt.Sprintf("destroy-queue entry of %d objects that are all gone already", len(q.rec.Objs))},
					fix: queueFix{key: q.key, ino: q.ino, fp: q.fp},
				})
			}
		}
		return nil
	})
	return found, err
}

func (c *destroyQueueChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(queueFix)
	action := ""
	err := r.s.update(ctx, func(t *mtx) error {
		b, err := t.kv.Get(ctx, fix.key)
		if err != nil || b == nil {
			return firstErr(err, errFsckVanished)
		}
		if !fix.live {
			if fingerprint(b) != fix.fp {
				return errFsckVanished
			}
			action = "removed the entry"
			return t.kv.Delete(fix.key)
		}
		var rec destroyRecord
		if err := decode(b, &rec); err != nil {
			return err
		}
		live, err := liveQueued(t, fix.ino, rec.Objs)
		if err != nil || len(live) == 0 {
			return firstErr(err, errFsckVanished)
		}
		rec.Objs = slices.DeleteFunc(rec.Objs, func(o proto.ObjRef) bool { return slices.Contains(live, o) })
		action = fmt.Sprintf("took %d live objects off the entry", len(live))
		if len(rec.Objs) == 0 {
			action = "removed the entry: all its objects are live"
			return t.kv.Delete(fix.key)
		}
		return t.setRecord(fix.key, &rec)
	})
	return action, err
}
