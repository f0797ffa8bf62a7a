package fuse

import (
	"io"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// addFile registers an open file and returns its FUSE handle.
func (fs *fileSystem) addFile(f *client.File) uint64 {
	fs.handlesMu.Lock()
	defer fs.handlesMu.Unlock()
	fs.nextHandle++
	fs.files[fs.nextHandle] = f
	return fs.nextHandle
}

// file returns the open file of a FUSE handle, or nil.
func (fs *fileSystem) file(fh uint64) *client.File {
	fs.handlesMu.Lock()
	defer fs.handlesMu.Unlock()
	return fs.files[fh]
}

// openFlags picks the FOPEN_* flags of a regular file's open.
func (fs *fileSystem) openFlags(a *proto.Attr) uint32 {
	var flags uint32
	if fs.strict || !fs.opts.PageCache {
		// Non-extending direct writes to one file may run in parallel
		// (shared-file MPI-IO); the library orders what overlaps.
		flags |= gofuse.FOPEN_DIRECT_IO | gofuse.FOPEN_PARALLEL_DIRECT_WRITES
	}
	if !fs.strict && fs.keepCache(a) {
		flags |= gofuse.FOPEN_KEEP_CACHE
	}
	return flags
}

// Create creates and opens a regular file.
func (fs *fileSystem) Create(cancel <-chan struct{}, in *gofuse.CreateIn, name string, out *gofuse.CreateOut) gofuse.Status {
	f, err := fs.c.Create(fs.ctx(), fs.cred(&in.InHeader), fs.ino(in.NodeId), name, in.Mode, int(in.Flags), layout.Spec{})
	if err != nil {
		return fs.status("create", err)
	}
	a := f.Attr()
	fs.entry(&out.EntryOut, &a)
	out.Fh = fs.addFile(f)
	out.OpenFlags = fs.openFlags(&a)
	return gofuse.OK
}

// Open opens a regular file.
func (fs *fileSystem) Open(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	f, err := fs.c.Open(fs.ctx(), fs.cred(&in.InHeader), fs.ino(in.NodeId), int(in.Flags))
	if err != nil {
		return fs.status("open", err)
	}
	a := f.Attr()
	if !fs.strict && fs.server != nil && fs.staleAttrs(&a) {
		// Close-to-open: the kernel may hold attributes from before
		// another client's close for up to attrTimeout; make it ask
		// again so that fstat after open sees the new size. An offset
		// below 0 invalidates the attributes only, taking no lock the
		// kernel could hold while it waits for this open.
		fs.server.InodeNotify(in.NodeId, -1, 0)
	}
	out.Fh = fs.addFile(f)
	out.OpenFlags = fs.openFlags(&a)
	return gofuse.OK
}

// Read reads from an open file; a short read means end of file.
func (fs *fileSystem) Read(cancel <-chan struct{}, in *gofuse.ReadIn, buf []byte) (gofuse.ReadResult, gofuse.Status) {
	f := fs.file(in.Fh)
	if f == nil {
		return nil, gofuse.EBADF
	}
	if int(in.Size) < len(buf) {
		buf = buf[:in.Size]
	}
	n, err := f.ReadAt(buf, int64(in.Offset))
	if err != nil && err != io.EOF {
		return nil, fs.status("read", err)
	}
	return gofuse.ReadResultData(buf[:n]), gofuse.OK
}

// Write writes to an open file (buffered by the library unless the mode or
// open flags say otherwise).
func (fs *fileSystem) Write(cancel <-chan struct{}, in *gofuse.WriteIn, data []byte) (uint32, gofuse.Status) {
	f := fs.file(in.Fh)
	if f == nil {
		return 0, gofuse.EBADF
	}
	n, err := f.WriteAt(data, int64(in.Offset))
	if err != nil && n == 0 {
		return 0, fs.status("write", err)
	}
	return uint32(n), gofuse.OK
}

// Writev writes a request whose data arrived in several pieces as one
// write, so that an O_APPEND write stays one append.
func (fs *fileSystem) Writev(cancel <-chan struct{}, in *gofuse.WriteIn, data [][]byte) (uint32, gofuse.Status) {
	if len(data) == 1 {
		return fs.Write(cancel, in, data[0])
	}
	var n int
	for _, d := range data {
		n += len(d)
	}
	buf := make([]byte, 0, n)
	for _, d := range data {
		buf = append(buf, d...)
	}
	return fs.Write(cancel, in, buf)
}

// Flush is called at every close(2) of a descriptor: it sends buffered
// writes and reports the size to the MDS, so that the file's next opener on
// any client sees the data (close-to-open), and returns write errors to
// close(2).
func (fs *fileSystem) Flush(cancel <-chan struct{}, in *gofuse.FlushIn) gofuse.Status {
	f := fs.file(in.Fh)
	if f == nil {
		return gofuse.EBADF
	}
	return fs.status("flush", f.Flush())
}

// Release closes an open file once the kernel drops its last reference.
func (fs *fileSystem) Release(cancel <-chan struct{}, in *gofuse.ReleaseIn) {
	fs.handlesMu.Lock()
	f := fs.files[in.Fh]
	delete(fs.files, in.Fh)
	fs.handlesMu.Unlock()
	if f == nil {
		return
	}
	if err := f.Close(); err != nil {
		fs.log.Warn("fuse: release", "ino", f.Ino(), "err", err)
	}
}

// Fsync makes an open file's data and size durable.
func (fs *fileSystem) Fsync(cancel <-chan struct{}, in *gofuse.FsyncIn) gofuse.Status {
	f := fs.file(in.Fh)
	if f == nil {
		return gofuse.EBADF
	}
	return fs.status("fsync", f.Sync())
}

// Fallocate is not supported yet; glibc's posix_fallocate falls back to
// writing zeros.
func (fs *fileSystem) Fallocate(cancel <-chan struct{}, in *gofuse.FallocateIn) gofuse.Status {
	return gofuse.Status(syscall.EOPNOTSUPP)
}
