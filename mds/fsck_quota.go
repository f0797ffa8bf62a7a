package mds

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/stratafs/strata/proto"
)

// quotaChecker rebuilds quota usage: it reads every usage counter, counts
// every inode under its user, group and project, and reports the IDs whose
// counters disagree with the count; repair sets them right. The count spans
// many transactions, so an ID counts as wrong only if none of its counters
// changed meanwhile: every change of an ID's usage bumps a counter's Ops,
// so a sum of Ops unchanged from the first read to the repair's own read
// proves that nothing changed the ID's usage, and so its count, in
// between.
type quotaChecker struct {
	phase  int // 0: reading counters, 1: counting inodes, 2: comparing
	cursor []byte
	stored map[quotaID]quotaUsage // the counters' sums (Ops too) as first read
	census map[quotaID]quotaUsage // what the inodes add up to
	todo   []quotaID              // IDs to compare, in phase 2
}

// quotaFix is what repairing an ID's usage needs.
type quotaFix struct {
	id     quotaID
	ops    uint64 // the Ops sum the judgment rests on
	census quotaUsage
}

func (c *quotaChecker) name() string { return fsckQuota }

func (c *quotaChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	k := r.s.keys
	switch c.phase {
	case 0:
		start, end := k.quotaUsageAll()
		if c.cursor == nil {
			c.cursor, c.stored, c.census = start, map[quotaID]quotaUsage{}, map[quotaID]quotaUsage{}
		}
		var n int
		var done bool
		err := r.s.fsckView(ctx, &c.cursor, func(t *mtx, cur *[]byte) error {
			var err error
			n, done, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
				id, err := k.quotaUsageIDs(key)
				if err != nil {
					return err
				}
				var u quotaUsage
				if err := decode(v, &u); err != nil {
					return err
				}
				s := c.stored[id]
				s.Inodes, s.Bytes, s.Ops = s.Inodes+u.Inodes, s.Bytes+u.Bytes, s.Ops+u.Ops
				c.stored[id] = s
				return nil
			})
			return err
		})
		if err == nil && done {
			c.phase, c.cursor = 1, nil
		}
		return nil, n, false, err
	case 1:
		start, end := k.inodeRange()
		if c.cursor == nil {
			c.cursor = start
		}
		var n int
		var done bool
		err := r.s.fsckView(ctx, &c.cursor, func(t *mtx, cur *[]byte) error {
			var err error
			n, done, err = fsckScan(ctx, t, cur, end, func(key, v []byte) error {
				ino, err := k.inodeIno(key)
				if err != nil {
					return err
				}
				in := &inode{}
				if err := decodeInodeAttrs(v, in); err != nil {
					return fmt.Errorf("inode %#x: %w", ino, err)
				}
				q := quotaOf(in)
				for _, id := range q.ids() {
					u := c.census[id]
					u.Inodes++
					u.Bytes += q.bytes
					c.census[id] = u
				}
				return nil
			})
			return err
		})
		if err == nil && done {
			c.phase = 2
			ids := map[quotaID]bool{}
			for id := range c.stored {
				ids[id] = true
			}
			for id := range c.census {
				ids[id] = true
			}
			c.todo = slices.SortedFunc(maps.Keys(ids), func(a, b quotaID) int {
				if a.typ != b.typ {
					return int(a.typ) - int(b.typ)
				}
				return int(int64(a.id) - int64(b.id))
			})
		}
		return nil, n, false, err
	}
	// Phase 2: compare, a page of IDs at a time, against a fresh read.
	page := c.todo[:min(len(c.todo), fsckPage)]
	c.todo = c.todo[len(page):]
	var found []*fsckFinding
	err := r.s.view(ctx, func(t *mtx) error {
		found = nil
		for _, id := range page {
			stored, census := c.stored[id], c.census[id]
			if stored.Inodes == census.Inodes && stored.Bytes == census.Bytes {
				continue
			}
			now, err := t.quotaUsageOf(id)
			if err != nil {
				return err
			}
			if now.Ops != stored.Ops {
				r.note("quota usage of %s %d not judged: it changed during the check", quotaTypeName(id.typ), id.id)
				continue
			}
			found = append(found, &fsckFinding{
				FsckFinding: proto.FsckFinding{Problem: fmt.Sprintf("%s %d uses %d inodes and %d bytes, its counters say %d and %d",
					quotaTypeName(id.typ), id.id, census.Inodes, census.Bytes, stored.Inodes, stored.Bytes)},
				fix: quotaFix{id: id, ops: stored.Ops, census: census},
			})
		}
		return nil
	})
	return found, len(page), len(c.todo) == 0, err
}

func (c *quotaChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	fix := f.fix.(quotaFix)
	err := r.s.update(ctx, func(t *mtx) error {
		now, err := t.quotaUsageOf(fix.id)
		if err != nil {
			return err
		}
		if now.Ops != fix.ops {
			return errFsckVanished // changed since: the next run judges it
		}
		key := t.k.quotaUsage(fix.id.typ, fix.id.id, 0)
		var u quotaUsage
		if _, err := t.getRecord(key, &u); err != nil {
			return err
		}
		u.Inodes += fix.census.Inodes - now.Inodes
		u.Bytes += fix.census.Bytes - now.Bytes
		u.Ops++
		return t.setRecord(key, &u)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("set the usage to %d inodes and %d bytes", fix.census.Inodes, fix.census.Bytes), nil
}
