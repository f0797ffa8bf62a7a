package fuse

import (
	"context"
	"sync"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// dirHandle is an open directory: a window of the listing, paged in from
// the MDS by name as the reader advances, the pages it has read past
// dropped, so that listing a huge directory takes a page of memory, not
// the directory. A FUSE offset is a position in the listing (0 ".", 1 "..",
// then the entries); seekdir back before the window pages in again from
// the start; rewinddir (offset 0 again) starts a new listing.
type dirHandle struct {
	ino  uint64
	cred proto.Cred

	mu      sync.Mutex
	base    uint64 // listing position (from 0, after "." and "..") of entries[0]
	last    string // the name of the last entry fetched
	entries []proto.Dirent
	until   []time.Time // per entry: its lease ends (zero: no lease)
	more    bool        // entries after the last one remain at the MDS
	served  bool        // a reply has been made from this listing
}

// restart empties the window, for a listing from the start.
func (d *dirHandle) restart() {
	d.base, d.last, d.entries, d.until, d.more = 0, "", nil, nil, false
}

// trim drops the entries before listing position i (the reader is past
// them), keeping the window at least a page.
func (d *dirHandle) trim(i uint64) {
	if i <= d.base || i-d.base < 2*readdirKeep {
		return
	}
	n := min(i-d.base-readdirKeep, uint64(len(d.entries)))
	d.entries = append(d.entries[:0:0], d.entries[n:]...)
	d.until = append(d.until[:0:0], d.until[n:]...)
	d.base += n
}

// readdirKeep is how many entries before the reader a window keeps (a
// short step back, as a reply the kernel could not take whole, stays in).
const readdirKeep = 1024

// fetch appends the next page of the listing.
func (d *dirHandle) fetch(ctx context.Context, c *client.Client, plus bool) error {
	after := d.last
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
	if len(page) > 0 {
		d.last = page[len(page)-1].Name
	}
	d.more = more && len(page) > 0
	return nil
}

// at returns the entry at listing position k (k >= 2), fetching pages as
// needed; ok is false past the end.
func (d *dirHandle) at(ctx context.Context, c *client.Client, k uint64, plus bool) (e *proto.Dirent, ok bool, err error) {
	i := k - 2
	if i < d.base {
		// Before the window (seekdir back): page in from the start.
		d.restart()
		if err := d.fetch(ctx, c, plus); err != nil {
			return nil, false, err
		}
	}
	for i >= d.base+uint64(len(d.entries)) && d.more {
		d.trim(i)
		if err := d.fetch(ctx, c, plus); err != nil {
			return nil, false, err
		}
	}
	if i >= d.base+uint64(len(d.entries)) {
		return nil, false, nil
	}
	return &d.entries[i-d.base], true, nil
}

// untilAt returns when the lease on the entry at listing position k ends.
func (d *dirHandle) untilAt(k uint64) time.Time { return d.until[k-2-d.base] }

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
		d.restart()
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
			fs.entry(eo, attr, max(time.Until(d.untilAt(k)), 0))
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
