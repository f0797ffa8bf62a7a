package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// Routing. A client sends each request to the MDS that owns the MDT of the
// inode the request is for (a directory for entry operations), learnt from
// the MDT table. An MDS that does not own that MDT (it moved: a takeover or
// a hand-off) answers EREMOTE, and the client learns the table again.

// routeIno returns the inode whose MDT must serve req, if req has one.
func routeIno(req any) (uint64, bool) {
	switch r := req.(type) {
	case *proto.LookupReq:
		return r.Parent, true
	case *proto.GetattrReq:
		return r.Ino, true
	case *proto.SetattrReq:
		return r.Ino, true
	case *proto.CreateReq:
		return r.Parent, true
	case *proto.MkdirReq:
		return r.Parent, true
	case *proto.MknodReq:
		return r.Parent, true
	case *proto.SymlinkReq:
		return r.Parent, true
	case *proto.ReadlinkReq:
		return r.Ino, true
	case *proto.LinkReq:
		return r.NewParent, true
	case *proto.UnlinkReq:
		return r.Parent, true
	case *proto.RmdirReq:
		return r.Parent, true
	case *proto.RenameReq:
		return r.Parent, true
	case *proto.ReaddirReq:
		return r.Ino, true
	case *proto.AccessReq:
		return r.Ino, true
	case *proto.OpenReq:
		return r.Ino, true
	case *proto.CloseReq:
		return r.Ino, true
	case *proto.SetSizeReq:
		return r.Ino, true
	case *proto.GetCapReq:
		return r.Ino, true
	case *proto.AppendReq:
		return r.Ino, true
	case *proto.GetxattrReq:
		return r.Ino, true
	case *proto.SetxattrReq:
		return r.Ino, true
	case *proto.ListxattrReq:
		return r.Ino, true
	case *proto.RemovexattrReq:
		return r.Ino, true
	case *proto.GetLayoutReq:
		return r.Ino, true
	case *proto.SetLayoutReq:
		return r.Ino, true
	case *proto.SetConsistencyReq:
		return r.Ino, true
	case *proto.LockReq:
		return r.Ino, true
	case *proto.UnlockReq:
		return r.Ino, r.Ino != 0
	case *proto.MigrateReq:
		return r.Ino, true
	case *proto.ChangelogReq:
		return makeIno(r.MDT, 0), true
	case *proto.ProjectReq:
		return r.Ino, true
	case *proto.QuotaGrantReq:
		return r.Ino, true
	case *proto.ChangelogUserReq:
		return makeIno(r.MDT, 0), r.Op == proto.ChangelogClear
	case *proto.FindReq:
		if len(r.Stack) > 0 {
			return r.Stack[len(r.Stack)-1].Dir, true
		}
		return r.Start, true
	case *proto.HsmStateReq:
		return r.Ino, true
	case *proto.HsmRequestReq:
		return r.Ino, true
	case *proto.HsmImportReq:
		return r.Parent, true
	case *proto.HsmStartReq:
		return r.Ino, true
	case *proto.HsmProgressReq:
		return r.Ino, true
	case *proto.HsmCompleteReq:
		return r.Ino, true
	case *proto.HsmRegisterReq, *proto.HsmClaimReq:
		// The coordinator: the MDS that owns MDT0.
		return RootIno, true
	}
	return 0, false
}

// sessionOf returns the session a request is made in, if it names one.
func sessionOf(req any) uint64 {
	switch r := req.(type) {
	case *proto.CreateReq:
		return r.Session
	case *proto.OpenReq:
		return r.Session
	case *proto.CloseReq:
		return r.Session
	case *proto.AppendReq:
		return r.Session
	case *proto.GetCapReq:
		return r.Session
	case *proto.LockReq:
		return r.Session
	case *proto.UnlockReq:
		return r.Session
	case *proto.RenewReq:
		return r.Session
	case *proto.LeaseWaitReq:
		return r.Session
	}
	return 0
}

// admit checks that this MDS serves the MDT req is for (EREMOTE if not)
// and that it knows req's session, loading it from the store if another
// MDS (or an earlier run of this one) made it.
func (s *Service) admit(ctx context.Context, req any) error {
	if ino, ok := routeIno(req); ok && !s.owns(inoMDT(ino)) {
		return fmt.Errorf("mds: MDT%04x is not served here: %w: %w", inoMDT(ino), ErrNotOwner, syscall.EREMOTE)
	}
	if id := sessionOf(req); id != 0 && !s.open.known(id) {
		if err := s.resumeSession(ctx, id, ""); err != nil {
			return err
		}
	}
	return nil
}
