package mds

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Truncates. A size change must cut the file's objects and commit the new
// size as one act, also across a crash, and writers that have not heard of
// it must not undo it. So a truncate that cuts objects
//
//  1. records its intent (truncateRecord: size, epoch E+1) in the store,
//  2. punches every object to the size, each object remembering epoch E+1,
//  3. commits the size and the inode's new TruncEpoch, deleting the record.
//
// An MDS that finds a record (after a crash, at start or when the inode is
// next truncated or asked for a capability) finishes it: punches are
// idempotent. Writes and punches carrying an older epoch get ESTALE from
// the OSS, so a client's write-behind from before the truncate cannot bring
// bytes back before the client has learnt the new epoch and size; sizes
// reported from an older epoch are not merged (mergeWrite), so they cannot
// bring the old size back either. Until step 3 commits, readers see the old
// size over objects already cut: zeros, never stale bytes past the new end.

// punchParallel bounds the object punches of one truncate in flight.
const punchParallel = 16

// truncate applies a setattr with SetSize, holding the inode's truncMu.
func (s *Service) truncate(ctx context.Context, req *proto.SetattrReq, viaHandle bool) (*inode, error) {
	if err := s.finishTruncate(ctx, req.Ino); err != nil {
		return nil, err
	}
	if released, in, err := s.hsmTruncate(ctx, req, viaHandle); released {
		return in, err
	}
	// Check before touching any object, then punch, then commit
	// (checking again: the inode may have changed meanwhile).
	var lay *layout.Layout
	var punch bool
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		// A file never written and never reported holds no data
		// unless a writer has it open, the caller included: its
		// client flushed what it wrote before asking, and the size
		// of those writes may not be reported yet.
		lay = in.Layout
		punch = in.Size != 0 || in.DataVersion != 0 || s.open.otherWriters(in.Ino, 0) > 0
		_, err = s.applySetattr(t, req, viaHandle)
		return err
	})
	if err != nil {
		return nil, err
	}
	var rec truncateRecord
	if punch {
		err := s.update(ctx, func(t *mtx) error {
			in, err := t.inodeAttrs(req.Ino)
			if err != nil {
				return err
			}
			rec = truncateRecord{Size: req.Size, Epoch: in.TruncEpoch + 1}
			return t.setRecord(t.k.truncate(req.Ino), &rec)
		})
		if err != nil {
			return nil, fmt.Errorf("mds: record truncate of %#x: %w", req.Ino, err)
		}
		// The punches are durable on the OSTs when they return: the
		// record must be too, or a crash could leave cut objects under
		// the old size with nothing left to finish the truncate.
		if err := s.db.Sync(ctx); err != nil {
			return nil, fmt.Errorf("mds: sync truncate record of %#x: %w", req.Ino, err)
		}
		if err := s.punch(ctx, req.Ino, lay, int64(req.Size), rec.Epoch); err != nil {
			return nil, err
		}
	}
	var out *inode
	err = s.update(ctx, func(t *mtx) error {
		in, err := s.applySetattr(t, req, viaHandle)
		if err != nil {
			return err
		}
		if punch {
			in.TruncEpoch = max(in.TruncEpoch, rec.Epoch)
			if err := t.kv.Delete(t.k.truncate(req.Ino)); err != nil {
				return err
			}
		}
		out = in
		t.changelog(&req.Cred, proto.ChangelogTrunc, in.Ino, 0, "")
		t.changelogFlags(req.Valid)
		return t.remember(req.Tag, proto.OpSetattr, &proto.AttrResp{Attr: in.attr()})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// finishTruncate completes the truncate of ino a crash interrupted, if any:
// it punches the objects again and commits the size. Call with the inode's
// truncMu held.
func (s *Service) finishTruncate(ctx context.Context, ino uint64) error {
	var rec truncateRecord
	var lay *layout.Layout
	var pending, gone bool
	err := s.view(ctx, func(t *mtx) error {
		ok, err := t.getRecord(t.k.truncate(ino), &rec)
		if err != nil || !ok {
			return err
		}
		pending = true
		in, err := t.inode(ino)
		if isErrno(err, syscall.ENOENT) {
			gone = true
			return nil
		}
		if err != nil {
			return err
		}
		lay = in.Layout
		return nil
	})
	if err != nil || !pending {
		return err
	}
	if !gone {
		if err := s.punch(ctx, ino, lay, int64(rec.Size), rec.Epoch); err != nil {
			return err
		}
	}
	err = s.update(ctx, func(t *mtx) error {
		var cur truncateRecord
		if ok, err := t.getRecord(t.k.truncate(ino), &cur); err != nil || !ok || cur != rec {
			return err
		}
		if err := t.kv.Delete(t.k.truncate(ino)); err != nil {
			return err
		}
		in, err := t.inode(ino)
		if isErrno(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		in.Size = rec.Size
		in.TruncEpoch = max(in.TruncEpoch, rec.Epoch)
		in.Mtime = t.now
		in.DataVersion++
		in.hsmDataChanged()
		t.changed(in)
		return nil
	})
	if err != nil {
		return fmt.Errorf("mds: finish truncate of %#x: %w", ino, err)
	}
	s.log.Info("mds: finished an interrupted truncate", "ino", fmt.Sprintf("%#x", ino), "size", rec.Size)
	return nil
}

// recoverTruncates finishes every interrupted truncate of the served MDTs.
// It returns how many it finished and the first error; a truncate that fails
// (an OSS still down) is left for the next pass or the inode's next use.
func (s *Service) recoverTruncates(ctx context.Context) (int, error) {
	var inos []uint64
	err := s.view(ctx, func(t *mtx) error {
		start, end := t.k.truncateRange()
		var kerr error
		err := t.kv.Scan(ctx, start, end, 0, func(k, _ []byte) bool {
			var ino uint64
			if ino, kerr = t.k.truncateIno(k); kerr != nil {
				return false
			}
			inos = append(inos, ino)
			return true
		})
		return firstErr(err, kerr)
	})
	if err != nil {
		return 0, fmt.Errorf("mds: read interrupted truncates: %w", err)
	}
	n := 0
	var first error
	for _, ino := range slices.DeleteFunc(inos, func(ino uint64) bool { return !s.serves(ino) }) {
		mu := s.truncMu.of(ino)
		mu.Lock()
		err := s.finishTruncate(ctx, ino)
		mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
		if err == nil {
			n++
		}
	}
	return n, first
}

// punch truncates every object of a layout to the size a file of size
// implies, in parallel, with capabilities naming truncate epoch epoch, and
// fails if any punch fails.
func (s *Service) punch(ctx context.Context, ino uint64, lay *layout.Layout, size int64, epoch uint64) error {
	if lay == nil {
		return nil
	}
	points := lay.TruncatePoints(size, nil)
	capab := s.capability(ino, proto.RightWrite, lay.Gen, epoch)
	errs := make([]error, len(points))
	sem := make(chan struct{}, punchParallel)
	var wg sync.WaitGroup
	for i, p := range points {
		addr, err := s.targets.addr(p.Object.OST)
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			obj := proto.ObjRef{OST: p.Object.OST, ID: p.Object.ID, Stripe: uint32(p.Stripe)}
			if err := s.io.Punch(ctx, addr, capab, obj, p.Size); err != nil {
				errs[i] = fmt.Errorf("mds: truncate %#x: punch %v on OST %d to %d: %w", ino, p.Object.ID, p.Object.OST, p.Size, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
