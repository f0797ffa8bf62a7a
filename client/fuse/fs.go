package fuse

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// Timeouts of the kernel's entry and attribute caches in close-to-open mode;
// strict mode uses 0, and so do the attributes of regular files in either
// mode: stat on any client must show the size a writer's fsync or close
// reported a moment ago.
const (
	entryTimeout = time.Second
	attrTimeout  = time.Second
)

// fileSystem serves the FUSE protocol for one mount. Operations it does not
// implement answer ENOSYS through the embedded default.
type fileSystem struct {
	gofuse.RawFileSystem

	c      *client.Client
	opts   Options
	log    *slog.Logger
	root   uint64 // the Strata root inode, which the kernel calls node 1
	strict bool
	// leasing: the client caches metadata under leases, and the kernel
	// may cache only what they cover (close-to-open mode).
	leasing bool

	nodesMu sync.Mutex
	nodes   map[uint64]*node // by Strata inode number
	// changes counts the requests of this mount that may have changed a
	// directory's attributes at the MDS, each counted once it has been
	// answered; a directory's cached attributes (node.cachedGen) are
	// good only while it has not moved. creating and createSeq find
	// creates that overlapped (see Create).
	changes   uint64
	creating  int
	createSeq uint64

	handlesMu  sync.Mutex
	nextHandle uint64
	files      map[uint64]*client.File
	dirs       map[uint64]*dirHandle

	groups groupCache
	finds  findSearches // strata find's searches (find.go)
	// migrating holds the migrations running through the mount
	// (migrate.go).
	migrating migrations
	inval     invalQueue // kernel invalidations for lease callbacks (inval.go)
}

var _ gofuse.RawFileSystem = (*fileSystem)(nil)

// node is what the mount remembers about an inode the kernel holds.
type node struct {
	lookups uint64
	// What the last open saw, for close-to-open validation of the
	// kernel's cached pages.
	opened      bool
	dataVersion uint64
	size        uint64
	mtime       int64
	// The attributes last handed to the kernel, for fstat of a directory
	// that was removed while open.
	attr proto.Attr
	// For a directory: attr as the MDS reported it to a GETATTR sent at
	// cachedAt, while fileSystem.changes was cachedGen (see dirAttr).
	cachedAt  time.Time
	cachedGen uint64
}

func newFileSystem(c *client.Client, opts Options) *fileSystem {
	return &fileSystem{
		RawFileSystem: gofuse.NewDefaultRawFileSystem(),
		c:             c,
		opts:          opts,
		log:           c.Logger(),
		root:          c.Root(),
		strict:        opts.Consistency == client.Strict,
		leasing:       opts.Consistency != client.Strict,
		nodes:         map[uint64]*node{},
		files:         map[uint64]*client.File{},
		dirs:          map[uint64]*dirHandle{},
	}
}

// String names the filesystem type.
func (fs *fileSystem) String() string { return "strata" }

// ino returns the Strata inode of a FUSE node id. Node 1 is the root; the
// Strata inode numbered 1, if it is not the root, takes the root's number.
func (fs *fileSystem) ino(nodeID uint64) uint64 {
	switch nodeID {
	case gofuse.FUSE_ROOT_ID:
		return fs.root
	case fs.root:
		return gofuse.FUSE_ROOT_ID
	}
	return nodeID
}

// nodeID returns the FUSE node id of a Strata inode (the same swap).
func (fs *fileSystem) nodeID(ino uint64) uint64 { return fs.ino(ino) }

// ctx returns the context requests to the servers run under. It is never
// cancelled by FUSE_INTERRUPT: the Go runtime's preemption signals make the
// kernel interrupt Go callers' requests constantly, and a namespace change
// the client stopped waiting for may still have been committed, so EINTR
// would misreport it. Every call is bounded by the rpc call timeout instead.
//
// During a server outage a request waits for the server between resends
// (see client.WithInterrupt); that wait, and only that wait, ends with EINTR
// when the kernel interrupts the request (cancel closes), so that a process
// stuck on a dead server can be killed.
func (fs *fileSystem) ctx(cancel <-chan struct{}) context.Context {
	return client.WithInterrupt(context.Background(), cancel)
}

// cred returns the identity of the process behind a request.
func (fs *fileSystem) cred(h *gofuse.InHeader) proto.Cred {
	return proto.Cred{Uid: h.Uid, Gid: h.Gid, Pid: h.Pid, Groups: fs.groups.of(h.Pid, h.Uid)}
}

