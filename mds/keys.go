package mds

import (
	"encoding/binary"
	"fmt"
)

// Key schema. Every key of a filesystem lives under its prefix
//
//	P = 'F' fsname 0x00
//
// (fsname never contains NUL), so one TiKV cluster can hold several
// filesystems and a range scan never crosses from one into another. Integers
// are big-endian so that keys sort numerically. Values are msgpack unless
// noted.
//
//	'R' fsname                    -> int64 BE format time: the registry of
//	                                 filesystems in the store, outside any
//	                                 prefix, so Run finds the one to serve
//	                                 with a short scan
//	P 'C'                         -> clusterRecord: fsname, default layout,
//	                                 format time, next OST index
//	P 'M' mdt(u32)                -> mdtRecord: an MDT and the address of the
//	                                 MDS serving it
//	P 'N' mdt(u32)                -> u64 BE: the next unallocated inode sequence
//	                                 of an MDT (handed out in batches)
//	P 'O' ost(u32)                -> ostRecord: index, uuid, OSS address, pools
//	P 'I' ino(u64)                -> inode: attributes, layout, dir parent,
//	                                 consistency flags, POSIX ACLs (kept in
//	                                 the inode, not under 'X', so that every
//	                                 permission check reads one record)
//	P 'D' parent(u64) name        -> dentry: child inode and type; the
//	                                 entries of a directory are one range, in
//	                                 name order, so readdir is a scan
//	P 'X' ino(u64) name           -> xattr value (msgpack bin)
//	P 'Z' ino(u64)                -> orphanRecord: a file unlinked while open
//	P 'Q' ino(u64) seq(u32)       -> destroyRecord: objects the OSTs must
//	                                 delete; seq is the smallest object
//	                                 sequence in the batch, unique per file
//	                                 because sequences are never reused
//	P 'T' ino(u64)                -> truncateRecord: a truncate whose
//	                                 objects are being punched; the size is
//	                                 committed (and the record deleted) only
//	                                 once every object is cut, and an MDS
//	                                 finishes records a crash left behind
//	P 'S' session(u64)            -> sessionRecord: a client session; its
//	                                 liveness is kept in the memory of the
//	                                 MDSes it renews with, never written per
//	                                 operation, and restarts with each MDS
//	P 'H' handle(u64)             -> handleRecord: a file open for writing
//	                                 (size merging and orphans must survive
//	                                 an MDS restart; read-opens are replayed
//	                                 by their clients instead)
//	P 'r' session(u64) slot(u16)  -> replyRecord: the last modifying request
//	                                 of a session through one of its reply
//	                                 slots and its reply, written in the
//	                                 transaction of the request (see
//	                                 proto.ReqTag)
//	P 'A' ino(u64)                -> hsmActionRecord: the HSM action
//	                                 queued or running for a file (one at
//	                                 a time); the coordinator's queue is
//	                                 this range, so it outlives any MDS;
//	                                 queuing and finishing an action both
//	                                 write it and the inode (hsm.go)
//	P 'G' agent(u64)              -> hsmAgentRecord: a registered copytool
//	P 'L'                         -> i64 BE unix nanoseconds: the rename
//	                                 lock (Lustre's big rename lock), written
//	                                 by every move of a directory to another
//	                                 parent, so that two moves whose ancestor
//	                                 checks read each other's directories
//	                                 conflict (snapshot isolation protects
//	                                 nothing a transaction only reads)
//	P 'P' name                    -> poolRecord: an OST pool and its
//	                                 members (each member's ostRecord also
//	                                 names the pool, for the allocator);
//	                                 adding and removing members writes it,
//	                                 so destroying a pool conflicts with them
//	P 'J' ino(u64)                -> migrationRecord: a restripe of a file
//	                                 in progress (strata migrate): its new
//	                                 layout, whether the file is frozen and
//	                                 until when; starting, committing and
//	                                 aborting write it and the inode
//	P 'K' mdt(u32) index(u64)     -> proto.ChangelogEntry: the changelog
//	                                 of an MDT, written in the transaction
//	                                 of the change it records, numbered by
//	                                 the MDT's owner (changelog.go)
//	P 'U' id                      -> changelogUser: a changelog consumer
//	                                 and its cursor per MDT
//	P 'u' type(u8) id(u32) shard(u8) -> quotaUsage: one shard of the usage
//	                                 of a user, group or project (quota.go)
//	P 'q' type(u8) id(u32)        -> quotaLimit: an ID's limits and grace
//	P 'd' ino(u64) shard(u8)      -> dirShard: one of a directory's 16
//	                                 change shards: the latest time a name
//	                                 hashing to it was added or removed, and
//	                                 the change of the directory's link
//	                                 count through those names (dirshard.go)
//
// Inode numbers carry their MDT in the high 16 bits and a per-MDT sequence
// in the low 48; the root is MDT 0, sequence 1.
type keys struct {
	prefix []byte
}

