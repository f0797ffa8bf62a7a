package mds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// rootDefaultTTL is how long the root directory's default layout is
// cached. Reading it inside every create transaction would make creates
// anywhere conflict with every change in the root directory.
const rootDefaultTTL = time.Second

// rootDefaultCache holds the root directory's default layout.
type rootDefaultCache struct {
	mu    sync.Mutex
	spec  layout.Spec
	until time.Time
}

// rootDefault returns the root directory's default layout resolved
// against the filesystem default: what a file in a directory with no
// default of its own gets.
func (s *Service) rootDefault(ctx context.Context) (layout.Spec, error) {
	c := &s.rootDef
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.now()
	if now.Before(c.until) {
		return c.spec, nil
	}
	var spec layout.Spec
	err := s.view(ctx, func(t *mtx) error {
		root, err := t.inodeAttrs(RootIno)
		if err != nil {
			return err
		}
		if root.DirLayout != nil {
			spec = *root.DirLayout
		}
		return nil
	})
	if err != nil {
		return layout.Spec{}, err
	}
	c.spec, c.until = spec.Resolve(s.fs.Default), now.Add(rootDefaultTTL)
	return c.spec, nil
}

// forgetRootDefault drops the cached root default after it changed.
func (s *Service) forgetRootDefault() {
	s.rootDef.mu.Lock()
	s.rootDef.until = time.Time{}
	s.rootDef.mu.Unlock()
}

// instantiate gives a new regular file in dir its layout: the requested
// spec, else the directory's default, else the root's (rootDef), each
// level filling the fields the one above leaves unset.
func (s *Service) instantiate(t *mtx, dir, in *inode, req layout.Spec, rootDef layout.Spec) error {
	def := rootDef
	if dir.DirLayout != nil {
		def = dir.DirLayout.Resolve(rootDef)
	}
	return s.allocate(in, req.Resolve(def), 1)
}

// allocate instantiates a resolved spec on the active OSTs for in, with
// generation gen.
func (s *Service) allocate(in *inode, spec layout.Spec, gen uint32) error {
	lay, next, err := s.alloc.Instantiate(spec, in.Ino, in.NextObjSeq, s.targets.allocTargets(s.now()))
	if errors.Is(err, layout.ErrNoTargets) {
		// OSTs that heartbeat to another MDS show in the store before
		// this one's periodic read: read the table now and try again.
		if lerr := s.targets.load(context.Background(), s); lerr == nil {
			lay, next, err = s.alloc.Instantiate(spec, in.Ino, in.NextObjSeq, s.targets.allocTargets(s.now()))
		}
	}
	if err != nil {
		return layoutErrno(fmt.Errorf("mds: allocate objects for %#x: %w", in.Ino, err))
	}
	lay.Gen = gen
	in.Layout, in.NextObjSeq = &lay, next
	return nil
}

// layoutErrno maps layout errors to errno: no room is ENOSPC, anything
// else a bad request.
func layoutErrno(err error) error {
	switch {
	case errors.Is(err, layout.ErrNoTargets), errors.Is(err, layout.ErrUnknownPool):
		return fmt.Errorf("%w: %w", err, syscall.ENOSPC)
	default:
		return fmt.Errorf("%w: %w", err, syscall.EINVAL)
	}
}

// GetLayout returns a file's layout or a directory's default layout.
func (s *Service) GetLayout(ctx context.Context, req *proto.GetLayoutReq) (*proto.GetLayoutResp, error) {
	var resp proto.GetLayoutResp
	err := s.view(ctx, func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		resp = layoutOf(in)
		if !in.isDir() && in.Layout == nil {
			return fmt.Errorf("mds: %#x has no layout: %w", in.Ino, syscall.ENODATA)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

func layoutOf(in *inode) proto.GetLayoutResp {
	resp := proto.GetLayoutResp{IsDir: in.isDir()}
	switch {
	case in.isDir() && in.DirLayout != nil:
		resp.Spec = *in.DirLayout
	case in.Layout != nil:
		resp.Layout = *in.Layout
	}
	return resp
}

// SetLayout sets or (with an empty spec) removes a directory's default
// layout, or gives a regular file that never held data a new layout: new
// objects, a new generation, the old objects queued for destruction. A
// file with data fails with EEXIST (migrate moves data). The caller needs
// write permission or ownership.
func (s *Service) SetLayout(ctx context.Context, req *proto.SetLayoutReq) (*proto.GetLayoutResp, error) {
	if err := req.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("mds: setstripe %#x: %w: %w", req.Ino, err, syscall.EINVAL)
	}
	var rootDef layout.Spec
	if req.Ino != RootIno {
		var err error
		if rootDef, err = s.rootDefault(ctx); err != nil {
			return nil, err
		}
	}
	var resp proto.GetLayoutResp
	queued := false
	err := s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpSetLayout, &resp, func(t *mtx) error {
		queued = false
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if !isOwner(&req.Cred, in) && !permits(&req.Cred, in, mayWrite) {
			return fmt.Errorf("mds: setstripe %#x by uid %d: %w", in.Ino, req.Cred.Uid, syscall.EACCES)
		}
		if err := t.checkSpecPools(&req.Spec); err != nil {
			return err
		}
		switch {
		case in.isDir():
			in.DirLayout = nil
			if !req.Spec.IsZero() {
				spec := req.Spec
				in.DirLayout = &spec
			}
		case !in.isRegular():
			return fmt.Errorf("mds: setstripe on special file %#x: %w", in.Ino, syscall.EINVAL)
		case in.Size != 0 || in.DataVersion != 0:
			return fmt.Errorf("mds: setstripe %#x: file has data; use migrate: %w", in.Ino, syscall.EEXIST)
		default:
			var old []proto.ObjRef
			gen := uint32(1)
			if in.Layout != nil {
				old, gen = in.objects(), in.Layout.Gen+1
			}
			if err := s.allocate(in, req.Spec.Resolve(rootDef), gen); err != nil {
				return err
			}
			if queued, err = t.queueDestroy(in.Ino, old); err != nil {
				return err
			}
		}
		t.changed(in)
		t.changelog(&req.Cred, proto.ChangelogLayout, in.Ino, 0, "")
		resp = layoutOf(in)
		return nil
	}))
	if err != nil {
		return nil, err
	}
	if req.Ino == RootIno {
		s.forgetRootDefault()
	}
	if queued {
		s.kickDestroy()
	}
	return &resp, nil
}

// placeDir chooses the MDT of a new directory: the one asked for, else
// the parent's, except that top-level directories spread round robin.
func (s *Service) placeDir(ctx context.Context, parent uint64, want int32) (uint32, error) {
	mdts := s.knownMDTs()
	if want >= 0 && !slices.Contains(mdts, uint32(want)) {
		// Another MDS may have registered it since this one started.
		if err := s.targets.load(ctx, s); err != nil {
			return 0, err
		}
		mdts = s.knownMDTs()
	}
	if want >= 0 {
		for _, m := range mdts {
			if m == uint32(want) {
				return m, nil
			}
		}
		return 0, fmt.Errorf("mds: mkdir on MDT %d: no such MDT (have %v): %w", want, mdts, syscall.EINVAL)
	}
	if parent != RootIno || len(mdts) < 2 {
		return inoMDT(parent), nil
	}
	return mdts[s.nextMDT.Add(1)%uint64(len(mdts))], nil
}
