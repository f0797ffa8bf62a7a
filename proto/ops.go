package proto

// Opcodes. The rpc package reserves opcodes below 16 for its own use
// (authentication, ping). MDS opcodes live in [100, 200), OSS opcodes in
// [200, 300).
const (
	// Session and cluster.
	OpConnect    uint16 = 100 // ConnectReq -> ConnectResp
	OpRenew      uint16 = 101 // RenewReq -> RenewResp
	OpDisconnect uint16 = 102 // DisconnectReq -> Empty
	OpStatfs     uint16 = 103 // StatfsReq -> StatfsResp
	OpTargets    uint16 = 104 // TargetsReq -> TargetsResp (per-OST/MDT usage, for df and osts)
	OpLeaseWait  uint16 = 105 // LeaseWaitReq -> LeaseWaitResp (metadata lease callbacks, a long poll)
	OpLeaseBreak uint16 = 106 // LeaseBreakReq -> Empty (another MDS's change breaks this one's leases)
	OpCloseMany  uint16 = 107 // CloseManyReq -> Empty (deferred releases of read-only handles)

	// Namespace.
	OpLookup   uint16 = 110 // LookupReq -> EntryResp
	OpGetattr  uint16 = 111 // GetattrReq -> AttrResp
	OpSetattr  uint16 = 112 // SetattrReq -> AttrResp
	OpCreate   uint16 = 113 // CreateReq -> OpenResp (create and open in one step)
	OpMkdir    uint16 = 114 // MkdirReq -> EntryResp
	OpMknod    uint16 = 115 // MknodReq -> EntryResp
	OpSymlink  uint16 = 116 // SymlinkReq -> EntryResp
	OpReadlink uint16 = 117 // ReadlinkReq -> ReadlinkResp
	OpLink     uint16 = 118 // LinkReq -> EntryResp
	OpUnlink   uint16 = 119 // UnlinkReq -> Empty
	OpRmdir    uint16 = 120 // RmdirReq -> Empty
	OpRename   uint16 = 121 // RenameReq -> Empty
	OpReaddir  uint16 = 122 // ReaddirReq -> ReaddirResp
	OpAccess   uint16 = 123 // AccessReq -> Empty
	OpFind     uint16 = 125 // FindReq -> FindResp (one page of strata find)

	// Open files and sizes.
	OpOpen    uint16 = 130 // OpenReq -> OpenResp
	OpClose   uint16 = 131 // CloseReq -> AttrResp
	OpSetSize uint16 = 132 // SetSizeReq -> AttrResp (size merge on fsync/flush)
	OpGetCap  uint16 = 133 // GetCapReq -> GetCapResp (refresh an expiring capability)
	OpAppend  uint16 = 134 // AppendReq -> AppendResp (reserve the end of file for an O_APPEND write)
	OpSync    uint16 = 135 // SyncReq -> Empty (make committed metadata durable: fsync of a directory)

	// Recovery and MDT ownership.
	OpRecovered     uint16 = 170 // RecoveredReq -> Empty (a client replayed its opens and locks)
	OpMDTTable      uint16 = 171 // MDTTableReq -> MDTTableResp (owners of every MDT, from the store)
	OpHandOff       uint16 = 172 // HandOffReq -> Empty (give up an MDT, for a planned move)
	OpEvict         uint16 = 173 // EvictReq -> EvictResp
	OpAbortRecovery uint16 = 174 // AbortRecoveryReq -> Empty

	// Extended attributes.
	OpGetxattr    uint16 = 140 // GetxattrReq -> GetxattrResp
	OpSetxattr    uint16 = 141 // SetxattrReq -> Empty
	OpListxattr   uint16 = 142 // ListxattrReq -> ListxattrResp
	OpRemovexattr uint16 = 143 // RemovexattrReq -> Empty

	// Layouts (setstripe / getstripe).
	OpGetLayout uint16 = 150 // GetLayoutReq -> GetLayoutResp
	OpSetLayout uint16 = 151 // SetLayoutReq -> GetLayoutResp

	// Consistency mode of a directory subtree (strict or close-to-open).
	OpSetConsistency uint16 = 152 // SetConsistencyReq -> Empty

	// Online restripe (strata migrate), one request per phase.
	OpMigrate uint16 = 153 // MigrateReq -> MigrateResp

	// Byte-range (fcntl) and flock locks.
	OpLock   uint16 = 160 // LockReq -> LockResp
	OpUnlock uint16 = 161 // UnlockReq -> Empty
	OpGetLk  uint16 = 162 // LockReq -> LockResp (F_GETLK)

	// OSS to MDS.
	OpRegisterOSS  uint16 = 180 // RegisterOSSReq -> RegisterOSSResp
	OpOSSHeartbeat uint16 = 181 // OSSHeartbeatReq -> Empty

	// Administration.
	OpFsck uint16 = 190 // FsckReq -> FsckResp (one page of strata fsck)
	OpPool uint16 = 191 // PoolReq -> PoolResp (strata pool create|add|remove|destroy|list)
	// Changelog: a page of an MDT's log (at its owner), and consumers.
	OpChangelog     uint16 = 192 // ChangelogReq -> ChangelogResp
	OpChangelogUser uint16 = 193 // ChangelogUserReq -> ChangelogUserResp
	// Quotas: limits (root), usage, and project IDs.
	OpSetQuota uint16 = 194 // SetQuotaReq -> QuotaResp
	OpQuota    uint16 = 195 // QuotaReq -> QuotaResp
	OpProject  uint16 = 196 // ProjectReq -> ProjectResp
	// OpQuotaGrant asks for room to extend a file whose IDs have block
	// limits (see proto/quota.go).
	OpQuotaGrant uint16 = 197 // QuotaGrantReq -> QuotaGrantResp

	// OSS object operations (client or MDS to OSS).
	OpObjWrite   uint16 = 200 // ObjWriteReq + bulk -> ObjWriteResp
	OpObjRead    uint16 = 201 // ObjReadReq -> ObjReadResp + bulk
	OpObjPunch   uint16 = 202 // ObjPunchReq -> Empty (truncate object to Size)
	OpObjSync    uint16 = 203 // ObjSyncReq -> ObjSyncResp
	OpObjGetattr uint16 = 204 // ObjGetattrReq -> ObjGetattrResp
	OpObjDestroy uint16 = 205 // ObjDestroyReq -> Empty
	OpOSTStatfs  uint16 = 206 // OSTStatfsReq -> OSTStatfsResp
	OpObjFalloc  uint16 = 207 // ObjFallocateReq -> ObjWriteResp
	OpObjCopy    uint16 = 208 // ObjCopyReq -> ObjCopyResp
	OpObjFence   uint16 = 209 // ObjFenceReq -> Empty (migrate: the old layout's objects take the new generation)
	// OpObjDestroyMany deletes the objects of many files in one call (the
	// MDS's destroy queue): one tombstone-log sync per OST for them all.
	OpObjDestroyMany uint16 = 210 // ObjDestroyManyReq -> Empty

	// OSS administration (MDS to OSS).
	OpOSTList uint16 = 220 // OSTListReq -> OSTListResp (fsck: an OST's objects, in pages)
)
