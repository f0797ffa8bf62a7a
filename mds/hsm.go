package mds

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// HSM (Lustre's hierarchical storage management). A file's HSM flags live in
// its inode (hsmState); the action queued or running for it in the store
// under P 'A' ino (hsmActionRecord), one per file, so the coordinator's
// queue is a range of the store that outlives every MDS. The rules that
// span transactions each name a key both sides write:
//
//   - Queuing an action and finishing one write the file's inode and its
//     action record, so two readers asking for a restore at once conflict
//     and the second finds the first's action: one RESTORE.
//   - A write-open of a file under HSM writes its inode (the data version,
//     and the dirty flag once archived), and so does a release, so a
//     release never commits over an open for writing it did not see; an
//     open already registered is seen in the open table, which the release
//     checks under the inode's gate (the same gate an open holds while it
//     registers and commits).
//   - An archive records the data version it copies and the file is clean
//     only if the version is the same when it completes and no writer holds
//     the file open: writers bypass the MDS, so a handle open for writing
//     may hold data the copy lacks.

// hsmState is a file's HSM state (inode.HSM).
type hsmState struct {
	Flags     uint32 `msgpack:"f"`
	ArchiveID uint32 `msgpack:"a,omitempty"`
	// Version is the data version the archive copy holds.
	Version uint64 `msgpack:"v,omitempty"`
	// Checksum identifies the archive copy's content (hsm/ verifies it
	// at restore).
	Checksum string `msgpack:"c,omitempty"`
	// Key names the archive object when it is not the file's default
	// (an imported object), and ETag what that object was at import.
	Key      string `msgpack:"k,omitempty"`
	ETag     string `msgpack:"t,omitempty"`
	Imported bool   `msgpack:"i,omitempty"`
	// Seq counts the actions queued for the file.
	Seq uint64 `msgpack:"s,omitempty"`
	// Last is the last action that finished.
	Last *proto.HsmAction `msgpack:"l,omitempty"`
}

// hsmActionRecord is the action queued or running for a file (P 'A').
type hsmActionRecord struct {
	Seq       uint64 `msgpack:"q"`
	Kind      uint8  `msgpack:"k"`
	Status    uint8  `msgpack:"s"`
	ArchiveID uint32 `msgpack:"a"`
	Attempt   uint32 `msgpack:"t,omitempty"`
	Agent     uint64 `msgpack:"g,omitempty"`
	Bytes     uint64 `msgpack:"b,omitempty"`
	// Beat advances with every progress report: the coordinator judges
	// an agent dead when it stops moving on its own clock.
	Beat     uint64 `msgpack:"B,omitempty"`
	Queued   int64  `msgpack:"Q"`
	Canceled bool   `msgpack:"c,omitempty"`
	// DataVersion is what an archive copies (set at its start).
	DataVersion uint64 `msgpack:"v,omitempty"`
	// Layout is the layout a restore fills (allocated at its start).
	Layout *layout.Layout `msgpack:"l,omitempty"`
}

// hsmAgentRecord is a registered copytool (P 'G').
type hsmAgentRecord struct {
	Name       string   `msgpack:"n"`
	Archives   []uint32 `msgpack:"a"`
	Registered int64    `msgpack:"r"`
}

// hsmDefaultArchive is the archive id of requests that name none.
const hsmDefaultArchive = 1

// hsmFlags returns the file's HSM flags.
func (i *inode) hsmFlags() uint32 {
	if i.HSM == nil {
		return 0
	}
	return i.HSM.Flags
}

// released reports whether the file's data is released to the archive.
func (i *inode) released() bool { return i.hsmFlags()&proto.HsmReleased != 0 }

// hsm returns the file's HSM state, creating an empty one.
func (i *inode) hsm() *hsmState {
	if i.HSM == nil {
		i.HSM = &hsmState{}
	}
	return i.HSM
}

// hsmDataChanged records that the file's data changed (a write reported, a
// truncate): an archived file becomes dirty.
func (i *inode) hsmDataChanged() {
	if i.hsmFlags()&proto.HsmArchived != 0 {
		i.HSM.Flags |= proto.HsmDirty
	}
}

// hsmWriteOpen is what a write-open does to a file under HSM, in the open's
// transaction: its data may change from now on, and the MDS sees no
// individual write, so the data version moves and an archived file is
// dirty. It reports whether the inode changed (and must be written).
func (i *inode) hsmWriteOpen() bool {
	if i.hsmFlags()&proto.HsmExists == 0 {
		return false
	}
	i.DataVersion++
	i.hsmDataChanged()
	return true
}