// Key tags, one per record kind.
const (
	tagCluster  = 'C'
	tagMDT      = 'M'
	tagCounter  = 'N'
	tagOST      = 'O'
	tagInode    = 'I'
	tagDentry   = 'D'
	tagXattr    = 'X'
	tagOrphan   = 'Z'
	tagDestroy  = 'Q'
	tagRegistry = 'R'
	tagRenameLk = 'L'
	tagSession  = 'S'
	tagHandle   = 'H'
	tagReply    = 'r'
	tagTruncate = 'T'
	tagHsmQueue = 'A'
	tagHsmAgent = 'G'
	tagFS       = 'F'
	tagPool     = 'P'
	tagMigrate  = 'J'
	tagChangelg = 'K'
	tagClUser   = 'U'
	tagQuotaUse = 'u'
	tagQuotaLim = 'q'
	tagDirShard = 'd'
)

// RootIno is the inode number of the filesystem root (MDT 0, sequence 1).
const RootIno uint64 = 1

// Inode number layout.
const (
	inoSeqBits = 48
	inoSeqMask = 1<<inoSeqBits - 1
	maxMDT     = 1<<16 - 1
)

// makeIno composes an inode number from an MDT index and a sequence.
func makeIno(mdt uint32, seq uint64) uint64 { return uint64(mdt)<<inoSeqBits | seq&inoSeqMask }

// inoMDT returns the MDT an inode number belongs to.
func inoMDT(ino uint64) uint32 { return uint32(ino >> inoSeqBits) }

func newKeys(fsname string) keys {
	p := make([]byte, 0, len(fsname)+2)
	p = append(p, tagFS)
	p = append(p, fsname...)
	p = append(p, 0)
	return keys{prefix: p}
}

// registryKey names a filesystem in the store's registry.
func registryKey(fsname string) []byte { return append([]byte{tagRegistry}, fsname...) }

// registryRange is the key range holding every registry entry.
func registryRange() (start, end []byte) { return []byte{tagRegistry}, []byte{tagRegistry + 1} }

// decodeRegistryKey returns the fsname a registry key names.
func decodeRegistryKey(k []byte) (string, error) {
	if len(k) < 2 || k[0] != tagRegistry {
		return "", fmt.Errorf("mds: bad registry key %q", k)
	}
	return string(k[1:]), nil
}

func (k keys) tagged(tag byte, extra int) []byte {
	b := make([]byte, len(k.prefix)+1, len(k.prefix)+1+extra)
	copy(b, k.prefix)
	b[len(k.prefix)] = tag
	return b
}

// rangeOf returns [start, end) covering every key that begins with start.
func rangeOf(start []byte) ([]byte, []byte) {
	end := append([]byte(nil), start...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return start, end[:i+1]
		}
	}
	return start, nil
}

// cluster is the cluster record's key.
func (k keys) cluster() []byte { return k.tagged(tagCluster, 0) }

// mdt is the key of an MDT record.
func (k keys) mdt(index uint32) []byte {
	return binary.BigEndian.AppendUint32(k.tagged(tagMDT, 4), index)
}

// mdtRange covers every MDT record.
func (k keys) mdtRange() ([]byte, []byte) { return rangeOf(k.tagged(tagMDT, 0)) }

// truncate is the key of a truncate in progress.
func (k keys) truncate(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagTruncate, 8), ino)
}

// truncateRange covers every truncate in progress.
func (k keys) truncateRange() ([]byte, []byte) { return rangeOf(k.tagged(tagTruncate, 0)) }

// truncateIno returns the inode a truncate key names.
func (k keys) truncateIno(key []byte) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) != n+8 || key[len(k.prefix)] != tagTruncate {
		return 0, fmt.Errorf("mds: bad truncate key %q", key)
	}
	return binary.BigEndian.Uint64(key[n:]), nil
}

// session is the key of a session record.
func (k keys) session(id uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagSession, 8), id)
}

// sessionRange covers every session record.
func (k keys) sessionRange() ([]byte, []byte) { return rangeOf(k.tagged(tagSession, 0)) }

// handle is the key of an open-for-write handle record.
func (k keys) handle(id uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagHandle, 8), id)
}

// handleRange covers every handle record.
func (k keys) handleRange() ([]byte, []byte) { return rangeOf(k.tagged(tagHandle, 0)) }

// reply is the key of one reply slot of a session.
func (k keys) reply(session uint64, slot uint16) []byte {
	b := binary.BigEndian.AppendUint64(k.tagged(tagReply, 10), session)
	return binary.BigEndian.AppendUint16(b, slot)
}

// replyRange covers every reply slot of a session.
func (k keys) replyRange(session uint64) ([]byte, []byte) {
	return rangeOf(binary.BigEndian.AppendUint64(k.tagged(tagReply, 8), session))
}

