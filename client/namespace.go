package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// The inode-level API: what the FUSE layer calls. Every request goes to the
// MDS that owns the inode it names (a directory for entry operations) and
// carries the caller's credentials, which the MDS checks.

// readdirPage is how many entries one OpReaddir asks for.
const readdirPage = 512

// Lookup returns the attributes of name in directory parent.
func (c *Client) Lookup(ctx context.Context, cred proto.Cred, parent uint64, name string) (proto.Attr, error) {
	a, _, err := c.LookupEntry(ctx, cred, parent, name)
	return a, err
}

// LookupEntry is Lookup that also says how long the entry and attributes
// may be cached: while this client holds leases on them (0 if it holds
// none). Under leases it answers from its cache; the caller's search
// permission on parent was checked when the entry was cached, and the
// kernel checks it again before asking.
func (c *Client) LookupEntry(ctx context.Context, cred proto.Cred, parent uint64, name string) (proto.Attr, time.Duration, error) {
	if a, ttl, ok := c.cachedLookup(parent, name); ok {
		c.leases.hits.Add(1)
		c.merge(&a)
		return a, ttl, nil
	}
	if c.cachedAbsent(parent, name) {
		c.leases.hits.Add(1)
		return proto.Attr{}, 0, fmt.Errorf("client: lookup %q in %#x: %w", name, parent, syscall.ENOENT)
	}
	gen := c.leaseGen()
	cred.Session = c.leaseSession()
	var resp proto.EntryResp
	if err := c.mdsCall(ctx, parent, proto.OpLookup, &proto.LookupReq{Cred: cred, Parent: parent, Name: name}, &resp); err != nil {
		return proto.Attr{}, 0, fmt.Errorf("client: lookup %q in %#x: %w", name, parent, err)
	}
	c.leases.misses.Add(1)
	ttl := c.leased(gen, resp.Lease, parent, map[string]uint64{name: resp.Attr.Ino}, resp.Attr)
	c.merge(&resp.Attr)
	return resp.Attr, ttl, nil
}

// Getattr returns an inode's attributes. For a file open through this
// client the size and mtime include its writes not yet reported to the MDS.
func (c *Client) Getattr(ctx context.Context, ino uint64) (proto.Attr, error) {
	a, _, err := c.GetattrTTL(ctx, ino)
	return a, err
}

// GetattrTTL is Getattr that also says how long the attributes may be
// cached (see LookupEntry).
func (c *Client) GetattrTTL(ctx context.Context, ino uint64) (proto.Attr, time.Duration, error) {
	if a, ttl, ok := c.cachedAttr(ino); ok {
		c.leases.hits.Add(1)
		c.merge(&a)
		return a, ttl, nil
	}
	gen := c.leaseGen()
	var resp proto.AttrResp
	if err := c.mdsCall(ctx, ino, proto.OpGetattr, &proto.GetattrReq{Ino: ino, Session: c.leaseSession()}, &resp); err != nil {
		return proto.Attr{}, 0, fmt.Errorf("client: getattr %#x: %w", ino, err)
	}
	c.leases.misses.Add(1)
	ttl := c.leased(gen, resp.Lease, 0, nil, resp.Attr)
	c.merge(&resp.Attr)
	return resp.Attr, ttl, nil
}

// merge folds the state of an open inode into attributes from the MDS.
func (c *Client) merge(a *proto.Attr) {
	if in := c.openInode(a.Ino); in != nil {
		in.mergeAttr(a)
	}
}