// hsmStateOf builds the wire state of in with its action record, if any.
func hsmStateOf(in *inode, act *hsmActionRecord) proto.HsmState {
	st := proto.HsmState{Ino: in.Ino, DataVersion: in.DataVersion, Action: proto.HsmAction{Ino: in.Ino, Kind: proto.HsmNone,
		Status: proto.HsmDone}}
	if h := in.HSM; h != nil {
		st.Flags, st.ArchiveID, st.Version = h.Flags, h.ArchiveID, h.Version
		if h.Last != nil {
			st.Action = *h.Last
		}
	}
	if act != nil {
		st.Action = act.wire(in.Ino)
	}
	return st
}

// wire converts an action record for the wire.
func (a *hsmActionRecord) wire(ino uint64) proto.HsmAction {
	return proto.HsmAction{Ino: ino, Seq: a.Seq, Kind: a.Kind, Status: a.Status, ArchiveID: a.ArchiveID, Bytes: a.Bytes,
		Agent: a.Agent, Queued: a.Queued}
}

// hsmAction reads the action record of ino, or nil.
func (t *mtx) hsmAction(ino uint64) (*hsmActionRecord, error) {
	var a hsmActionRecord
	ok, err := t.getRecord(t.k.hsmAction(ino), &a)
	if err != nil || !ok {
		return nil, err
	}
	return &a, nil
}

