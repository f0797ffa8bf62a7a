package fuse

import (
	"context"
	"sync"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// dirHandle is an open directory: the listing read so far, paged in from the
// MDS by name as the reader advances. A FUSE offset is a position in this
// listing (0 ".", 1 "..", then the entries), so telldir/seekdir work for as
// long as the directory stays open; rewinddir (offset 0 again) starts a new
// listing.
type dirHandle struct {
	ino  uint64
	cred proto.Cred

	mu      sync.Mutex
	entries []proto.Dirent
	until   []time.Time // per entry: its lease ends (zero: no lease)
	more    bool        // entries after the last one remain at the MDS
	served  bool        // a reply has been made from this listing
}

// fetch appends the next page of the listing.
func (d *dirHandle) fetch(ctx context.Context, c *client.Client, plus bool) error {
	after := ""
	if n := len(d.entries); n > 0 {
		after = d.entries[n-1].Name
	}
	page, more, ttl, err := c.ReaddirTTL(ctx, d.cred, d.ino, after, 0, plus)
	if err != nil {
		return err
	}
	var until time.Time
	if ttl > 0 {
		until = time.Now().Add(ttl)
	}
	d.entries = append(d.entries, page...)
	for range page {
		d.until = append(d.until, until)
	}
	d.more = more && len(page) > 0
	return nil
}

// at returns the entry at listing position k (k >= 2), fetching pages as
// needed; ok is false past the end.
func (d *dirHandle) at(ctx context.Context, c *client.Client, k uint64, plus bool) (e *proto.Dirent, ok bool, err error) {
	i := k - 2
	for i >= uint64(len(d.entries)) && d.more {
		if err := d.fetch(ctx, c, plus); err != nil {
			return nil, false, err
		}
	}
	if i >= uint64(len(d.entries)) {
		return nil, false, nil
	}
	return &d.entries[i], true, nil
}

func (fs *fileSystem) dir(fh uint64) *dirHandle {
	fs.handlesMu.Lock()
	defer fs.handlesMu.Unlock()
	return fs.dirs[fh]
}

// OpenDir opens a directory and reads its first page, so that a caller
// without read permission fails here rather than in getdents.
func (fs *fileSystem) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	d := &dirHandle{ino: fs.ino(in.NodeId), cred: fs.cred(&in.InHeader)}
	if err := d.fetch(fs.ctx(cancel), fs.c, true); err != nil {
		return fs.status("opendir", err)
	}
	fs.handlesMu.Lock()
	fs.nextHandle++
	fs.dirs[fs.nextHandle] = d
	out.Fh = fs.nextHandle
	fs.handlesMu.Unlock()
	return gofuse.OK
}

// ReadDir lists entries from the requested position.
func (fs *fileSystem) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return fs.readDir(cancel, in, out, false)
}

// ReadDirPlus lists entries with their attributes, handing the kernel a
// reference to each (as Lookup does).
func (fs *fileSystem) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	return fs.readDir(cancel, in, out, true)
}

func (fs *fileSystem) readDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList, plus bool) gofuse.Status {
	d := fs.dir(in.Fh)
	if d == nil {
		return gofuse.EBADF
	}
	ctx := fs.ctx(cancel)
	d.mu.Lock()
	defer d.mu.Unlock()
	if in.Offset == 0 && d.served {
		d.entries, d.until, d.more = nil, nil, false
		if err := d.fetch(ctx, fs.c, plus); err != nil {
			return fs.status("readdir", err)
		}
	}
	d.served = true
	added := 0
	for k := in.Offset; ; k++ {
		var (
			de   = gofuse.DirEntry{Off: k + 1, Mode: proto.ModeDir}
			attr *proto.Attr
		)
		switch k {
		case 0:
			de.Name, de.Ino = ".", d.ino
		case 1:
			de.Name = ".."
			if d.ino == fs.root {
				de.Ino = d.ino
			}
		default:
			e, ok, err := d.at(ctx, fs.c, k, plus)
			if err != nil {
				if added > 0 {
					return gofuse.OK // the next request retries the page
				}
				return fs.status("readdir", err)
			}
			if !ok {
				return gofuse.OK
			}
			de.Name, de.Ino, de.Mode, attr = e.Name, e.Ino, e.Mode, e.Attr
		}
		if !plus {
			if !out.AddDirEntry(de) {
				return gofuse.OK
			}
			added++
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			return gofuse.OK
		}
		added++
		if attr != nil {
			// "." and ".." carry no reference; entries without
			// attributes are looked up by the kernel when used.
			fs.entry(eo, attr, max(time.Until(d.until[k-2]), 0))
		}
	}
}

// ReleaseDir closes a directory handle.
func (fs *fileSystem) ReleaseDir(in *gofuse.ReleaseIn) {
	fs.handlesMu.Lock()
	delete(fs.dirs, in.Fh)
	fs.handlesMu.Unlock()
}

// FsyncDir makes the directory's entries durable: every namespace change is
// committed at the MDS before it is acknowledged, but the store may sync
// its log only in the background, so the MDS syncs it before answering.
func (fs *fileSystem) FsyncDir(cancel <-chan struct{}, in *gofuse.FsyncIn) gofuse.Status {
	return fs.status("fsyncdir", fs.c.SyncMeta(fs.ctx(cancel), fs.ino(in.NodeId)))
}
