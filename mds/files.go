package mds

import (
	"context"
	"fmt"
	"math"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// openRights maps O_* access flags to capability rights and the permission
// bits an open needs.
func openRights(flags uint32) (rights uint8, mask uint32, err error) {
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		rights, mask = proto.RightRead, mayRead
	case syscall.O_WRONLY:
		rights, mask = proto.RightWrite, mayWrite
	case syscall.O_RDWR:
		rights, mask = proto.RightRead|proto.RightWrite, mayRead|mayWrite
	default:
		return 0, 0, fmt.Errorf("mds: open flags %#x: %w", flags, syscall.EINVAL)
	}
	if flags&syscall.O_TRUNC != 0 {
		mask |= mayWrite
	}
	return rights, mask, nil
}

// capability signs a capability for ino valid for capabilityTTL, naming
// the layout generation and truncate epoch its holder knows.
func (s *Service) capability(ino uint64, rights uint8, gen uint32, epoch uint64) proto.Capability {
	return proto.Capability{Ino: ino, Rights: rights, Expiry: s.now().Add(capabilityTTL).UnixNano(),
		Gen: gen, Epoch: epoch}.Signed(s.secret)
}

// capabilityOf signs a capability for in as it is now.
func (s *Service) capabilityOf(in *inode, rights uint8) proto.Capability {
	var gen uint32
	if in.Layout != nil {
		gen = in.Layout.Gen
	}
	return s.capability(in.Ino, rights, gen, in.TruncEpoch)
}

// Create creates a regular file in Parent and opens it. If the name exists,
// it fails with EEXIST under O_EXCL and otherwise opens the existing file
// (a non-regular one fails as Open would). A handle open for writing is
// recorded in the store with the file, and so is the reply (req.Tag): a
// resend of a create that committed gets the first reply, not EEXIST.
func (s *Service) Create(ctx context.Context, req *proto.CreateReq) (*proto.OpenResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	rights, _, err := openRights(req.Flags)
	if err != nil {
		return nil, err
	}
	if err := req.Layout.Validate(); err != nil {
		return nil, fmt.Errorf("mds: create %q: %w: %w", req.Name, err, syscall.EINVAL)
	}
	rootDef, err := s.rootDefault(ctx)
	if err != nil {
		return nil, err
	}
	ino, err := s.newIno(ctx, inoMDT(req.Parent))
	if err != nil {
		return nil, err
	}
	// The handle exists before the inode does, so that an unlink racing
	// with this create sees the file open and keeps it as an orphan.
	h, err := s.open.add(req.Session, ino, req.Flags, req.Cred.Uid, rights)
	if err != nil {
		return nil, err
	}
	var resp proto.OpenResp
	var existing uint64
	replay := false
	err = s.update(ctx, func(t *mtx) error {
		existing = 0
		resp = proto.OpenResp{}
		var err error
		if replay, err = replayed(t, req.Tag, proto.OpCreate, &resp); replay || err != nil {
			return err
		}
		if d, ok, err := t.lookup(req.Parent, req.Name); err != nil {
			return err
		} else if ok {
			if req.Flags&syscall.O_EXCL != 0 {
				return fmt.Errorf("mds: create %q in %#x: %w", req.Name, req.Parent, syscall.EEXIST)
			}
			existing = d.Ino
			return nil
		}
		mode := proto.ModeRegular | req.Mode&modePerm
		in, err := s.newEntry(t, &req.Cred, req.Parent, req.Name, ino, mode, req.Umask, func(dir, in *inode) error {
			return s.instantiate(t, dir, in, req.Layout, rootDef)
		})
		if err != nil {
			return err
		}
		t.changelog(&req.Cred, proto.ChangelogCreate, in.Ino, req.Parent, req.Name)
		resp.Attr, resp.Layout = in.attr(), *in.Layout
		if err := t.flagQuota(in, &resp.Attr); err != nil {
			return err
		}
		resp.Cap = s.capabilityOf(in, rights)
		resp.Handle = h.id
		if rights&proto.RightWrite != 0 {
			if err := t.recordHandle(h); err != nil {
				return err
			}
		}
		return t.remember(req.Tag, proto.OpCreate, &resp)
	})
	if err != nil || existing != 0 || replay {
		s.open.remove(h.id)
	}
	if err != nil {
		return nil, err
	}
	if replay {
		return s.replayedOpen(ctx, &resp, req.Session, req.Cred.Uid, req.Flags, rights)
	}
	if existing != 0 {
		return s.open1(ctx, &proto.OpenReq{Cred: req.Cred, Session: req.Session, Ino: existing, Flags: req.Flags,
			KillPrivs: req.KillPrivs, Tag: req.Tag}, proto.OpCreate)
	}
	return &resp, nil
}

