package mds

import (
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// TestCloseMany: a batch of deferred read-only releases closes every
// handle it names (an unlinked file's last one makes it an orphan no more),
// skips handles the MDS does not know, and refuses write handles, whose
// closes carry sizes.
func TestCloseMany(t *testing.T) {
	e := newEnv(t, openEmbedded)
	f := e.create(root, RootIno, "f", 0o644)
	var closes []proto.CloseReq
	for range 3 {
		r, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: f.Ino, Flags: syscall.O_RDONLY})
		e.must(err)
		closes = append(closes, proto.CloseReq{Session: e.session, Ino: f.Ino, Handle: r.Handle})
	}
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}))
	if !e.isOrphan(f.Ino) {
		t.Fatal("a file open for reading lost its inode at unlink")
	}
	closes = append(closes, proto.CloseReq{Session: e.session, Ino: f.Ino, Handle: 0xdead}) // unknown: skipped
	e.must(e.s.CloseMany(e.ctx, &proto.CloseManyReq{Closes: closes}))
	if e.isOrphan(f.Ino) {
		t.Fatal("the batched releases left the unlinked file open")
	}
	w := e.createOpen(root, RootIno, "w", 0o644)
	err := e.s.CloseMany(e.ctx, &proto.CloseManyReq{Closes: []proto.CloseReq{{Session: e.session, Ino: w.Attr.Ino, Handle: w.Handle}}})
	wantErrno(t, err, syscall.EINVAL)
}