// Setattr changes attributes (chmod, chown, truncate, utimes); req.Valid
// says which. Ino and Cred of req are set from the arguments; Handle may name
// an open handle (ftruncate). A size change first flushes this client's
// buffered writes to the file, so they land before the truncation, and then
// updates its open Files.
func (c *Client) Setattr(ctx context.Context, cred proto.Cred, ino uint64, req proto.SetattrReq) (proto.Attr, error) {
	cred.Session = c.sessionID()
	req.Cred, req.Ino = cred, ino
	defer c.forget(0, nil, ino)
	in := c.openInode(ino)
	if in != nil && req.Valid&(proto.SetSize|proto.SetMtime|proto.SetMtimeNow) != 0 {
		if err := in.flushAll(); err != nil {
			return proto.Attr{}, err
		}
		if req.Valid&(proto.SetMtime|proto.SetMtimeNow) != 0 {
			// Report the size now, so that closing the file later
			// does not overwrite the mtime set here with the time of
			// the last write.
			if f := in.anyFile(); f != nil {
				if err := f.reportSize(ctx, false); err != nil {
					return proto.Attr{}, err
				}
			}
		}
	}
	var resp proto.AttrResp
	err := c.mdsCall(ctx, ino, proto.OpSetattr, &req, &resp)
	if errors.Is(err, syscall.ENODATA) && req.Valid&proto.SetSize != 0 {
		// A released file: its data comes back before it is cut.
		if err = c.Restore(ctx, ino); err == nil {
			err = c.mdsCall(ctx, ino, proto.OpSetattr, &req, &resp)
		}
	}
	if err != nil {
		return proto.Attr{}, fmt.Errorf("client: setattr %#x: %w", ino, err)
	}
	if in != nil && req.Valid&proto.SetSize != 0 {
		in.truncated(int64(req.Size))
	}
	c.merge(&resp.Attr)
	return resp.Attr, nil
}

// anyFile returns one open File of the inode, or nil.
func (in *inode) anyFile() *File {
	in.mu.Lock()
	defer in.mu.Unlock()
	for f := range in.files {
		return f
	}
	return nil
}

// Create creates and opens regular file name in parent with permission bits
// mode and O_* flags. The MDS clears the umask bits from mode unless parent
// has a default POSIX ACL, which then decides the new file's permissions
// (POSIX.1e), so pass mode as the caller asked for it. spec, if not zero,
// overrides the layout the file inherits. Without O_EXCL an existing file is
// opened instead (and truncated with O_TRUNC).
func (c *Client) Create(ctx context.Context, cred proto.Cred, parent uint64, name string, mode, umask uint32, flags int, spec layout.Spec) (*File, error) {
	f, _, err := c.CreateEntry(ctx, cred, parent, name, mode, umask, flags, spec)
	return f, err
}

