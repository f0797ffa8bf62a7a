package mds

import (
	"testing"

	"github.com/stratafs/strata/proto"
)

// TestHsmFsckQueue: an archive queued for a file that is then removed is
// found and dropped.
func TestHsmFsckQueue(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		ino, _ := e.writeFile(RootIno, "f", 1, 0)
		if _, err := e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: root, Ino: ino, Action: proto.HsmArchive}); err != nil {
			t.Fatal(err)
		}
		e.mustClean()
		if err := e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}); err != nil {
			t.Fatal(err)
		}
		f := e.checkSeeded(fsckHsmQueue)
		if f.Ino != ino {
			t.Fatalf("finding %+v, want inode %#x", f, ino)
		}
	})
}
