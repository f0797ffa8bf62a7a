// Package fuse mounts a Strata filesystem through the kernel's FUSE driver,
// on top of the client library. It speaks go-fuse's raw protocol API: FUSE
// node ids are Strata inode numbers (the kernel's root, node 1, stands for
// the Strata root), so no table maps one to the other; a lookup count per
// node is kept only to hold per-node cache state until the kernel forgets
// the node.
//
// Every request runs with the caller's uid, gid, supplementary groups and
// pid, which the MDS checks: the mount does not ask the kernel for
// default_permissions. Errors become errno values here, once.
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
// (FUSE_DIRECT_IO_ALLOW_MMAP). In close-to-open mode an open keeps the
// kernel's cached pages (FOPEN_KEEP_CACHE) only if the file's data version,
// size and mtime are what the previous open of it on this mount saw, and an
// open that finds the size or mtime changed has the kernel drop its cached
// attributes, so fstat after open sees another client's closed writes
// although attributes are otherwise cached for a second; in strict
// mode nothing is cached: entry and attribute timeouts are 0 and every file is
// opened with FOPEN_DIRECT_IO.
//
// FUSE_INTERRUPT is not honoured: a request finishes, or fails with the rpc
// call timeout, but never returns EINTR (see fileSystem.ctx).
//
// Not yet served: byte-range and flock locks (the kernel keeps them local to
// this mount), fallocate (EOPNOTSUPP), O_TMPFILE, and file capabilities and
// POSIX ACLs (security.capability and system.posix_acl_* read as absent).
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
		// Locks are not coherent across clients yet, so the kernel keeps
		// them local to this mount.
		EnableLocks: false,
		// Answer security.capability and POSIX ACL lookups without a
		// round trip: the kernel asks on every write.
		IgnoreSecurityLabels: true,
		// Mount with mount(2) when running as root, through fusermount3
		// otherwise.
		DirectMount: true,
		// mmap of FOPEN_DIRECT_IO files; O_TRUNC carried by the open
		// itself (one MDS request, atomic); and READDIRPLUS only where
		// the kernel expects lookups to follow (ls -l, not ls), since
		// attributes cost the MDS more than names.
		ExtraCapabilities: gofuse.CAP_DIRECT_IO_ALLOW_MMAP | gofuse.CAP_ATOMIC_O_TRUNC | gofuse.CAP_READDIRPLUS_AUTO,
		Logger:            log.New(slogWriter{log: fsys.log, debug: opts.Debug}, "", 0),
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
