// Package fuse mounts a Strata filesystem through the kernel's FUSE driver,
// on top of the client library. It speaks go-fuse's raw protocol API: FUSE
// node ids are Strata inode numbers (the kernel's root, node 1, stands for
// the Strata root), so no table maps one to the other; a lookup count per
// node is kept only to hold per-node cache state until the kernel forgets
// the node.
//
// Permissions. Every request runs with the caller's uid, gid, supplementary
// groups and pid, which the MDS checks. The mount also enables POSIX ACLs
// (FUSE_POSIX_ACL), which turns on the kernel's default_permissions: the
// kernel checks permissions itself against the mode and the ACLs it caches
// (read as system.posix_acl_* xattrs, which pass through to the MDS), so
// that execute and search permission are enforced too. The kernel drops its
// cached ACLs of an inode when they or the mode change through this mount
// and whenever it fetches the inode's attributes again, so another client's
// change shows at the next check of a regular file (whose attributes it
// never caches) and within a second elsewhere. The kernel leaves the umask
// to the mount (CAP_DONT_MASK), which sends it with the raw mode: the MDS
// applies it unless the parent directory has a default ACL. Set-id bits are
// cleared where the kernel flags a write, truncate or O_TRUNC open by a
// caller without CAP_FSETID (HANDLE_KILLPRIV_V2), before the write proceeds.
// Errors become errno values here, once.
//
// Data caching in the kernel. Regular files are opened with FOPEN_DIRECT_IO
// unless Options.PageCache is set: reads and writes then reach the client
// library at the application's request size (up to 1 MiB), where the
// library's own readahead and write-behind do the work the page cache would.
// Large sequential I/O is faster that way: with an in-memory daemon reads
// ran at ~1.7 GB/s against ~0.4 GB/s through the page cache. Over a real
// cluster in one process on a two-core VM (BenchmarkMount*, noisy) direct
// I/O was as fast or faster in every run: 1 MiB writes 460-560 MB/s against
// 270-440, cold reads 550-680 MB/s against 470-580; the servers, not the
// mount, were the limit there. Re-reading a small unchanged file gains from
// the page cache, which Options.PageCache turns on. mmap works either way
// (FUSE_DIRECT_IO_ALLOW_MMAP): MAP_SHARED pages reach the library at msync
// or writeback, MAP_PRIVATE pages never do. In close-to-open mode an open
// keeps the kernel's cached pages (FOPEN_KEEP_CACHE) only if the file's data
// version, size and mtime are what the previous open of it on this mount
// saw. Names and the attributes of directories and symbolic links are
// cached for a second; the attributes of regular files are not cached at
// all (timeout 0), so stat on any client shows the size a writer's fsync or
// close reported, and a writer's own stat its size and mtime before it
// closes, at the price of a GETATTR for every stat of a file. In strict mode
// nothing is cached: entry and attribute timeouts are 0 and every file is
// opened with FOPEN_DIRECT_IO.
//
// Consistency per file. A file created in a directory whose consistency
// mode is strict carries proto.AttrFlagStrict and is handled as on a strict
// mount by every client (FOPEN_DIRECT_IO, no readahead or write-behind,
// extending writes report the size before they return), whatever the
// mount's mode. The virtual xattr user.strata.consistency reads a mode on
// any inode ("strict", "close-to-open", or "" for inherited) and, set on a
// directory, sets the mode its new files get; removing it inherits again.
// Like the other virtual xattrs (user.strata.layout, user.strata.targets)
// it is hidden from listxattr.
//
// O_APPEND. Every write of a file opened with O_APPEND reserves its range
// at the end of the file at the MDS (OpAppend) and goes there whatever
// offset the kernel passed, so appends from any number of clients never
// overlap. Such opens never use the page cache.
//
// Locks. fcntl (POSIX) and flock(2) locks reach the mount
// (MountOptions.EnableLocks) and are kept by the MDS for every client;
// F_GETLK reports a holder on any client with its pid. F_SETLKW waits in
// slices of proto.LockWaitSlice and fails with EINTR, at the end of the
// slice in flight, when the kernel interrupts it: the kernel restarts it
// for SA_RESTART signal handlers. Closing any descriptor of a file releases
// the closing process's fcntl locks on it (FLUSH carries the lock owner);
// the last close of an open file releases its flock lock; the end of the
// client's session releases everything. Locks order data between clients as
// well (see the client package): what a process wrote before it released a
// lock, another client's process reads once it holds the lock.
//
// FUSE_INTERRUPT is honoured by F_SETLKW only: any other request finishes,
// or fails with the rpc call timeout, but never returns EINTR (see
// fileSystem.ctx).
//
// fallocate serves mode 0, KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE on the
// OSTs; copy_file_range between Strata files is done by the OSSes where both
// ranges lie on one OST. fsync of a directory syncs the MDS's store.
//
// Not yet served: other fallocate modes (EOPNOTSUPP), O_TMPFILE, OFD locks
// released at close (F_OFD_SETLK locks go with the session), and file
// capabilities (security.capability reads as absent and cannot be set).
package fuse

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
)