// HsmState returns a file's HSM state. It never triggers a restore.
func (s *Service) HsmState(ctx context.Context, req *proto.HsmStateReq) (*proto.HsmStateResp, error) {
	var resp proto.HsmStateResp
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		act, err := t.hsmAction(req.Ino)
		if err != nil {
			return err
		}
		resp.State = hsmStateOf(in, act)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// HsmRequest carries out a request of `strata hsm` (or a reader's need for
// a restore): see proto.HsmRequestReq.
func (s *Service) HsmRequest(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	var resp *proto.HsmRequestResp
	var err error
	switch req.Action {
	case proto.HsmRelease:
		resp, err = s.hsmRelease(ctx, req)
	case proto.HsmSetFlags:
		resp, err = s.hsmSetFlags(ctx, req)
	case proto.HsmCancel:
		resp, err = s.hsmCancel(ctx, req)
	case proto.HsmArchive, proto.HsmRestore, proto.HsmRemove:
		resp, err = s.hsmQueue(ctx, req)
	case proto.HsmWait:
		resp = &proto.HsmRequestResp{Seq: req.Seq}
	case proto.HsmAccess:
		resp, err = s.hsmAccess(ctx, req)
	default:
		return nil, fmt.Errorf("mds: hsm request %d on %#x: %w", req.Action, req.Ino, syscall.EINVAL)
	}
	if err != nil || !req.Wait || resp.Done || resp.Seq == 0 {
		return resp, err
	}
	return s.hsmWait(ctx, req.Ino, resp.Seq)
}

// hsmMayRequest checks that c may ask for HSM actions on in: its owner or
// root, as Lustre asks.
func hsmMayRequest(c *proto.Cred, in *inode, what string) error {
	if !in.isRegular() {
		return fmt.Errorf("mds: hsm %s of %#x: not a regular file: %w", what, in.Ino, syscall.EINVAL)
	}
	if !isOwner(c, in) {
		return fmt.Errorf("mds: hsm %s of %#x by uid %d: %w", what, in.Ino, c.Uid, syscall.EPERM)
	}
	return nil
}

// hsmQueue queues an archive, restore or remove for an agent, unless there
// is nothing to do or the same action is queued already (it answers with
// that one).
func (s *Service) hsmQueue(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	what := proto.HsmActionName(req.Action)
	var resp proto.HsmRequestResp
	queued := false
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		resp, queued = proto.HsmRequestResp{}, false
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		// Any reader may bring the data back (transparent restore).
		reader := req.Action == proto.HsmRestore && in.isRegular() && permits(&req.Cred, in, mayRead)
		if err := hsmMayRequest(&req.Cred, in, what); err != nil && !reader {
			return err
		}
		act, err := t.hsmAction(in.Ino)
		if err != nil {
			return err
		}
		resp.State = hsmStateOf(in, act)
		if act != nil {
			if act.Kind != req.Action {
				return fmt.Errorf("mds: hsm %s of %#x: a %s is %s: %w", what, in.Ino, proto.HsmActionName(act.Kind),
					proto.HsmStatusName(act.Status), syscall.EBUSY)
			}
			resp.Seq = act.Seq
			return nil
		}
		flags := in.hsmFlags()
		archive := req.ArchiveID
		if archive == 0 {
			archive = hsmDefaultArchive
			if in.HSM != nil && in.HSM.ArchiveID != 0 {
				archive = in.HSM.ArchiveID
			}
		}
		switch req.Action {
		case proto.HsmArchive:
			switch {
			case flags&proto.HsmNoArchive != 0:
				return fmt.Errorf("mds: hsm archive of %#x: flagged never_archive: %w", in.Ino, syscall.EPERM)
			case flags&proto.HsmReleased != 0:
				resp.Done = true // its only copy is the archive's
				return nil
			case flags&proto.HsmArchived != 0 && flags&proto.HsmDirty == 0 && in.HSM.Version == in.DataVersion:
				resp.Done = true // the archive copy is current
				return nil
			case flags&proto.HsmArchived != 0 && in.HSM.ArchiveID != archive:
				return fmt.Errorf("mds: hsm archive of %#x to archive %d: archived in %d: %w", in.Ino, archive,
					in.HSM.ArchiveID, syscall.EINVAL)
			}
		case proto.HsmRestore:
			if flags&proto.HsmReleased == 0 {
				resp.Done = true
				return nil
			}
			archive = in.HSM.ArchiveID
		case proto.HsmRemove:
			switch {
			case flags&proto.HsmArchived == 0:
				resp.Done = true
				return nil
			case flags&proto.HsmReleased != 0:
				return fmt.Errorf("mds: hsm remove of %#x: released, its data is only in the archive: %w", in.Ino, syscall.EBUSY)
			case in.HSM.Imported:
				// An imported object is the source's, never deleted:
				// the file only forgets it.
				hsmForget(in)
				t.changed(in)
				resp.State, resp.Done = hsmStateOf(in, nil), true
				return nil
			}
			archive = in.HSM.ArchiveID
		}
		h := in.hsm()
		h.Flags |= proto.HsmExists
		if h.ArchiveID == 0 {
			h.ArchiveID = archive
		}
		h.Seq++
		act = &hsmActionRecord{Seq: h.Seq, Kind: req.Action, Status: proto.HsmWaiting, ArchiveID: archive, Queued: t.now}
		if err := t.setRecord(t.k.hsmAction(in.Ino), act); err != nil {
			return err
		}
		t.put(in)
		resp.State, resp.Seq, queued = hsmStateOf(in, act), act.Seq, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if queued {
		s.hsm.kickAgents()
	}
	return &resp, nil
}

// hsmAccess records a read-open of a file coarsely: its atime moves to now
// if older than proto.HsmAccessGrain, so opens write the inode at most that
// often.
func (s *Service) hsmAccess(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if !in.isRegular() || !permits(&req.Cred, in, mayRead) {
			return fmt.Errorf("mds: access of %#x by uid %d: %w", in.Ino, req.Cred.Uid, syscall.EACCES)
		}
		if t.now-in.Atime > proto.HsmAccessGrain*int64(time.Second) {
			in.Atime = t.now
			t.put(in)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &proto.HsmRequestResp{Done: true}, nil
}

// hsmForget drops a file's archive copy from its state (after a remove).
func hsmForget(in *inode) {
	h := in.hsm()
	h.Flags &^= proto.HsmArchived | proto.HsmDirty | proto.HsmExists | proto.HsmLost
	h.Version, h.Checksum, h.Key, h.ETag, h.Imported = 0, "", "", "", false
}

// hsmCancel cancels the action queued for a file: a waiting one goes at
// once, a running one is told to stop at its agent's next progress report.
func (s *Service) hsmCancel(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	var resp proto.HsmRequestResp
	var freed []proto.ObjRef
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		resp, freed = proto.HsmRequestResp{}, nil
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := hsmMayRequest(&req.Cred, in, "cancel"); err != nil {
			return err
		}
		act, err := t.hsmAction(in.Ino)
		if err != nil || act == nil {
			resp.State, resp.Done = hsmStateOf(in, nil), true
			return err
		}
		if act.Status == proto.HsmRunning {
			act.Canceled = true
			resp.State, resp.Seq = hsmStateOf(in, act), act.Seq
			return t.setRecord(t.k.hsmAction(in.Ino), act)
		}
		if act.Layout != nil {
			freed = layoutObjects(act.Layout)
		}
		if err := t.finishAction(in, act, proto.HsmFailed, "canceled"); err != nil {
			return err
		}
		resp.State, resp.Done = hsmStateOf(in, nil), true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(freed) > 0 {
		s.kickDestroy()
	}
	s.hsm.finished(req.Ino)
	return &resp, nil
}

// finishAction ends act on in: the record goes, the inode keeps the
// outcome, and a restore's unused layout is queued for destruction.
func (t *mtx) finishAction(in *inode, act *hsmActionRecord, status uint8, why string) error {
	if err := t.kv.Delete(t.k.hsmAction(in.Ino)); err != nil {
		return err
	}
	last := act.wire(in.Ino)
	last.Status, last.Error = status, why
	in.hsm().Last = &last
	t.put(in)
	t.changelog(&proto.Cred{}, proto.ChangelogHsm, in.Ino, 0, "")
	if act.Layout != nil && status != proto.HsmDone {
		if _, err := t.queueDestroy(in.Ino, layoutObjects(act.Layout)); err != nil {
			return err
		}
	}
	return nil
}

// hsmSetFlags sets and clears the flags `hsm set` and `hsm clear` may
// change; released is the MDS's own, and lost, archived and exists need
// root, as in Lustre.
func (s *Service) hsmSetFlags(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	if (req.Set|req.Clear)&^proto.HsmUserFlags != 0 {
		return nil, fmt.Errorf("mds: hsm set %#x clear %#x on %#x: %w", req.Set, req.Clear, req.Ino, syscall.EINVAL)
	}
	adminOnly := proto.HsmLost | proto.HsmArchived | proto.HsmExists | proto.HsmDirty
	if (req.Set|req.Clear)&adminOnly != 0 && req.Cred.Uid != 0 {
		return nil, fmt.Errorf("mds: hsm set %#x clear %#x on %#x by uid %d: %w", req.Set, req.Clear, req.Ino, req.Cred.Uid, syscall.EPERM)
	}
	var resp proto.HsmRequestResp
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := hsmMayRequest(&req.Cred, in, "set"); err != nil {
			return err
		}
		h := in.hsm()
		h.Flags = h.Flags&^req.Clear | req.Set
		if h.Flags&proto.HsmReleased != 0 && h.Flags&proto.HsmArchived == 0 {
			return fmt.Errorf("mds: hsm clear archived on released %#x: %w", in.Ino, syscall.EINVAL)
		}
		t.changed(in)
		act, err := t.hsmAction(in.Ino)
		resp = proto.HsmRequestResp{State: hsmStateOf(in, act), Done: true}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// hsmRelease frees the OST objects of an archived, clean file that no
// client holds open for writing, keeping its metadata, size and times; the
// objects are destroyed before it returns, so the space is back when it
// does. Holders of the old layout get ESTALE from the OSTs from then on
// and find the file released.
func (s *Service) hsmRelease(ctx context.Context, req *proto.HsmRequestReq) (*proto.HsmRequestResp, error) {
	gate := s.gates.of(req.Ino)
	gate.Lock()
	defer gate.Unlock()
	if n := s.open.otherWriters(req.Ino, 0); n > 0 {
		return nil, fmt.Errorf("mds: hsm release of %#x: open for writing by %d handle(s): %w", req.Ino, n, syscall.EBUSY)
	}
	var resp proto.HsmRequestResp
	var old []proto.ObjRef
	var key []byte
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		resp, old, key = proto.HsmRequestResp{}, nil, nil
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if err := hsmMayRequest(&req.Cred, in, "release"); err != nil {
			return err
		}
		flags := in.hsmFlags()
		act, err := t.hsmAction(in.Ino)
		if err != nil {
			return err
		}
		switch {
		case flags&proto.HsmReleased != 0:
			resp.State, resp.Done = hsmStateOf(in, act), true
			return nil
		case flags&proto.HsmArchived == 0:
			return fmt.Errorf("mds: hsm release of %#x: not archived: %w", in.Ino, syscall.EPERM)
		case flags&proto.HsmNoRelease != 0:
			return fmt.Errorf("mds: hsm release of %#x: flagged never_release: %w", in.Ino, syscall.EPERM)
		case flags&(proto.HsmDirty|proto.HsmLost) != 0 || in.HSM.Version != in.DataVersion:
			return fmt.Errorf("mds: hsm release of %#x: changed since it was archived (dirty): %w", in.Ino, syscall.EBUSY)
		case act != nil:
			return fmt.Errorf("mds: hsm release of %#x: a %s is %s: %w", in.Ino, proto.HsmActionName(act.Kind),
				proto.HsmStatusName(act.Status), syscall.EBUSY)
		case in.Layout == nil:
			return fmt.Errorf("mds: hsm release of %#x: no layout: %w", in.Ino, syscall.EINVAL)
		}
		old = in.objects()
		rel := in.Layout.ReleasedCopy()
		in.Layout, in.Written = &rel, nil
		in.HSM.Flags |= proto.HsmReleased
		t.changed(in)
		t.changelog(&req.Cred, proto.ChangelogHsm, in.Ino, 0, "")
		if len(old) > 0 {
			seq := old[0].ID.Seq
			for _, o := range old[1:] {
				seq = min(seq, o.ID.Seq)
			}
			key = t.k.destroy(in.Ino, seq)
			if _, err := t.queueDestroy(in.Ino, old); err != nil {
				return err
			}
		}
		resp.State, resp.Done = hsmStateOf(in, nil), true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		// Destroy now rather than at the worker's next pass: release is
		// synchronous, and df shows the space back when it returns.
		left := s.destroyObjects(ctx, req.Ino, old)
		q := queuedDestroy{key: key, ino: req.Ino, rec: destroyRecord{Objs: old, Queued: s.now().UnixNano()}}
		if len(left) < len(old) {
			if err := s.settleDestroys(ctx, []settledDestroy{{q: q, remaining: left}}); err != nil {
				s.log.Warn("mds: hsm release: settle destroy queue", "ino", fmt.Sprintf("%#x", req.Ino), "err", err)
			}
		}
		if len(left) > 0 {
			s.kickDestroy()
		}
	}
	return &resp, nil
}

// hsmWait holds a request until the action seq of ino finishes or a wait
// slice passes (EAGAIN: the client asks again).
func (s *Service) hsmWait(ctx context.Context, ino, seq uint64) (*proto.HsmRequestResp, error) {
	deadline := time.NewTimer(proto.HsmWaitSlice * time.Millisecond)
	defer deadline.Stop()
	for {
		ch := s.hsm.waitCh(ino)
		var resp proto.HsmRequestResp
		err := s.view(ctx, func(t *mtx) error {
			in, err := t.inodeAttrs(ino)
			if err != nil {
				return err
			}
			act, err := t.hsmAction(ino)
			if err != nil {
				return err
			}
			resp = proto.HsmRequestResp{State: hsmStateOf(in, act), Seq: seq}
			resp.Done = act == nil || act.Seq != seq
			return nil
		})
		if err != nil || resp.Done {
			return &resp, err
		}
		select {
		case <-ch:
		case <-deadline.C:
			return nil, fmt.Errorf("mds: hsm action %d on %#x still running: %w", seq, ino, syscall.EAGAIN)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// hsmTruncate handles a size change of a released file, holding truncMu:
// to zero it needs no data (a new empty layout of the file's shape, and
// the archive copy is stale); to any other size the data must come back
// first (ENODATA tells the client to restore and try again). It reports
// whether the file was released.
func (s *Service) hsmTruncate(ctx context.Context, req *proto.SetattrReq, viaHandle bool) (bool, *inode, error) {
	released := false
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		released = in.released()
		return nil
	})
	if err != nil || !released {
		return false, nil, err
	}
	if req.Size != 0 {
		return true, nil, fmt.Errorf("mds: truncate %#x to %d: released, restore first: %w", req.Ino, req.Size, syscall.ENODATA)
	}
	var out *inode
	err = s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := s.applySetattr(t, req, viaHandle)
		if err != nil {
			return err
		}
		if in.released() {
			if err := s.allocate(in, in.Layout.Spec(), in.Layout.Gen+1); err != nil {
				return err
			}
			in.HSM.Flags = in.HSM.Flags&^proto.HsmReleased | proto.HsmDirty
			in.Written = nil
		}
		out = in
		return t.remember(req.Tag, proto.OpSetattr, &proto.AttrResp{Attr: in.attr()})
	})
	if err != nil {
		return true, nil, err
	}
	return true, out, nil
}