// status maps an error to the errno the kernel gets: the one place where
// Strata errors become errno values.
func (fs *fileSystem) status(op string, err error) gofuse.Status {
	if err == nil {
		return gofuse.OK
	}
	errno := client.Errno(err)
	if errno == syscall.EIO {
		fs.log.Warn("fuse: "+op, "err", err)
	} else {
		fs.log.Debug("fuse: "+op, "err", err)
	}
	return gofuse.Status(errno)
}

// fillAttr converts attributes for the kernel.
func fillAttr(out *gofuse.Attr, a *proto.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks
	if out.Blocks == 0 && a.Size > 0 && a.IsRegular() && a.Flags&proto.AttrFlagReleased == 0 {
		out.Blocks = (a.Size + 511) / 512
	}
	out.Atime, out.Atimensec = splitTime(a.Atime)
	out.Mtime, out.Mtimensec = splitTime(a.Mtime)
	out.Ctime, out.Ctimensec = splitTime(a.Ctime)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Rdev = a.Rdev
	// A large preferred I/O size makes stdio and cp use large writes,
	// each of which is one FUSE request.
	out.Blksize = 4096
	if a.IsRegular() {
		out.Blksize = 1 << 20
	}
}

func splitTime(ns int64) (uint64, uint32) {
	t := time.Unix(0, ns)
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// timeouts returns how long the kernel may cache a name and the attributes
// a: as long as the client's leases on them last (ttl), if it holds any.
func (fs *fileSystem) timeouts(a *proto.Attr, ttl time.Duration) (entry, attr time.Duration) {
	switch {
	case fs.strict || a.Flags&proto.AttrFlagStrict != 0:
		return 0, 0
	case ttl > 0:
		return ttl, ttl
	case fs.leasing:
		// Leases are in use, and there is none on this: another
		// client's change would not be called back here.
		return 0, 0
	case a.IsRegular():
		return entryTimeout, 0
	}
	return entryTimeout, attrTimeout
}

// entry fills a reply that hands the kernel a reference to an inode and
// counts the lookup; ttl is how long the client's leases on the entry and
// attributes last (0: none).
func (fs *fileSystem) entry(out *gofuse.EntryOut, a *proto.Attr, ttl time.Duration) {
	et, at := fs.timeouts(a, ttl)
	out.NodeId = fs.nodeID(a.Ino)
	out.Generation = 0
	out.SetEntryTimeout(et)
	out.SetAttrTimeout(at)
	fillAttr(&out.Attr, a)
	fs.ref(a.Ino, a)
}

// attrOut fills an attribute reply (ttl as for entry).
func (fs *fileSystem) attrOut(out *gofuse.AttrOut, a *proto.Attr, ttl time.Duration) {
	_, at := fs.timeouts(a, ttl)
	out.SetTimeout(at)
	fillAttr(&out.Attr, a)
	fs.nodesMu.Lock()
	if n := fs.nodes[a.Ino]; n != nil {
		n.attr = *a
		n.cachedAt = time.Time{}
	}
	fs.nodesMu.Unlock()
}

// Directory attributes in close-to-open mode. The kernel caches them for
// attrTimeout, but it drops them whenever it creates or removes an entry
// through this mount, and must then fetch them before its next permission
// check on the directory: creating files one after another in a directory
// would cost a GETATTR each on top of the LOOKUP and CREATE. So the mount
// answers a directory's GETATTR itself while the attributes a GETATTR of
// it fetched are younger than attrTimeout, counted from when that GETATTR
// was sent, and nothing this mount did since may have changed them other
// than creates whose effect it knows exactly: the MDS sets the parent's
// mtime and ctime to the new file's ctime, in the same transaction, and
// changes nothing else of it. Another client's changes show at most
// attrTimeout late, as they would from the kernel's own cache; this
// mount's changes show at once. Every other request that may change a
// directory (namespace changes, setattr, xattrs) counts a change once
// answered, which invalidates every cached directory; so does a create
// that overlapped another, whose order at the MDS is not known here.

// changed counts a request that may have changed a directory's attributes
// (call it once the request has been answered by the MDS, before replying
// to the kernel).
func (fs *fileSystem) changed() {
	fs.nodesMu.Lock()
	fs.changes++
	fs.nodesMu.Unlock()
}

// dirAttr returns the cached attributes of directory ino and how much
// longer they are good for, if they are.
func (fs *fileSystem) dirAttr(ino uint64) (proto.Attr, time.Duration, bool) {
	if fs.strict {
		return proto.Attr{}, 0, false
	}
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	n := fs.nodes[ino]
	if n == nil || n.cachedAt.IsZero() || n.cachedGen != fs.changes || !n.attr.IsDir() {
		return proto.Attr{}, 0, false
	}
	_, at := fs.timeouts(&n.attr, 0)
	left := at - time.Since(n.cachedAt)
	if left <= 0 {
		return proto.Attr{}, 0, false
	}
	return n.attr, left, true
}

// cacheDirAttr records the attributes a of a directory that a GETATTR sent
// at sent, while fs.changes was gen, fetched.
func (fs *fileSystem) cacheDirAttr(a *proto.Attr, sent time.Time, gen uint64) {
	if fs.strict || !a.IsDir() {
		return
	}
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	if n := fs.nodes[a.Ino]; n != nil && gen == fs.changes {
		n.attr = *a
		n.cachedAt, n.cachedGen = sent, gen
	}
}

// createStart notes a create in flight and returns its sequence number
// and whether it overlaps another.
func (fs *fileSystem) createStart() (seq uint64, alone bool) {
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	fs.creating++
	fs.createSeq++
	return fs.createSeq, fs.creating == 1
}

// createDone ends the create numbered seq (alone as createStart said),
// which created child in parent if created. It counts a change, then keeps
// the parent's cached attributes, brought up to date, if they were good
// and the create overlapped no other.
func (fs *fileSystem) createDone(seq uint64, alone bool, parent uint64, child *proto.Attr, created bool) {
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	fs.creating--
	alone = alone && fs.createSeq == seq
	gen := fs.changes
	fs.changes++
	n := fs.nodes[parent]
	if !created || !alone || n == nil || n.cachedAt.IsZero() || n.cachedGen != gen || !n.attr.IsDir() {
		return
	}
	n.attr.Mtime, n.attr.Ctime = child.Ctime, child.Ctime
	n.cachedGen = fs.changes
}

// ref counts one kernel lookup of ino, with the attributes handed over.
func (fs *fileSystem) ref(ino uint64, a *proto.Attr) {
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	n := fs.nodes[ino]
	if n == nil {
		n = &node{}
		fs.nodes[ino] = n
	}
	n.lookups++
	n.attr = *a
	n.cachedAt = time.Time{}
}

// removedDirAttr returns the attributes of a directory that is gone at the
// MDS but still open here (rmdir or rename over it), with no links, as a
// local filesystem answers fstat on it.
func (fs *fileSystem) removedDirAttr(ino uint64) (proto.Attr, bool) {
	fs.handlesMu.Lock()
	open := false
	for _, d := range fs.dirs {
		if d.ino == ino {
			open = true
			break
		}
	}
	fs.handlesMu.Unlock()
	if !open {
		return proto.Attr{}, false
	}
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	n := fs.nodes[ino]
	if n == nil || !n.attr.IsDir() {
		return proto.Attr{}, false
	}
	a := n.attr
	a.Nlink = 0
	return a, true
}

// Forget drops nlookup kernel references to a node; the node's state goes
// with the last.
func (fs *fileSystem) Forget(nodeID, nlookup uint64) {
	ino := fs.ino(nodeID)
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	n := fs.nodes[ino]
	if n == nil {
		return
	}
	if n.lookups <= nlookup {
		delete(fs.nodes, ino)
		return
	}
	n.lookups -= nlookup
}

// keepCache reports whether the kernel may keep the pages it cached of a
// file being opened with attributes a: only if the previous open on this
// mount saw the same data version, size and mtime. It records a.
func (fs *fileSystem) keepCache(a *proto.Attr) bool {
	fs.nodesMu.Lock()
	defer fs.nodesMu.Unlock()
	n := fs.nodes[a.Ino]
	if n == nil {
		// The kernel holds no reference, so it has no pages either.
		return false
	}
	keep := n.opened && n.dataVersion == a.DataVersion && n.size == a.Size && n.mtime == a.Mtime
	n.opened, n.dataVersion, n.size, n.mtime = true, a.DataVersion, a.Size, a.Mtime
	return keep
}

// Lookup finds name in a directory.
func (fs *fileSystem) Lookup(cancel <-chan struct{}, h *gofuse.InHeader, name string, out *gofuse.EntryOut) gofuse.Status {
	a, ttl, err := fs.c.LookupEntry(fs.ctx(cancel), fs.cred(h), fs.ino(h.NodeId), name)
	if err != nil {
		return fs.status("lookup", err)
	}
	fs.entry(out, &a, ttl)
	return gofuse.OK
}

// GetAttr returns an inode's attributes.
func (fs *fileSystem) GetAttr(cancel <-chan struct{}, in *gofuse.GetAttrIn, out *gofuse.AttrOut) gofuse.Status {
	ino := fs.ino(in.NodeId)
	if a, left, ok := fs.dirAttr(ino); ok {
		out.SetTimeout(left)
		fillAttr(&out.Attr, &a)
		return gofuse.OK
	}
	fs.nodesMu.Lock()
	gen := fs.changes
	fs.nodesMu.Unlock()
	sent := time.Now()
	a, ttl, err := fs.c.GetattrTTL(fs.ctx(cancel), ino)
	if errors.Is(err, syscall.ENOENT) {
		if ra, ok := fs.removedDirAttr(ino); ok {
			a, err = ra, nil
		}
	}
	if err != nil {
		return fs.status("getattr", err)
	}
	fs.attrOut(out, &a, ttl)
	fs.cacheDirAttr(&a, sent, gen)
	return gofuse.OK
}

// SetAttr changes mode, owner, size or times.
func (fs *fileSystem) SetAttr(cancel <-chan struct{}, in *gofuse.SetAttrIn, out *gofuse.AttrOut) gofuse.Status {
	defer fs.changed()
	var req proto.SetattrReq
	if mode, ok := in.GetMode(); ok {
		req.Valid |= proto.SetMode
		req.Mode = mode
	}
	if uid, ok := in.GetUID(); ok {
		req.Valid |= proto.SetUid
		req.Uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		req.Valid |= proto.SetGid
		req.Gid = gid
	}
	if size, ok := in.GetSize(); ok {
		req.Valid |= proto.SetSize
		req.Size = size
	}
	switch {
	case in.Valid&gofuse.FATTR_ATIME_NOW != 0:
		req.Valid |= proto.SetAtimeNow
	case in.Valid&gofuse.FATTR_ATIME != 0:
		req.Valid |= proto.SetAtime
		req.Atime = int64(in.Atime)*1e9 + int64(in.Atimensec)
	}
	switch {
	case in.Valid&gofuse.FATTR_MTIME_NOW != 0:
		req.Valid |= proto.SetMtimeNow
	case in.Valid&gofuse.FATTR_MTIME != 0:
		req.Valid |= proto.SetMtime
		req.Mtime = int64(in.Mtime)*1e9 + int64(in.Mtimensec)
	}
	if in.Valid&gofuse.FATTR_CTIME != 0 {
		req.Valid |= proto.SetCtime
		req.Ctime = int64(in.Ctime)*1e9 + int64(in.Ctimensec)
	}
	if in.Valid&gofuse.FATTR_KILL_SUIDGID != 0 {
		// A truncate by a caller without CAP_FSETID, or a chown
		// (HANDLE_KILLPRIV_V2 leaves clearing the set-id bits to us).
		req.Valid |= proto.SetKillPrivs
	}
	if fh, ok := in.GetFh(); ok && req.Valid&(proto.SetSize|proto.SetKillPrivs) != 0 {
		if f := fs.file(fh); f != nil {
			req.Handle = f.Handle()
		}
	}
	a, err := fs.c.Setattr(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), req)
	if err != nil {
		return fs.status("setattr", err)
	}
	fs.attrOut(out, &a, 0)
	return gofuse.OK
}