// idOf returns the u64 after the tag of a session or handle key.
func (k keys) idOf(key []byte, tag byte) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) != n+8 || key[len(k.prefix)] != tag {
		return 0, fmt.Errorf("mds: bad %c key %q", tag, key)
	}
	return binary.BigEndian.Uint64(key[n:]), nil
}

// renameLock is the key every cross-directory move of a directory writes.
func (k keys) renameLock() []byte { return k.tagged(tagRenameLk, 0) }

// counter is the key of an MDT's inode sequence counter.
func (k keys) counter(mdt uint32) []byte {
	return binary.BigEndian.AppendUint32(k.tagged(tagCounter, 4), mdt)
}

// ost is the key of an OST record.
func (k keys) ost(index uint32) []byte {
	return binary.BigEndian.AppendUint32(k.tagged(tagOST, 4), index)
}

// ostRange covers every OST record.
func (k keys) ostRange() ([]byte, []byte) { return rangeOf(k.tagged(tagOST, 0)) }

// inode is the key of an inode record.
func (k keys) inode(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagInode, 8), ino)
}

// dentry is the key of the entry name in directory parent.
func (k keys) dentry(parent uint64, name string) []byte {
	b := binary.BigEndian.AppendUint64(k.tagged(tagDentry, 8+len(name)), parent)
	return append(b, name...)
}

// dentryRange covers the entries of parent whose names sort after after
// ("" for all of them).
func (k keys) dentryRange(parent uint64, after string) ([]byte, []byte) {
	start, end := rangeOf(k.dentry(parent, ""))
	if after != "" {
		start = append(k.dentry(parent, after), 0)
	}
	return start, end
}

// dentryName returns the name a dentry key holds.
func (k keys) dentryName(key []byte) (string, error) {
	n := len(k.prefix) + 1 + 8
	if len(key) <= n || key[len(k.prefix)] != tagDentry {
		return "", fmt.Errorf("mds: bad dentry key %q", key)
	}
	return string(key[n:]), nil
}

// xattr is the key of xattr name of ino.
func (k keys) xattr(ino uint64, name string) []byte {
	b := binary.BigEndian.AppendUint64(k.tagged(tagXattr, 8+len(name)), ino)
	return append(b, name...)
}

// xattrRange covers every xattr of ino.
func (k keys) xattrRange(ino uint64) ([]byte, []byte) { return rangeOf(k.xattr(ino, "")) }

// xattrName returns the name an xattr key holds.
func (k keys) xattrName(key []byte) (string, error) {
	n := len(k.prefix) + 1 + 8
	if len(key) <= n || key[len(k.prefix)] != tagXattr {
		return "", fmt.Errorf("mds: bad xattr key %q", key)
	}
	return string(key[n:]), nil
}

// orphan is the key of an orphan record.
func (k keys) orphan(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagOrphan, 8), ino)
}

// orphanRange covers every orphan record.
func (k keys) orphanRange() ([]byte, []byte) { return rangeOf(k.tagged(tagOrphan, 0)) }

// orphanIno returns the inode an orphan key names.
func (k keys) orphanIno(key []byte) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) != n+8 || key[len(k.prefix)] != tagOrphan {
		return 0, fmt.Errorf("mds: bad orphan key %q", key)
	}
	return binary.BigEndian.Uint64(key[n:]), nil
}

// destroy is the key of a destroy-queue entry.
func (k keys) destroy(ino uint64, seq uint32) []byte {
	b := binary.BigEndian.AppendUint64(k.tagged(tagDestroy, 12), ino)
	return binary.BigEndian.AppendUint32(b, seq)
}

// destroyRange covers the whole destroy queue.
func (k keys) destroyRange() ([]byte, []byte) { return rangeOf(k.tagged(tagDestroy, 0)) }

// destroyID returns the inode and sequence a destroy-queue key names.
func (k keys) destroyID(key []byte) (uint64, uint32, error) {
	n := len(k.prefix) + 1
	if len(key) != n+12 || key[len(k.prefix)] != tagDestroy {
		return 0, 0, fmt.Errorf("mds: bad destroy key %q", key)
	}
	return binary.BigEndian.Uint64(key[n:]), binary.BigEndian.Uint32(key[n+8:]), nil
}

// pool is the key of an OST pool record.
func (k keys) pool(name string) []byte {
	return append(k.tagged(tagPool, len(name)), name...)
}

// poolRange covers every pool record.
func (k keys) poolRange() ([]byte, []byte) { return rangeOf(k.tagged(tagPool, 0)) }

// poolName returns the name a pool key holds.
func (k keys) poolName(key []byte) (string, error) {
	n := len(k.prefix) + 1
	if len(key) <= n || key[len(k.prefix)] != tagPool {
		return "", fmt.Errorf("mds: bad pool key %q", key)
	}
	return string(key[n:]), nil
}

