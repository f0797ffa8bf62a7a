package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// hsmScanMax bounds the inode records one policy scan page reads.
const hsmScanMax = 4096

// HsmImport creates a released stub for an object already in an archive
// (Lustre's HSM import, Baidu's bucket link): a regular file of the
// object's size and mtime whose layout has the shape new files in Parent
// get but no objects, archived in ArchiveID under Key, restored on first
// access. A resend of an import that committed gets its first reply.
func (s *Service) HsmImport(ctx context.Context, req *proto.HsmImportReq) (*proto.EntryResp, error) {
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	if req.Key == "" || req.ArchiveID == 0 {
		return nil, fmt.Errorf("mds: hsm import %q: an archive id and key are needed: %w", req.Name, syscall.EINVAL)
	}
	rootDef, err := s.rootDefault(ctx)
	if err != nil {
		return nil, err
	}
	ino, err := s.newIno(ctx, inoMDT(req.Parent))
	if err != nil {
		return nil, err
	}
	var resp proto.EntryResp
	err = s.update(ctx, s.tagged(req.Tag, proto.OpHsmImport, &resp, func(t *mtx) error {
		mode := proto.ModeRegular | req.Mode&modePerm
		in, err := s.newEntry(t, &req.Cred, req.Parent, req.Name, ino, mode, req.Umask, func(dir, in *inode) error {
			def := rootDef
			if dir.DirLayout != nil {
				def = dir.DirLayout.Resolve(rootDef)
			}
			// The shape only: a restore allocates the objects.
			if err := s.allocate(in, layout.Spec{}.Resolve(def), 1); err != nil {
				return err
			}
			rel := in.Layout.ReleasedCopy()
			in.Layout = &rel
			in.Size, in.Mtime = req.Size, req.Mtime
			in.HSM = &hsmState{Flags: proto.HsmExists | proto.HsmArchived | proto.HsmReleased, ArchiveID: req.ArchiveID,
				Key: req.Key, ETag: req.ETag, Imported: true}
			return nil
		})
		if err != nil {
			return err
		}
		resp.Attr = in.attr()
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// HsmScan returns a page of the regular files of one MDT this MDS serves,
// read from their inode records: what HSM policies choose from, without a
// walk of the namespace.
func (s *Service) HsmScan(ctx context.Context, req *proto.HsmScanReq) (*proto.HsmScanResp, error) {
	if !s.owns(req.MDT) {
		return nil, fmt.Errorf("mds: hsm scan of MDT%04x: %w: %w", req.MDT, ErrNotOwner, syscall.EREMOTE)
	}
	limit := req.Limit
	if limit <= 0 || limit > hsmScanMax {
		limit = hsmScanMax
	}
	var resp proto.HsmScanResp
	err := s.view(ctx, func(t *mtx) error {
		resp = proto.HsmScanResp{Next: req.After}
		start, end := t.k.mdtInodeRange(req.MDT, req.After)
		n := 0
		var derr error
		err := t.kv.Scan(ctx, start, end, limit, func(k, v []byte) bool {
			n++
			var ino uint64
			if ino, derr = t.k.inodeIno(k); derr != nil {
				return false
			}
			resp.Next = ino
			in := &inode{}
			if derr = decode(v, in); derr != nil {
				return false
			}
			if !in.isRegular() || in.Nlink == 0 {
				return true
			}
			f := proto.HsmFile{Ino: ino, Size: in.Size, Atime: in.Atime, Mtime: in.Mtime, Flags: in.hsmFlags()}
			if in.HSM != nil {
				f.ArchiveID = in.HSM.ArchiveID
			}
			if in.Layout != nil {
				for _, o := range layoutObjects(in.Layout) {
					f.OSTs = append(f.OSTs, o.OST)
				}
			}
			resp.Files = append(resp.Files, f)
			return true
		})
		if err = firstErr(err, derr); err != nil {
			return err
		}
		resp.Done = n < limit
		for i := range resp.Files {
			act, err := t.hsmAction(resp.Files[i].Ino)
			if err != nil {
				return err
			}
			resp.Files[i].Busy = act != nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mds: hsm scan of MDT%04x: %w", req.MDT, err)
	}
	return &resp, nil
}