// Mknod creates a special or empty regular file.
func (fs *fileSystem) Mknod(cancel <-chan struct{}, in *gofuse.MknodIn, name string, out *gofuse.EntryOut) gofuse.Status {
	defer fs.changed()
	a, err := fs.c.Mknod(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), name, in.Mode, in.Umask, in.Rdev)
	if err != nil {
		return fs.status("mknod", err)
	}
	fs.entry(out, &a, 0)
	return gofuse.OK
}

// Mkdir creates a directory; the MDS places it.
func (fs *fileSystem) Mkdir(cancel <-chan struct{}, in *gofuse.MkdirIn, name string, out *gofuse.EntryOut) gofuse.Status {
	defer fs.changed()
	a, ttl, err := fs.c.MkdirEntry(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), name, in.Mode, in.Umask, -1)
	if err != nil {
		return fs.status("mkdir", err)
	}
	fs.entry(out, &a, ttl)
	return gofuse.OK
}

// Unlink removes a non-directory.
func (fs *fileSystem) Unlink(cancel <-chan struct{}, h *gofuse.InHeader, name string) gofuse.Status {
	defer fs.changed()
	return fs.status("unlink", fs.c.Unlink(fs.ctx(cancel), fs.cred(h), fs.ino(h.NodeId), name))
}