// Options configures a mount.
type Options struct {
	// FSName is the mount's source as mount(8) shows it; empty means
	// "MDSADDR:/FSNAME".
	FSName string
	// Debug logs every FUSE request and reply.
	Debug bool
	// AllowOther lets users other than the mounter use the mount.
	AllowOther bool
	// Consistency is client.CloseToOpen or client.Strict; empty means the
	// client's mode. It sets the kernel-side caching described in the
	// package documentation.
	Consistency string
	// PageCache routes regular-file I/O through the kernel page cache
	// instead of FOPEN_DIRECT_IO (close-to-open mode only). Small re-read
	// files gain; large sequential I/O loses.
	PageCache bool
}

// Mount serves c's filesystem at mnt and returns once the kernel has
// mounted it. Unmount with server.Unmount (or fusermount3 -u mnt); the client
// stays open and is the caller's to close afterwards.
func Mount(c *client.Client, mnt string, opts Options) (*gofuse.Server, error) {
	switch opts.Consistency {
	case "":
		opts.Consistency = c.Consistency()
	case client.CloseToOpen, client.Strict:
	default:
		return nil, fmt.Errorf("fuse: unknown consistency mode %q", opts.Consistency)
	}
	if opts.FSName == "" {
		opts.FSName = c.MDSAddr() + ":/" + c.FSName()
	}
	fsys := newFileSystem(c, opts)
	mo := &gofuse.MountOptions{
		AllowOther:    opts.AllowOther,
		MaxWrite:      1 << 20,
		MaxReadAhead:  1 << 20,
		MaxBackground: 128,
		Name:          "strata",
		FsName:        opts.FSName,
		Debug:         opts.Debug,
		// fcntl and flock locks come to the mount, which has the MDS
		// keep them for every client.
		EnableLocks: true,
		// POSIX ACLs: the kernel reads them (and caches them) as xattrs
		// and checks permissions itself (default_permissions) against
		// them and the cached mode; the MDS checks again.
		EnableAcl: true,
		// Mount with mount(2) when running as root, through fusermount3
		// otherwise.
		DirectMount: true,
		// mmap of FOPEN_DIRECT_IO files; O_TRUNC carried by the open
		// itself (one MDS request, atomic); READDIRPLUS only where the
		// kernel expects lookups to follow (ls -l, not ls), since
		// attributes cost the MDS more than names; the umask left to
		// the MDS, which must not apply it under a default ACL; and the
		// set-id bits cleared by the mount (HANDLE_KILLPRIV_V2): the
		// kernel flags each write, truncate and O_TRUNC open by a caller
		// without CAP_FSETID, so they go at the write(2) itself.
		ExtraCapabilities: gofuse.CAP_DIRECT_IO_ALLOW_MMAP | gofuse.CAP_ATOMIC_O_TRUNC | gofuse.CAP_READDIRPLUS_AUTO |
			gofuse.CAP_DONT_MASK | gofuse.CAP_HANDLE_KILLPRIV_V2,
		Logger: log.New(slogWriter{log: fsys.log, debug: opts.Debug}, "", 0),
	}
	server, err := gofuse.NewServer(fsys, mnt, mo)
	if err != nil {
		return nil, fmt.Errorf("fuse: mount %s: %w", mnt, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, fmt.Errorf("fuse: mount %s: %w", mnt, err)
	}
	if !fsys.strict {
		// Cache metadata under leases, the kernel too (inval.go).
		fsys.startInval(server)
		c.EnableMetaLeases()
	}
	servePprof(fsys.log, c)
	return server, nil
}

// slogWriter feeds go-fuse's log.Logger output into slog: request traces at
// info level when debugging was asked for, warnings (panics, protocol
// trouble) otherwise.
type slogWriter struct {
	log   *slog.Logger
	debug bool
}

func (w slogWriter) Write(p []byte) (int, error) {
	level := slog.LevelWarn
	if w.debug {
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, "fuse: "+string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}