// CreateEntry is Create that also says how long the new entry and its
// attributes may be cached (see LookupEntry).
func (c *Client) CreateEntry(ctx context.Context, cred proto.Cred, parent uint64, name string, mode, umask uint32, flags int, spec layout.Spec) (*File, time.Duration, error) {
	gen := c.leaseGen()
	cred.Session = c.sessionID()
	req := proto.CreateReq{Cred: cred, Session: c.sessionID(), Parent: parent, Name: name,
		Mode: mode & 0o7777, Umask: umask & 0o777, Flags: uint32(flags), Layout: spec, KillPrivs: flags&OKillPrivs != 0}
	var resp proto.OpenResp
	err := c.mdsCall(ctx, parent, proto.OpCreate, &req, &resp)
	if err != nil {
		// Whether name exists is not known here any more (the create
		// may have committed, or found a name this client thought
		// absent).
		c.forget(parent, []string{name}, parent)
	}
	if errors.Is(err, syscall.EEXIST) && flags&syscall.O_EXCL == 0 {
		a, lerr := c.Lookup(ctx, cred, parent, name)
		if lerr != nil {
			return nil, 0, lerr
		}
		if a.IsDir() {
			return nil, 0, fmt.Errorf("client: create %q in %#x: %w", name, parent, syscall.EISDIR)
		}
		f, err := c.Open(ctx, cred, a.Ino, flags&^syscall.O_CREAT)
		return f, 0, err
	}
	if err != nil {
		return nil, 0, fmt.Errorf("client: create %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, 0)
	ttl := c.leased(gen, resp.Lease, parent, map[string]uint64{name: resp.Attr.Ino}, resp.Attr)
	return c.newFile(cred, flags, &resp), ttl, nil
}

// OKillPrivs is an open flag beyond the O_* bits: an O_TRUNC open by a
// caller without CAP_FSETID, whose truncate clears the file's set-id bits
// (the kernel says so with FUSE's OPEN_KILL_SUIDGID).
const OKillPrivs = 1 << 40

// Open opens regular file ino with O_* flags (and OKillPrivs). With O_TRUNC
// the MDS truncates the file as part of the open, after this client's
// buffered writes to it have landed.
func (c *Client) Open(ctx context.Context, cred proto.Cred, ino uint64, flags int) (*File, error) {
	trunc := flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if trunc {
		if in := c.openInode(ino); in != nil {
			if err := in.flushAll(); err != nil {
				return nil, err
			}
		}
	}
	req := proto.OpenReq{Cred: cred, Session: c.sessionID(), Ino: ino, Flags: uint32(flags), KillPrivs: flags&OKillPrivs != 0}
	var resp proto.OpenResp
	err := c.mdsCall(ctx, ino, proto.OpOpen, &req, &resp)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || trunc {
		// An open for writing may truncate, clear set-id bits, mark
		// an archived file dirty: the callback for it is not waited
		// for here.
		c.forget(0, nil, ino)
	}
	if err != nil {
		return nil, fmt.Errorf("client: open %#x: %w", ino, err)
	}
	f := c.newFile(cred, flags, &resp)
	if trunc {
		f.in.truncated(int64(resp.Attr.Size))
	}
	c.noteAccess(cred, &resp.Attr)
	return f, nil
}

// Mkdir creates directory name in parent with permission bits mode, on MDT
// mdt (-1 lets the MDS choose). umask applies as in Create.
func (c *Client) Mkdir(ctx context.Context, cred proto.Cred, parent uint64, name string, mode, umask uint32, mdt int32) (proto.Attr, error) {
	a, _, err := c.MkdirEntry(ctx, cred, parent, name, mode, umask, mdt)
	return a, err
}

// MkdirEntry is Mkdir that also says how long the new entry and its
// attributes may be cached (see LookupEntry).
func (c *Client) MkdirEntry(ctx context.Context, cred proto.Cred, parent uint64, name string, mode, umask uint32, mdt int32) (proto.Attr, time.Duration, error) {
	gen := c.leaseGen()
	cred.Session = c.sessionID()
	var resp proto.EntryResp
	req := proto.MkdirReq{Cred: cred, Parent: parent, Name: name, Mode: mode & 0o7777, Umask: umask & 0o777, MDT: mdt}
	err := c.mdsCall(ctx, parent, proto.OpMkdir, &req, &resp)
	if err != nil {
		c.forget(parent, []string{name}, parent)
		return proto.Attr{}, 0, fmt.Errorf("client: mkdir %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, 1)
	ttl := c.leased(gen, resp.Lease, parent, map[string]uint64{name: resp.Attr.Ino}, resp.Attr)
	if ttl > 0 {
		c.leasedEmptyDir(resp.Attr.Ino)
	}
	return resp.Attr, ttl, nil
}

// Mknod creates a FIFO, socket, device or empty regular file; mode holds the
// type and permission bits. umask applies as in Create.
func (c *Client) Mknod(ctx context.Context, cred proto.Cred, parent uint64, name string, mode, umask, rdev uint32) (proto.Attr, error) {
	var resp proto.EntryResp
	cred.Session = c.sessionID()
	req := proto.MknodReq{Cred: cred, Parent: parent, Name: name, Mode: mode, Umask: umask & 0o777, Rdev: rdev}
	gen := c.leaseGen()
	defer c.forget(parent, []string{name})
	if err := c.mdsCall(ctx, parent, proto.OpMknod, &req, &resp); err != nil {
		c.forget(0, nil, parent)
		return proto.Attr{}, fmt.Errorf("client: mknod %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, 0)
	return resp.Attr, nil
}

// Symlink creates symbolic link name in parent pointing to target.
func (c *Client) Symlink(ctx context.Context, cred proto.Cred, parent uint64, name, target string) (proto.Attr, error) {
	var resp proto.EntryResp
	cred.Session = c.sessionID()
	req := proto.SymlinkReq{Cred: cred, Parent: parent, Name: name, Target: target}
	gen := c.leaseGen()
	defer c.forget(parent, []string{name})
	if err := c.mdsCall(ctx, parent, proto.OpSymlink, &req, &resp); err != nil {
		c.forget(0, nil, parent)
		return proto.Attr{}, fmt.Errorf("client: symlink %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, 0)
	return resp.Attr, nil
}

// Readlink returns a symbolic link's target.
func (c *Client) Readlink(ctx context.Context, ino uint64) (string, error) {
	var resp proto.ReadlinkResp
	if err := c.mdsCall(ctx, ino, proto.OpReadlink, &proto.ReadlinkReq{Ino: ino}, &resp); err != nil {
		return "", fmt.Errorf("client: readlink %#x: %w", ino, err)
	}
	return resp.Target, nil
}

// Link makes a hard link to ino named name in newParent.
func (c *Client) Link(ctx context.Context, cred proto.Cred, ino, newParent uint64, name string) (proto.Attr, error) {
	var resp proto.EntryResp
	cred.Session = c.sessionID()
	req := proto.LinkReq{Cred: cred, Ino: ino, NewParent: newParent, Name: name}
	defer c.forget(newParent, []string{name}, ino, newParent)
	if err := c.mdsCall(ctx, newParent, proto.OpLink, &req, &resp); err != nil {
		return proto.Attr{}, fmt.Errorf("client: link %#x as %q in %#x: %w", ino, name, newParent, err)
	}
	c.merge(&resp.Attr)
	return resp.Attr, nil
}

// Unlink removes the non-directory entry name from parent.
func (c *Client) Unlink(ctx context.Context, cred proto.Cred, parent uint64, name string) error {
	cred.Session = c.sessionID()
	gen := c.leaseGen()
	defer c.forget(parent, []string{name})
	var resp proto.ChangeResp
	if err := c.mdsCall(ctx, parent, proto.OpUnlink, &proto.UnlinkReq{Cred: cred, Parent: parent, Name: name}, &resp); err != nil {
		c.forget(0, nil, parent)
		return fmt.Errorf("client: unlink %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, 0)
	return nil
}

// Rmdir removes the empty directory name from parent.
func (c *Client) Rmdir(ctx context.Context, cred proto.Cred, parent uint64, name string) error {
	cred.Session = c.sessionID()
	gen := c.leaseGen()
	defer c.forget(parent, []string{name})
	var resp proto.ChangeResp
	if err := c.mdsCall(ctx, parent, proto.OpRmdir, &proto.RmdirReq{Cred: cred, Parent: parent, Name: name}, &resp); err != nil {
		c.forget(0, nil, parent)
		return fmt.Errorf("client: rmdir %q in %#x: %w", name, parent, err)
	}
	c.parentChanged(gen, parent, resp.ParentTime, -1)
	return nil
}

// Rename renames parent/name to newParent/newName atomically; flags are
// proto.RenameNoReplace or proto.RenameExchange (renameat2).
func (c *Client) Rename(ctx context.Context, cred proto.Cred, parent uint64, name string, newParent uint64, newName string, flags uint32) error {
	cred.Session = c.sessionID()
	gen := c.leaseGen()
	defer c.forget(parent, []string{name})
	defer c.forget(newParent, []string{newName})
	req := proto.RenameReq{Cred: cred, Parent: parent, Name: name, NewParent: newParent, NewName: newName, Flags: flags}
	var resp proto.ChangeResp
	if err := c.mdsCall(ctx, parent, proto.OpRename, &req, &resp); err != nil {
		c.forget(0, nil, parent, newParent)
		return fmt.Errorf("client: rename %q in %#x to %q in %#x: %w", name, parent, newName, newParent, err)
	}
	if parent != newParent {
		// A directory moving across changes both link counts, and
		// what moved is not known here for sure.
		c.forget(0, nil, parent, newParent)
		return nil
	}
	c.parentChanged(gen, parent, resp.ParentTime, 0)
	return nil
}

// Readdir returns up to max entries of directory ino in name order, starting
// after name after ("" for the first page), with full attributes when plus is
// set, and whether more entries follow. max <= 0 picks a page size.
func (c *Client) Readdir(ctx context.Context, cred proto.Cred, ino uint64, after string, max int, plus bool) ([]proto.Dirent, bool, error) {
	ents, more, _, err := c.ReaddirTTL(ctx, cred, ino, after, max, plus)
	return ents, more, err
}

// ReaddirTTL is Readdir that also says, for plus, how long the entries and
// their attributes may be cached (see LookupEntry).
func (c *Client) ReaddirTTL(ctx context.Context, cred proto.Cred, ino uint64, after string, max int, plus bool) ([]proto.Dirent, bool, time.Duration, error) {
	if max <= 0 {
		max = readdirPage
	}
	gen := c.leaseGen()
	if plus {
		cred.Session = c.leaseSession()
	}
	var resp proto.ReaddirResp
	req := proto.ReaddirReq{Cred: cred, Ino: ino, After: after, Max: max, Plus: plus}
	if err := c.mdsCall(ctx, ino, proto.OpReaddir, &req, &resp); err != nil {
		return nil, false, 0, fmt.Errorf("client: readdir %#x: %w", ino, err)
	}
	var ttl time.Duration
	if plus && resp.Lease != 0 {
		names := make(map[string]uint64, len(resp.Entries))
		attrs := make([]proto.Attr, 0, len(resp.Entries))
		for _, e := range resp.Entries {
			if e.Attr != nil {
				names[e.Name] = e.Ino
				attrs = append(attrs, *e.Attr)
			}
		}
		ttl = c.leased(gen, resp.Lease, ino, names, attrs...)
	}
	if plus {
		for i := range resp.Entries {
			if a := resp.Entries[i].Attr; a != nil {
				c.merge(a)
			}
		}
	}
	return resp.Entries, resp.More, ttl, nil
}

// Access checks access(2) permission bits (4 read, 2 write, 1 execute).
func (c *Client) Access(ctx context.Context, cred proto.Cred, ino uint64, mask uint32) error {
	if err := c.mdsCall(ctx, ino, proto.OpAccess, &proto.AccessReq{Cred: cred, Ino: ino, Mask: mask}, nil); err != nil {
		return fmt.Errorf("client: access %#x mask %#o: %w", ino, mask, err)
	}
	return nil
}

// Getxattr returns the value of extended attribute name.
func (c *Client) Getxattr(ctx context.Context, cred proto.Cred, ino uint64, name string) ([]byte, error) {
	var resp proto.GetxattrResp
	if err := c.mdsCall(ctx, ino, proto.OpGetxattr, &proto.GetxattrReq{Cred: cred, Ino: ino, Name: name}, &resp); err != nil {
		return nil, fmt.Errorf("client: getxattr %q of %#x: %w", name, ino, err)
	}
	return resp.Value, nil
}

// Setxattr sets extended attribute name; flags are proto.XattrCreate or
// proto.XattrReplace.
func (c *Client) Setxattr(ctx context.Context, cred proto.Cred, ino uint64, name string, value []byte, flags uint32) error {
	cred.Session = c.sessionID()
	defer c.forget(0, nil, ino)
	req := proto.SetxattrReq{Cred: cred, Ino: ino, Name: name, Value: value, Flags: flags}
	if err := c.mdsCall(ctx, ino, proto.OpSetxattr, &req, nil); err != nil {
		return fmt.Errorf("client: setxattr %q of %#x: %w", name, ino, err)
	}
	return nil
}

// Listxattr returns the names of an inode's extended attributes.
func (c *Client) Listxattr(ctx context.Context, cred proto.Cred, ino uint64) ([]string, error) {
	var resp proto.ListxattrResp
	if err := c.mdsCall(ctx, ino, proto.OpListxattr, &proto.ListxattrReq{Cred: cred, Ino: ino}, &resp); err != nil {
		return nil, fmt.Errorf("client: listxattr %#x: %w", ino, err)
	}
	return resp.Names, nil
}

// Removexattr removes extended attribute name.
func (c *Client) Removexattr(ctx context.Context, cred proto.Cred, ino uint64, name string) error {
	cred.Session = c.sessionID()
	defer c.forget(0, nil, ino)
	if err := c.mdsCall(ctx, ino, proto.OpRemovexattr, &proto.RemovexattrReq{Cred: cred, Ino: ino, Name: name}, nil); err != nil {
		return fmt.Errorf("client: removexattr %q of %#x: %w", name, ino, err)
	}
	return nil
}

// SyncMeta makes every metadata change the MDS of ino has acknowledged
// durable (fsync of a directory), whatever its store's background sync
// interval.
func (c *Client) SyncMeta(ctx context.Context, ino uint64) error {
	if err := c.mdsCall(ctx, ino, proto.OpSync, &proto.SyncReq{}, nil); err != nil {
		return fmt.Errorf("client: sync metadata of %#x: %w", ino, err)
	}
	return nil
}

// MDTs returns the MDT table as the store holds it: each MDT's owner,
// epoch, lease and state.
func (c *Client) MDTs(ctx context.Context) ([]proto.MDT, error) {
	table, err := c.fetchMDTs(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: read the MDT table: %w", err)
	}
	return table, nil
}

// Statfs returns filesystem-wide usage.
func (c *Client) Statfs(ctx context.Context) (proto.StatfsResp, error) {
	var resp proto.StatfsResp
	if err := c.mdsCall(ctx, c.Root(), proto.OpStatfs, &proto.StatfsReq{}, &resp); err != nil {
		return resp, fmt.Errorf("client: statfs: %w", err)
	}
	return resp, nil
}

// Targets returns every OST and MDT with its usage, and refreshes the
// client's OST table from it.
func (c *Client) Targets(ctx context.Context) (proto.TargetsResp, error) {
	var resp proto.TargetsResp
	if err := c.mdsCall(ctx, c.Root(), proto.OpTargets, &proto.TargetsReq{}, &resp); err != nil {
		return resp, fmt.Errorf("client: targets: %w", err)
	}
	c.setOSTs(resp.OSTs)
	for i := range resp.OSTs {
		resp.OSTs[i].Transport = c.rpc.Transport(resp.OSTs[i].Addr)
	}
	return resp, nil
}

// TransportStats returns the client's connection and call counts per
// transport (TCP, RDMA), for metrics.
func (c *Client) TransportStats() rpc.ClientStats { return c.rpc.Stats() }

// GetLayout returns a file's layout or a directory's default layout.
func (c *Client) GetLayout(ctx context.Context, ino uint64) (proto.GetLayoutResp, error) {
	var resp proto.GetLayoutResp
	if err := c.mdsCall(ctx, ino, proto.OpGetLayout, &proto.GetLayoutReq{Ino: ino}, &resp); err != nil {
		return resp, fmt.Errorf("client: getstripe %#x: %w", ino, err)
	}
	return resp, nil
}

// SetLayout sets a directory's default layout (an empty spec removes it) or
// replaces the layout of a regular file that has never held data.
func (c *Client) SetLayout(ctx context.Context, cred proto.Cred, ino uint64, spec layout.Spec) (proto.GetLayoutResp, error) {
	defer c.forget(0, nil, ino)
	var resp proto.GetLayoutResp
	if err := c.mdsCall(ctx, ino, proto.OpSetLayout, &proto.SetLayoutReq{Cred: cred, Ino: ino, Spec: spec}, &resp); err != nil {
		return resp, fmt.Errorf("client: setstripe %#x: %w", ino, err)
	}
	if in := c.openInode(ino); in != nil && !resp.IsDir {
		in.mu.Lock()
		if resp.Layout.Gen > in.lay.Gen {
			in.lay = resp.Layout
		}
		in.mu.Unlock()
	}
	return resp, nil
}

// SetConsistency sets the consistency mode that directory ino gives the
// files created below it from now on: Strict, CloseToOpen, or "" to inherit
// its parent's. A file created strict (proto.AttrFlagStrict) is read and
// written without client-side caching by every client, whatever its mount's
// mode. Only the directory's owner or root may set it.
func (c *Client) SetConsistency(ctx context.Context, cred proto.Cred, ino uint64, mode string) error {
	defer c.forget(0, nil, ino)
	req := proto.SetConsistencyReq{Cred: cred, Ino: ino, Mode: mode}
	if err := c.mdsCall(ctx, ino, proto.OpSetConsistency, &req, nil); err != nil {
		return fmt.Errorf("client: set consistency of %#x to %q: %w", ino, mode, err)
	}
	return nil
}

// ConsistencyOf returns the consistency mode attributes carry: Strict,
// CloseToOpen, or "" where the inode takes its directory's (a directory
// without a mode of its own, or a file that is not strict).
func ConsistencyOf(a *proto.Attr) string {
	switch {
	case a.Flags&proto.AttrFlagStrict != 0:
		return Strict
	case a.Flags&proto.AttrFlagCloseToOpen != 0:
		return CloseToOpen
	}
	return ""
}