// Open opens an existing regular file, checking read and write permission
// as the flags ask; O_TRUNC truncates it to zero. A handle open for writing
// is recorded in the store, with the reply. With Replay it re-establishes
// an open the client had before this MDS started (see recovery.go).
func (s *Service) Open(ctx context.Context, req *proto.OpenReq) (*proto.OpenResp, error) {
	if req.Replay {
		return s.reopen(ctx, req)
	}
	return s.open1(ctx, req, proto.OpOpen)
}

// open1 is Open for a request whose reply is recorded under op (OpOpen, or
// OpCreate for a create that found the file).
func (s *Service) open1(ctx context.Context, req *proto.OpenReq, op uint16) (*proto.OpenResp, error) {
	rights, mask, err := openRights(req.Flags)
	if err != nil {
		return nil, err
	}
	gate := s.gates.of(req.Ino)
	gate.RLock()
	h, err := s.open.add(req.Session, req.Ino, req.Flags, req.Cred.Uid, rights)
	if err != nil {
		gate.RUnlock()
		return nil, err
	}
	var resp proto.OpenResp
	write := rights&proto.RightWrite != 0
	replay := false
	body := func(t *mtx) error {
		resp = proto.OpenResp{}
		if write {
			var err error
			if replay, err = replayed(t, req.Tag, op, &resp); replay || err != nil {
				return err
			}
		}
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := checkOpenable(in); err != nil {
			return err
		}
		if err := need(&req.Cred, in, mask, "open"); err != nil {
			return err
		}
		if write && in.hsmWriteOpen() {
			t.put(in)
		}
		resp.Attr, resp.Layout = in.attr(), *in.Layout
		resp.Cap = s.capabilityOf(in, rights)
		resp.Handle = h.id
		if !write {
			return nil
		}
		if err := t.flagQuota(in, &resp.Attr); err != nil {
			return err
		}
		if err := t.recordHandle(h); err != nil {
			return err
		}
		return t.remember(req.Tag, op, &resp)
	}
	// Read-opens write nothing: their clients replay them after a restart.
	if write {
		err = s.update(ctx, body)
	} else {
		err = s.view(ctx, body)
	}
	gate.RUnlock()
	if replay {
		s.open.remove(h.id)
		return s.replayedOpen(ctx, &resp, req.Session, req.Cred.Uid, req.Flags, rights)
	}
	if err == nil && req.Flags&syscall.O_TRUNC != 0 {
		err = s.truncateAtOpen(ctx, req, h.id, rights, &resp)
	}
	if err != nil {
		if _, err := s.release(ctx, h.id, nil, proto.ReqTag{}); err != nil {
			s.log.Warn("mds: release after failed open", "ino", fmt.Sprintf("%#x", req.Ino), "err", err)
		}
		return nil, err
	}
	return &resp, nil
}

// truncateAtOpen truncates a file an O_TRUNC open opened as handle.
func (s *Service) truncateAtOpen(ctx context.Context, req *proto.OpenReq, handle uint64, rights uint8, resp *proto.OpenResp) error {
	// The open checked write permission; the truncate needs no more.
	valid := proto.SetSize
	if req.KillPrivs {
		valid |= proto.SetKillPrivs
	}
	in, err := s.setattr(ctx, &proto.SetattrReq{Cred: req.Cred, Ino: req.Ino, Handle: handle, Valid: valid}, true)
	if err != nil {
		return err
	}
	resp.Attr, resp.Layout = in.attr(), *in.Layout
	resp.Cap = s.capabilityOf(in, rights)
	return nil
}