// Rmdir removes an empty directory.
func (fs *fileSystem) Rmdir(cancel <-chan struct{}, h *gofuse.InHeader, name string) gofuse.Status {
	defer fs.changed()
	return fs.status("rmdir", fs.c.Rmdir(fs.ctx(cancel), fs.cred(h), fs.ino(h.NodeId), name))
}

// Rename renames an entry, with renameat2's RENAME_NOREPLACE and
// RENAME_EXCHANGE.
func (fs *fileSystem) Rename(cancel <-chan struct{}, in *gofuse.RenameIn, oldName, newName string) gofuse.Status {
	defer fs.changed()
	var flags uint32
	if in.Flags&unix.RENAME_NOREPLACE != 0 {
		flags |= proto.RenameNoReplace
	}
	if in.Flags&unix.RENAME_EXCHANGE != 0 {
		flags |= proto.RenameExchange
	}
	if in.Flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return gofuse.EINVAL // RENAME_WHITEOUT is for overlay filesystems
	}
	err := fs.c.Rename(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), oldName, fs.ino(in.Newdir), newName, flags)
	return fs.status("rename", err)
}

// Link makes a hard link.
func (fs *fileSystem) Link(cancel <-chan struct{}, in *gofuse.LinkIn, name string, out *gofuse.EntryOut) gofuse.Status {
	defer fs.changed()
	a, err := fs.c.Link(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.Oldnodeid), fs.ino(in.NodeId), name)
	if err != nil {
		return fs.status("link", err)
	}
	fs.entry(out, &a, 0)
	return gofuse.OK
}

