package mds

import "fmt"

// Directory change shards.
//
// Every entry added to or removed from a directory changes the directory
// too: its mtime and ctime, and for a subdirectory its link count. Written
// into the directory's inode, that would make the inode a key every
// create, unlink and rename in the directory writes, so that concurrent
// ones conflict and retry in turn. Instead such a change goes to one of
// dirShards records of the directory, chosen by the name's hash: two
// changes in one directory conflict only when their names share a shard.
// No lock is held across the transaction; the engine's conflict check is
// what orders them.
//
// A directory's attributes are its inode's with every shard folded in:
// mtime and ctime the latest of them, the link count the inode's plus the
// shards' deltas. Only readers that report attributes fold (mtx.folded);
// a transaction that writes the inode read it unfolded, so the base it
// writes back never counts a shard twice.
//
// Removing a directory reads and deletes all its shards. The delete
// conflicts on TiKV with any create that wrote one of them (snapshot
// isolation checks only writes), and the read does on the embedded engine
// (it checks what a transaction read): rmdir cannot miss an entry that a
// concurrent create added, the race that writing the directory's inode in
// every create used to close.
const dirShards = 16

// dirShard is one change shard of a directory.
type dirShard struct {
	Mtime int64 `msgpack:"M,omitempty"`
	Ctime int64 `msgpack:"c,omitempty"`
	Nlink int32 `msgpack:"n,omitempty"` // change of the link count
}

// shardOf returns the shard a name's changes go to: FNV-1a of the name,
// inline (hash/fnv allocates a hasher and a copy of the name per call, on
// every create and unlink).
func shardOf(name string) uint8 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return uint8(h % dirShards)
}

// shardKey names one shard in a transaction's cache of them.
type shardKey struct {
	dir   uint64
	shard uint8
}

// shard returns a directory's shard as this transaction sees it.
func (t *mtx) shard(dir uint64, n uint8) (*dirShard, error) {
	if sh, ok := t.shards[shardKey{dir, n}]; ok {
		return sh, nil
	}
	sh := &dirShard{}
	if _, err := t.getRecord(t.k.dirShard(dir, n), sh); err != nil {
		return nil, fmt.Errorf("mds: read shard %d of directory %#x: %w", n, dir, err)
	}
	if t.shards == nil {
		t.shards = map[shardKey]*dirShard{}
	}
	t.shards[shardKey{dir, n}] = sh
	return sh, nil
}

// touchEntry records that name was added to or removed from dir: the
// directory's mtime and ctime become now and its link count moves by
// delta (a subdirectory's ".."). It writes only name's shard.
func (t *mtx) touchEntry(dir *inode, name string, delta int32) error {
	n := shardOf(name)
	sh, err := t.shard(dir.Ino, n)
	if err != nil {
		return err
	}
	sh.Mtime, sh.Ctime = t.now, t.now
	sh.Nlink += delta
	t.touched = true
	// The record read in this transaction shows the new times too (the
	// inode is written back with them only if something else puts it).
	dir.Mtime, dir.Ctime = t.now, t.now
	return t.setRecord(t.k.dirShard(dir.Ino, n), sh)
}

// clearShardTimes drops the times of dir's shards, for a setattr that
// sets the directory's mtime or ctime explicitly: the inode's then stand.
func (t *mtx) clearShardTimes(dir uint64) error {
	for n := range uint8(dirShards) {
		sh, err := t.shard(dir, n)
		if err != nil {
			return err
		}
		if sh.Mtime == 0 && sh.Ctime == 0 {
			continue
		}
		sh.Mtime, sh.Ctime = 0, 0
		if err := t.setRecord(t.k.dirShard(dir, n), sh); err != nil {
			return err
		}
	}
	return nil
}