// replayedOpen finishes a resent open or create whose first execution
// committed: resp is its recorded reply, whose handle is open (this MDS
// kept it, or loaded it from the store after a restart). An O_TRUNC is done
// again: the client cannot have written between (it had no reply), and a
// crash may have come between the open's commit and its truncate.
func (s *Service) replayedOpen(ctx context.Context, resp *proto.OpenResp, session uint64, uid, flags uint32, rights uint8) (*proto.OpenResp, error) {
	if _, err := s.open.restore(&handle{id: resp.Handle, session: session, ino: resp.Attr.Ino, flags: flags, uid: uid, rights: rights}); err != nil {
		return nil, err
	}
	if flags&syscall.O_TRUNC != 0 {
		req := &proto.OpenReq{Session: session, Ino: resp.Attr.Ino, Flags: flags, Cred: proto.Cred{Uid: uid}}
		if err := s.truncateAtOpen(ctx, req, resp.Handle, rights, resp); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// reopen re-establishes an open its client held before this MDS started:
// the handle keeps its number. Permission is checked again.
func (s *Service) reopen(ctx context.Context, req *proto.OpenReq) (*proto.OpenResp, error) {
	rights, mask, err := openRights(req.Flags)
	if err != nil {
		return nil, err
	}
	if req.Handle == 0 {
		return nil, fmt.Errorf("mds: replayed open of %#x without a handle: %w", req.Ino, syscall.EINVAL)
	}
	var resp proto.OpenResp
	err = s.view(ctx, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := checkOpenable(in); err != nil {
			return err
		}
		if err := need(&req.Cred, in, mask, "reopen"); err != nil {
			return err
		}
		resp = proto.OpenResp{Handle: req.Handle, Attr: in.attr(), Layout: *in.Layout, Cap: s.capabilityOf(in, rights)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	gate := s.gates.of(req.Ino)
	gate.RLock()
	_, err = s.open.restore(&handle{id: req.Handle, session: req.Session, ino: req.Ino, flags: req.Flags, uid: req.Cred.Uid, rights: rights})
	gate.RUnlock()
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// checkOpenable refuses to open anything but a regular file.
func checkOpenable(in *inode) error {
	switch {
	case in.isDir():
		return fmt.Errorf("mds: open directory %#x: %w", in.Ino, syscall.EISDIR)
	case in.isSymlink():
		return fmt.Errorf("mds: open symlink %#x: %w", in.Ino, syscall.ELOOP)
	case !in.isRegular() || in.Layout == nil:
		return fmt.Errorf("mds: open special file %#x at the MDS: %w", in.Ino, syscall.EINVAL)
	}
	return nil
}

// Close releases a handle. A writer's reported size merges as a maximum and
// its mtime, ctime and data version advance. The last close of an orphan
// destroys it. A resent close whose first execution committed gets the
// first reply (req.Tag), not EBADF.
func (s *Service) Close(ctx context.Context, req *proto.CloseReq) (*proto.AttrResp, error) {
	h, err := s.open.get(req.Handle, req.Ino)
	if err != nil {
		var resp proto.AttrResp
		done := false
		if !req.Tag.IsZero() {
			verr := s.view(ctx, func(t *mtx) error {
				var err error
				done, err = replayed(t, req.Tag, proto.OpClose, &resp)
				return err
			})
			if verr != nil {
				return nil, verr
			}
		}
		if done {
			return &resp, nil
		}
		return nil, err
	}
	if req.Session != 0 && h.session != req.Session {
		return nil, fmt.Errorf("mds: close handle %#x of another session: %w", req.Handle, syscall.EBADF)
	}
	var w *proto.CloseReq
	if req.Wrote {
		w = req
	}
	attr, err := s.release(ctx, req.Handle, w, req.Tag)
	if err != nil {
		return nil, err
	}
	return &proto.AttrResp{Attr: attr}, nil
}

// CloseMany releases a batch of read-only handles (see proto.CloseManyReq).
// A handle of a write open is refused: its close carries what was written.
func (s *Service) CloseMany(ctx context.Context, req *proto.CloseManyReq) error {
	var first error
	for i := range req.Closes {
		c := &req.Closes[i]
		if c.Wrote {
			return fmt.Errorf("mds: a batched close of handle %#x reports writes: %w", c.Handle, syscall.EINVAL)
		}
		if h, err := s.open.get(c.Handle, c.Ino); err == nil && h.rights&proto.RightWrite != 0 {
			return fmt.Errorf("mds: a batched close of write handle %#x: %w", c.Handle, syscall.EINVAL)
		}
		if _, err := s.Close(ctx, c); err != nil && !isErrno(err, syscall.EBADF) && first == nil {
			first = err
		}
	}
	return first
}

// release removes a handle from the open table, merges what its writer
// reported (w, may be nil), deletes the handle's record if it was open for
// writing, and destroys the file if this was the last handle of an orphan.
// A handle of an inode that does not exist is just dropped. The reply is
// recorded under tag when the release writes the store.
//
// A release that fails leaves the handle open, so that the client's resend
// finds it (a commit fenced while the lease was renewed, a store outage); if
// the failed commit went through after all (its result undetermined), the
// resend gets the recorded reply instead of merging twice. Only such a
// resend reads the reply slot.
func (s *Service) release(ctx context.Context, id uint64, w *proto.CloseReq, tag proto.ReqTag) (attr proto.Attr, err error) {
	h, left, ok := s.open.remove(id)
	if !ok {
		return proto.Attr{}, fmt.Errorf("mds: close handle %#x: %w", id, syscall.EBADF)
	}
	defer func() {
		if err != nil {
			h.unsure = true
			s.open.restore(&h) // fails only if the session is gone
		}
	}()
	if left == 0 {
		gate := s.gates.of(h.ino)
		gate.Lock()
		defer gate.Unlock()
		left = s.open.count(h.ino)
	}
	writer := h.rights&proto.RightWrite != 0
	wrote := w != nil && writer
	if !writer {
		// Nothing to merge or delete: a snapshot read answers, unless
		// this was the last handle of a file that may have lost its
		// last link.
		attr, orphan, err := s.attrAtRelease(ctx, h.ino)
		if err != nil || left > 0 || !orphan {
			return attr, err
		}
	}
	queued := false
	err = s.updateInode(ctx, h.ino, func(t *mtx) error {
		queued = false
		if h.unsure {
			var prev proto.AttrResp
			if done, err := replayed(t, tag, proto.OpClose, &prev); done || err != nil {
				attr = prev.Attr
				return err
			}
		}
		attr = proto.Attr{}
		if writer {
			if err := t.kv.Delete(t.k.handle(h.id)); err != nil {
				return err
			}
		}
		in, err := t.inode(h.ino)
		if isErrno(err, syscall.ENOENT) {
			// A failed open of a missing inode: nothing to release.
			return nil
		}
		if err != nil {
			return err
		}
		if wrote {
			t.mergeWrite(in, w.Size, w.Mtime, h.uid, w.Epoch)
			in.noteWritten(w.WrittenGen, w.Written)
		}
		if writer {
			// Lustre's CLOSE: the close of a file opened for
			// writing (writes are reported at flush, not only here).
			t.changelog(&proto.Cred{Uid: h.uid}, proto.ChangelogClose, in.Ino, 0, "")
		}
		attr = in.attr()
		if left == 0 && in.Nlink == 0 {
			if queued, err = s.destroyInode(t, in); err != nil {
				return err
			}
		}
		return t.remember(tag, proto.OpClose, &proto.AttrResp{Attr: attr})
	})
	if queued {
		s.kickDestroy()
	}
	return attr, err
}

// attrAtRelease reads the attributes of ino for a close that changes
// nothing, and whether it has no link left (an orphan, or a file an unlink
// is destroying). A missing inode (the handle of a failed open) gives zero
// attributes and no error.
func (s *Service) attrAtRelease(ctx context.Context, ino uint64) (proto.Attr, bool, error) {
	var attr proto.Attr
	orphan := false
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(ino)
		if isErrno(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		attr, orphan = in.attr(), in.Nlink == 0
		return nil
	})
	return attr, orphan, err
}

// mergeWrite records data a client wrote: size becomes the maximum of the
// MDS size and the writer's, unless the writer's size belongs to an older
// truncate epoch (it was written before a truncate cut the file, and must
// not bring the old size back); mtime becomes the writer's last write (or
// now), and the data version advances. A write by an unprivileged opener
// clears the set-id bits.
func (t *mtx) mergeWrite(in *inode, size uint64, mtime int64, uid uint32, epoch uint64) {
	if epoch >= in.TruncEpoch {
		in.Size = max(in.Size, size)
	}
	if mtime <= 0 {
		mtime = t.now
	}
	in.Mtime = mtime
	in.DataVersion++
	in.hsmDataChanged()
	if uid != 0 {
		killPrivs(in)
	}
	t.changed(in)
}

// SetSize merges a size a writer reports without closing (flush, fsync);
// Sync makes the metadata durable before the reply.
func (s *Service) SetSize(ctx context.Context, req *proto.SetSizeReq) (*proto.AttrResp, error) {
	h, err := s.open.get(req.Handle, req.Ino)
	if err != nil {
		return nil, err
	}
	if h.rights&proto.RightWrite == 0 {
		return nil, fmt.Errorf("mds: size report through read-only handle %#x: %w", req.Handle, syscall.EBADF)
	}
	var attr proto.Attr
	err = s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		t.mergeWrite(in, req.Size, req.Mtime, h.uid, req.Epoch)
		in.noteWritten(req.WrittenGen, req.Written)
		attr = in.attr()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if req.Sync {
		if err := s.db.Sync(ctx); err != nil {
			return nil, fmt.Errorf("mds: sync metadata of %#x: %w", req.Ino, err)
		}
	}
	return &proto.AttrResp{Attr: attr}, nil
}

// Append reserves req.Len bytes at the end of a file for an O_APPEND write
// through a handle of the caller's session open for writing (EBADF
// otherwise): in one transaction it reads the size, which is the offset
// returned, and raises it by Len, advancing mtime, ctime and the data
// version as a write does. Appends to one file queue on its in-process
// lock rather than fail each other's commits. A zero Len only reports the
// end of file.
func (s *Service) Append(ctx context.Context, req *proto.AppendReq) (*proto.AppendResp, error) {
	h, err := s.open.get(req.Handle, req.Ino)
	if err != nil {
		return nil, err
	}
	switch {
	case h.session != req.Session:
		return nil, fmt.Errorf("mds: append through handle %#x of another session: %w", req.Handle, syscall.EBADF)
	case h.rights&proto.RightWrite == 0:
		return nil, fmt.Errorf("mds: append through read-only handle %#x: %w", req.Handle, syscall.EBADF)
	case req.Len > math.MaxInt64:
		return nil, fmt.Errorf("mds: append of %d bytes to %#x: %w", req.Len, req.Ino, syscall.EFBIG)
	}
	var resp proto.AppendResp
	err = s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpAppend, &resp, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		resp.Offset = in.Size
		if req.Len == 0 {
			return nil
		}
		if in.Size > math.MaxInt64-req.Len {
			return fmt.Errorf("mds: append of %d bytes at %d to %#x: %w", req.Len, in.Size, in.Ino, syscall.EFBIG)
		}
		t.quotaBytes = true // the MDS hands out the bytes itself
		t.mergeWrite(in, in.Size+req.Len, 0, h.uid, in.TruncEpoch)
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// GetCap returns a fresh capability for an open handle, with the file's
// current attributes and layout. It waits for a truncate of the file in
// progress (and finishes one a crash interrupted), so that a client sent
// here by an OSS's ESTALE learns the epoch and size the truncate set.
func (s *Service) GetCap(ctx context.Context, req *proto.GetCapReq) (*proto.GetCapResp, error) {
	h, err := s.open.get(req.Handle, req.Ino)
	if err != nil {
		return nil, err
	}
	if req.Session != 0 && h.session != req.Session {
		return nil, fmt.Errorf("mds: capability for handle %#x of another session: %w", req.Handle, syscall.EBADF)
	}
	// A file frozen by a migration (its old objects fenced) gets its new
	// layout once the migration commits.
	if err := s.waitThawed(ctx, h.ino); err != nil {
		return nil, err
	}
	mu := s.truncMu.of(h.ino)
	mu.Lock()
	defer mu.Unlock()
	if err := s.finishTruncate(ctx, h.ino); err != nil {
		return nil, err
	}
	var resp proto.GetCapResp
	err = s.view(ctx, func(t *mtx) error {
		in, err := t.inode(h.ino)
		if err != nil {
			return err
		}
		if err := checkOpenable(in); err != nil {
			return err
		}
		resp = proto.GetCapResp{Cap: s.capabilityOf(in, h.rights), Attr: in.attr(), Layout: *in.Layout}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// Sync makes every metadata change committed so far durable (fsync of a
// directory, whatever the store's background sync interval).
func (s *Service) Sync(ctx context.Context, _ *proto.SyncReq) error {
	if err := s.db.Sync(ctx); err != nil {
		return fmt.Errorf("mds: sync metadata: %w", err)
	}
	return nil
}