// hsmAction is the key of the HSM action queued or running for ino.
func (k keys) hsmAction(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagHsmQueue, 8), ino)
}

// hsmQueueRange covers the whole HSM action queue.
func (k keys) hsmQueueRange() ([]byte, []byte) { return rangeOf(k.tagged(tagHsmQueue, 0)) }

// hsmAgent is the key of a registered HSM agent.
func (k keys) hsmAgent(id uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagHsmAgent, 8), id)
}

// hsmAgentRange covers every registered HSM agent.
func (k keys) hsmAgentRange() ([]byte, []byte) { return rangeOf(k.tagged(tagHsmAgent, 0)) }

// mdtInodeRange covers the inode records of one MDT after inode after (0:
// from its first).
func (k keys) mdtInodeRange(mdt uint32, after uint64) ([]byte, []byte) {
	start := k.inode(makeIno(mdt, 0))
	if after != 0 {
		start = append(k.inode(after), 0)
	}
	end := k.tagged(tagInode, 8)
	if mdt == maxMDT {
		_, end = rangeOf(end)
		return start, end
	}
	return start, binary.BigEndian.AppendUint64(end, makeIno(mdt+1, 0))
}

// migration is the key of a file's migration record.
func (k keys) migration(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(k.tagged(tagMigrate, 8), ino)
}

// migrationRange covers every migration record.
func (k keys) migrationRange() ([]byte, []byte) { return rangeOf(k.tagged(tagMigrate, 0)) }

// changelogEntry is the key of entry index of mdt's changelog.
func (k keys) changelogEntry(mdt uint32, index uint64) []byte {
	b := binary.BigEndian.AppendUint32(k.tagged(tagChangelg, 12), mdt)
	return binary.BigEndian.AppendUint64(b, index)
}

// changelogRange covers mdt's changelog from entry from on.
func (k keys) changelogRange(mdt uint32, from uint64) ([]byte, []byte) {
	_, end := rangeOf(binary.BigEndian.AppendUint32(k.tagged(tagChangelg, 4), mdt))
	return k.changelogEntry(mdt, from), end
}

// changelogIndex returns the number a changelog key of mdt holds.
func (k keys) changelogIndex(key []byte, mdt uint32) (uint64, error) {
	n := len(k.prefix) + 1
	if len(key) != n+12 || key[len(k.prefix)] != tagChangelg || binary.BigEndian.Uint32(key[n:]) != mdt {
		return 0, fmt.Errorf("mds: bad changelog key %q", key)
	}
	return binary.BigEndian.Uint64(key[n+4:]), nil
}

// changelogUser is the key of a changelog consumer.
func (k keys) changelogUser(id string) []byte { return append(k.tagged(tagClUser, len(id)), id...) }

// changelogUserRange covers every changelog consumer.
func (k keys) changelogUserRange() ([]byte, []byte) { return rangeOf(k.tagged(tagClUser, 0)) }

// changelogUserID returns the id a consumer key holds.
func (k keys) changelogUserID(key []byte) string { return string(key[len(k.prefix)+1:]) }

// quotaUsage is the key of one shard of an ID's usage.
func (k keys) quotaUsage(typ uint8, id uint32, shard uint8) []byte {
	b := binary.BigEndian.AppendUint32(append(k.tagged(tagQuotaUse, 6), typ), id)
	return append(b, shard)
}

// quotaUsageRange covers the shards of one ID's usage.
func (k keys) quotaUsageRange(typ uint8, id uint32) ([]byte, []byte) {
	return rangeOf(binary.BigEndian.AppendUint32(append(k.tagged(tagQuotaUse, 5), typ), id))
}

// quotaUsageAll covers every usage shard.
func (k keys) quotaUsageAll() ([]byte, []byte) { return rangeOf(k.tagged(tagQuotaUse, 0)) }

// quotaUsageIDs returns the ID a usage key counts.
func (k keys) quotaUsageIDs(key []byte) (quotaID, error) {
	n := len(k.prefix) + 1
	if len(key) != n+6 || key[len(k.prefix)] != tagQuotaUse {
		return quotaID{}, fmt.Errorf("mds: bad quota usage key %q", key)
	}
	return quotaID{typ: key[n], id: binary.BigEndian.Uint32(key[n+1:])}, nil
}

// quotaLimit is the key of an ID's limits.
func (k keys) quotaLimit(typ uint8, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(k.tagged(tagQuotaLim, 5), typ), id)
}

// dirShard is the key of one change shard of a directory.
func (k keys) dirShard(dir uint64, shard uint8) []byte {
	return append(binary.BigEndian.AppendUint64(k.tagged(tagDirShard, 9), dir), shard)
}