// dropShards deletes a removed directory's shards, reading each first:
// see the comment at the top for why both.
func (t *mtx) dropShards(dir uint64) error {
	for n := range uint8(dirShards) {
		if _, err := t.shard(dir, n); err != nil {
			return err
		}
		delete(t.shards, shardKey{dir, n})
		if err := t.kv.Delete(t.k.dirShard(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// linkCount returns dir's link count with its shards folded in, for the
// check of a new subdirectory (through name) against maxLinks. Reading
// every shard would make the transaction conflict with every concurrent
// create in the directory, so it reads only name's shard while that is
// provably safe: every shard's delta stays below perShard (a shard that
// reaches it has the deltas of all moved into the inode here), so the
// total is below the inode's count plus dirShards*perShard. Near the
// limit it counts exactly, every time.
func (t *mtx) linkCount(dir *inode, name string) (uint32, error) {
	own, err := t.shard(dir.Ino, shardOf(name))
	if err != nil {
		return 0, err
	}
	const perShard = maxLinks / (2 * dirShards)
	if int64(dir.Nlink)+dirShards*perShard < maxLinks && own.Nlink < perShard-1 {
		return dir.Nlink + uint32(max(own.Nlink, 0)), nil
	}
	total := int64(dir.Nlink)
	for n := range uint8(dirShards) {
		sh, err := t.shard(dir.Ino, n)
		if err != nil {
			return 0, err
		}
		total += int64(sh.Nlink)
		if sh.Nlink != 0 {
			sh.Nlink = 0
			if err := t.setRecord(t.k.dirShard(dir.Ino, n), sh); err != nil {
				return 0, err
			}
		}
	}
	dir.Nlink = uint32(max(total, 2))
	t.put(dir)
	return dir.Nlink, nil
}

// folded returns in as a reader should see it: for a directory, a copy
// (never to be written back) with its shards folded into its times and
// link count; anything else unchanged.
func (t *mtx) folded(in *inode) (*inode, error) {
	out, err := t.foldedAll([]*inode{in})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// foldedAll is folded for many inodes, reading the shards of all their
// directories in one batch.
func (t *mtx) foldedAll(ins []*inode) ([]*inode, error) {
	var dirs []int
	var keys [][]byte
	for i, in := range ins {
		if !in.isDir() {
			continue
		}
		dirs = append(dirs, i)
		for n := range uint8(dirShards) {
			keys = append(keys, t.k.dirShard(in.Ino, n))
		}
	}
	if len(dirs) == 0 {
		return ins, nil
	}
	vals, err := t.kv.BatchGet(t.ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("mds: read the shards of %d directories: %w", len(dirs), err)
	}
	out := append([]*inode(nil), ins...)
	for j, i := range dirs {
		c := *ins[i]
		c.partial = true
		nlink := int64(c.Nlink)
		for n := range dirShards {
			var sh dirShard
			if own, ok := t.shards[shardKey{c.Ino, uint8(n)}]; ok {
				sh = *own
			} else if b := vals[j*dirShards+n]; b != nil {
				if err := decode(b, &sh); err != nil {
					return nil, fmt.Errorf("mds: shard %d of directory %#x: %w", n, c.Ino, err)
				}
			}
			c.Mtime, c.Ctime = max(c.Mtime, sh.Mtime), max(c.Ctime, sh.Ctime)
			nlink += int64(sh.Nlink)
		}
		c.Nlink = uint32(max(nlink, 2))
		out[i] = &c
	}
	return out, nil
}

// shardLinks returns the link-count deltas of the shards of dirs, for
// fsck's census; what it read feeds the census fingerprint, so that a
// repair sees a directory as changed when a shard of it has.
func (t *mtx) shardLinks(dirs []uint64) ([]int64, error) {
	keys := make([][]byte, 0, len(dirs)*dirShards)
	for _, d := range dirs {
		for n := range uint8(dirShards) {
			keys = append(keys, t.k.dirShard(d, n))
		}
	}
	vals, err := t.kv.BatchGet(t.ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("mds: read the shards of %d directories: %w", len(dirs), err)
	}
	out := make([]int64, len(dirs))
	for i, b := range vals {
		if b == nil {
			continue
		}
		var sh dirShard
		if err := decode(b, &sh); err != nil {
			return nil, fmt.Errorf("mds: shard %d of directory %#x: %w", i%dirShards, dirs[i/dirShards], err)
		}
		out[i/dirShards] += int64(sh.Nlink)
	}
	return out, nil
}

// setLinkCount sets directory dir's link count to n, moving every shard's
// delta into the inode (fsck's repair).
func (t *mtx) setLinkCount(dir *inode, n uint32) error {
	for i := range uint8(dirShards) {
		sh, err := t.shard(dir.Ino, i)
		if err != nil {
			return err
		}
		if sh.Nlink != 0 {
			sh.Nlink = 0
			if err := t.setRecord(t.k.dirShard(dir.Ino, i), sh); err != nil {
				return err
			}
		}
	}
	dir.Nlink = n
	t.put(dir)
	return nil
}
