package fuse

import (
	"io"
	"math"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/layout"
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

// openFlags picks the FOPEN_* flags of a regular file's open. A strict
// file (the mount's mode or the file's own) keeps nothing in the page cache,
// and neither does an O_APPEND open: the MDS, not the kernel's idea of the
// size, decides where its writes land, so cached pages at the kernel's
// offset would be wrong.
func (fs *fileSystem) openFlags(f *client.File) uint32 {
	a := f.Attr()
	strict := fs.strict || f.Strict()
	var flags uint32
	if strict || !fs.opts.PageCache || f.Flags()&syscall.O_APPEND != 0 {
		// Non-extending direct writes to one file may run in parallel
		// (shared-file MPI-IO); the library orders what overlaps.
		flags |= gofuse.FOPEN_DIRECT_IO | gofuse.FOPEN_PARALLEL_DIRECT_WRITES
	}
	if !strict && fs.keepCache(&a) {
		flags |= gofuse.FOPEN_KEEP_CACHE
	}
	return flags
}

// Create creates and opens a regular file. The kernel leaves the umask to
// the mount (CAP_DONT_MASK), which passes it on: the MDS ignores it where a
// default ACL decides the mode.
//
// Only an O_EXCL create is known to have created the file (without it the
// MDS opens a file that exists), so only such a create keeps the parent's
// cached attributes (see fileSystem.dirAttr).
func (fs *fileSystem) Create(cancel <-chan struct{}, in *gofuse.CreateIn, name string, out *gofuse.CreateOut) gofuse.Status {
	parent := fs.ino(in.NodeId)
	flags := int(in.Flags)
	if in.OpenFlags&gofuse.OPEN_KILL_SUIDGID != 0 {
		flags |= client.OKillPrivs
	}
	seq, alone := fs.createStart()
	f, ttl, err := fs.c.CreateEntry(fs.ctx(cancel), fs.cred(&in.InHeader), parent, name, in.Mode, in.Umask, flags, layout.Spec{})
	if err != nil {
		fs.createDone(seq, alone, parent, nil, false)
		return fs.status("create", err)
	}
	a := f.Attr()
	fs.createDone(seq, alone, parent, &a, in.Flags&syscall.O_EXCL != 0)
	fs.entry(&out.EntryOut, &a, ttl)
	out.Fh = fs.addFile(f)
	out.OpenFlags = fs.openFlags(f)
	return gofuse.OK
}

// Open opens a regular file.
func (fs *fileSystem) Open(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	flags := int(in.Flags)
	if in.Mode&gofuse.OPEN_KILL_SUIDGID != 0 {
		// O_TRUNC by a caller without CAP_FSETID (HANDLE_KILLPRIV_V2).
		flags |= client.OKillPrivs
	}
	f, err := fs.c.Open(fs.ctx(cancel), fs.cred(&in.InHeader), fs.ino(in.NodeId), flags)
	if err != nil {
		return fs.status("open", err)
	}
	out.Fh = fs.addFile(f)
	out.OpenFlags = fs.openFlags(f)
	return gofuse.OK
}

// Read reads from an open file; a short read means end of file. The reply
// goes to the kernel from the library's readahead buffers where they hold
// the data (see readReply), not through a copy into buf.
func (fs *fileSystem) Read(cancel <-chan struct{}, in *gofuse.ReadIn, buf []byte) (gofuse.ReadResult, gofuse.Status) {
	f := fs.file(in.Fh)
	if f == nil {
		return nil, gofuse.EBADF
	}
	if int(in.Size) < len(buf) {
		buf = buf[:in.Size]
	}
	if err := f.Restore(fs.ctx(cancel)); err != nil {
		return nil, fs.status("read", err)
	}
	r := readReplies.Get().(*readReply)
	n, err := f.ReadAtView(&r.view, buf, int64(in.Offset))
	if err != nil && err != io.EOF {
		readReplies.Put(r)
		return nil, fs.status("read", err)
	}
	if n == 0 {
		readReplies.Put(r)
		return gofuse.ReadResultData(nil), gofuse.OK
	}
	return r, gofuse.OK
}

// Write writes to an open file (buffered by the library unless the mode or
// open flags say otherwise).
func (fs *fileSystem) Write(cancel <-chan struct{}, in *gofuse.WriteIn, data []byte) (uint32, gofuse.Status) {
	f := fs.file(in.Fh)
	if f == nil {
		return 0, gofuse.EBADF
	}
	if in.WriteFlags&gofuse.WRITE_KILL_SUIDGID != 0 {
		if st := fs.killPrivsOnWrite(&in.InHeader, f); st != gofuse.OK {
			return 0, st
		}
	}
	if err := f.Restore(fs.ctx(cancel)); err != nil {
		return 0, fs.status("write", err)
	}
	n, err := f.WriteAt(data, int64(in.Offset))
	if err != nil && n == 0 {
		return 0, fs.status("write", err)
	}
	return uint32(n), gofuse.OK
}

// killPrivsOnWrite clears the set-id bits of a file that a caller without
// CAP_FSETID writes (the kernel flags such writes, HANDLE_KILLPRIV_V2), before
// the data goes out, as Linux's file_remove_privs does. It asks the MDS only
// when the mode last seen has a bit the write must clear, so ordinary writes
// cost nothing; the kernel fetches regular files' attributes afresh (their
// timeout is 0), so fstat right after the write shows the new mode.
func (fs *fileSystem) killPrivsOnWrite(h *gofuse.InHeader, f *client.File) gofuse.Status {
	ino := f.Ino()
	fs.nodesMu.Lock()
	mode := f.Attr().Mode
	if n := fs.nodes[ino]; n != nil && n.attr.Ino == ino {
		mode = n.attr.Mode
	}
	fs.nodesMu.Unlock()
	if mode&syscall.S_ISUID == 0 && mode&(syscall.S_ISGID|syscall.S_IXGRP) != syscall.S_ISGID|syscall.S_IXGRP {
		return gofuse.OK
	}
	a, err := f.KillPrivs(fs.ctx(nil), fs.cred(h))
	if err != nil {
		return fs.status("write: clear set-id bits", err)
	}
	fs.nodesMu.Lock()
	if n := fs.nodes[ino]; n != nil {
		n.attr = a
	}
	fs.nodesMu.Unlock()
	return gofuse.OK
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
// close(2). It then releases the closing process's fcntl locks on the file,
// as POSIX says any close does.
func (fs *fileSystem) Flush(cancel <-chan struct{}, in *gofuse.FlushIn) gofuse.Status {
	defer fs.releaseLocks(in.NodeId, in.LockOwner, false)
	f := fs.file(in.Fh)
	if f == nil {
		return gofuse.EBADF
	}
	return fs.status("flush", f.Flush())
}

// Release closes an open file once the kernel drops its last reference,
// and releases the flock lock the open file held.
func (fs *fileSystem) Release(cancel <-chan struct{}, in *gofuse.ReleaseIn) {
	if in.ReleaseFlags&gofuse.FUSE_RELEASE_FLOCK_UNLOCK != 0 {
		fs.releaseLocks(in.NodeId, in.LockOwner, true)
	}
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

// Fallocate preallocates, punches or zeroes a range on the OSTs (see
// client.File.Fallocate for the modes served).
func (fs *fileSystem) Fallocate(cancel <-chan struct{}, in *gofuse.FallocateIn) gofuse.Status {
	f := fs.file(in.Fh)
	if f == nil {
		return gofuse.EBADF
	}
	if in.Offset > math.MaxInt64 || in.Length > math.MaxInt64 {
		return gofuse.Status(syscall.EFBIG)
	}
	return fs.status("fallocate", f.Fallocate(fs.ctx(cancel), in.Mode, int64(in.Offset), int64(in.Length)))
}

// CopyFileRange copies between two open Strata files; the OSSes copy what
// lies on one OST in both, without the data crossing the network.
func (fs *fileSystem) CopyFileRange(cancel <-chan struct{}, in *gofuse.CopyFileRangeIn) (uint32, gofuse.Status) {
	src, dst := fs.file(in.FhIn), fs.file(in.FhOut)
	if src == nil || dst == nil {
		return 0, gofuse.EBADF
	}
	if in.OffIn > math.MaxInt64 || in.OffOut > math.MaxInt64 {
		return 0, gofuse.Status(syscall.EFBIG)
	}
	n, err := client.CopyRange(fs.ctx(cancel), dst, int64(in.OffOut), src, int64(in.OffIn), int64(min(in.Len, math.MaxInt32)))
	if err != nil && n == 0 {
		return 0, fs.status("copy_file_range", err)
	}
	return uint32(n), gofuse.OK
}
