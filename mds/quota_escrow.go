package mds

import (
	"fmt"
	"maps"
	"slices"
	"syscall"
)

// The hard inode limit is held exactly by escrow: while an ID has one, its
// usage shards are Capped, and each holds a share of the limit (Cap); the
// shares add up to the limit. A create takes from its inode's shard: under
// the shard's cap it writes only that shard, and two creates on one shard
// conflict on it. A shard at its cap has the transaction read every shard
// and share out what is left of the limit again, writing them all, so it
// conflicts with every create that took from any of them; if nothing is
// left, EDQUOT. Setting the limit shares it out the same way.

// quotaApply adds an ID's per-shard deltas to its shards, holding the
// escrow of a hard inode limit.
func (t *mtx) quotaApply(id quotaID, deltas map[uint8]*quotaDelta) error {
	shards := map[uint8]*quotaUsage{}
	get := func(s uint8) (*quotaUsage, error) {
		if u := shards[s]; u != nil {
			return u, nil
		}
		u := &quotaUsage{}
		if _, err := t.getRecord(t.k.quotaUsage(id.typ, id.id, s), u); err != nil {
			return nil, err
		}
		shards[s] = u
		return u, nil
	}
	dirty := map[uint8]bool{}
	for _, s := range slices.Sorted(maps.Keys(deltas)) {
		d := deltas[s]
		if d.inodes == 0 && d.bytes == 0 {
			continue
		}
		u, err := get(s)
		if err != nil {
			return err
		}
		if u.Capped && d.inodes > 0 && u.Inodes+d.inodes > u.Cap {
			for all := range uint8(quotaShards) {
				if _, err := get(all); err != nil {
					return err
				}
				dirty[all] = true
			}
			if err := shareOut(shards, s, d.inodes, id); err != nil {
				return err
			}
		}
		u.Inodes += d.inodes
		u.Bytes += d.bytes
		u.Ops++
		dirty[s] = true
	}
	for s := range dirty {
		if err := t.setRecord(t.k.quotaUsage(id.typ, id.id, s), shards[s]); err != nil {
			return err
		}
	}
	return nil
}

// shareOut shares out again what is left of an ID's hard inode limit (the
// sum of the caps of all its shards), after need more inodes in shard s,
// or fails with EDQUOT.
func shareOut(shards map[uint8]*quotaUsage, s uint8, need int64, id quotaID) error {
	var limit, used int64
	for _, u := range shards {
		if u.Capped {
			limit += u.Cap
		}
		used += u.Inodes
	}
	if used+need > limit {
		return fmt.Errorf("mds: inode quota of %s %d: %d inodes, limit %d: %w", quotaTypeName(id.typ), id.id, used+need, limit, syscall.EDQUOT)
	}
	setCaps(shards, limit-used-need)
	shards[s].Cap += need
	return nil
}

// setCaps caps every shard at its usage plus an equal part of room (which
// may be negative: an ID past a limit just set), the parts adding up to
// room.
func setCaps(shards map[uint8]*quotaUsage, room int64) {
	n := int64(quotaShards)
	base := room / n
	if room%n != 0 && room < 0 {
		base-- // floor
	}
	rest := room - base*n // 0 <= rest < n
	for s := range uint8(quotaShards) {
		share := base
		if int64(s) < rest {
			share++
		}
		u := shards[s]
		u.Capped, u.Cap = true, u.Inodes+share
	}
}

// quotaEscrow shares a new hard inode limit out over an ID's shards (or
// lifts the caps when hard is 0).
func (t *mtx) quotaEscrow(id quotaID, hard uint64) error {
	shards := map[uint8]*quotaUsage{}
	var used int64
	for s := range uint8(quotaShards) {
		u := &quotaUsage{}
		if _, err := t.getRecord(t.k.quotaUsage(id.typ, id.id, s), u); err != nil {
			return err
		}
		shards[s] = u
		used += u.Inodes
	}
	if hard == 0 {
		for _, u := range shards {
			u.Capped, u.Cap = false, 0
		}
	} else {
		setCaps(shards, int64(hard)-used)
	}
	for s, u := range shards {
		if err := t.setRecord(t.k.quotaUsage(id.typ, id.id, s), u); err != nil {
			return err
		}
	}
	return nil
}