// Symlink creates a symbolic link linkName pointing to target.
func (fs *fileSystem) Symlink(cancel <-chan struct{}, h *gofuse.InHeader, target, linkName string, out *gofuse.EntryOut) gofuse.Status {
	defer fs.changed()
	a, err := fs.c.Symlink(fs.ctx(cancel), fs.cred(h), fs.ino(h.NodeId), linkName, target)
	if err != nil {
		return fs.status("symlink", err)
	}
	fs.entry(out, &a, 0)
	return gofuse.OK
}

// Readlink returns a symbolic link's target.
func (fs *fileSystem) Readlink(cancel <-chan struct{}, h *gofuse.InHeader) ([]byte, gofuse.Status) {
	target, err := fs.c.Readlink(fs.ctx(cancel), fs.ino(h.NodeId))
	if err != nil {
		return nil, fs.status("readlink", err)
	}
	return []byte(target), gofuse.OK
}

// Access checks access(2) permissions at the MDS.
func (fs *fileSystem) Access(cancel <-chan struct{}, in *gofuse.AccessIn) gofuse.Status {
	return fs.status("access", fs.c.Access(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), in.Mask))
}

// StatFs reports filesystem-wide usage.
func (fs *fileSystem) StatFs(cancel <-chan struct{}, h *gofuse.InHeader, out *gofuse.StatfsOut) gofuse.Status {
	st, err := fs.c.Statfs(fs.ctx(cancel))
	if err != nil {
		return fs.status("statfs", err)
	}
	bsize := st.Bsize
	if bsize == 0 {
		bsize = 4096
	}
	*out = gofuse.StatfsOut{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree,
		Bsize: bsize, Frsize: bsize, NameLen: 255,
	}
	return gofuse.OK
}

// OnUnmount closes the files the kernel left open, flushing their data.
func (fs *fileSystem) OnUnmount() {
	fs.stopInval()
	fs.handlesMu.Lock()
	files := fs.files
	fs.files = map[uint64]*client.File{}
	fs.dirs = map[uint64]*dirHandle{}
	fs.handlesMu.Unlock()
	for _, f := range files {
		if err := f.Close(); err != nil {
			fs.log.Warn("fuse: close at unmount", "ino", f.Ino(), "err", err)
		}
	}
}
