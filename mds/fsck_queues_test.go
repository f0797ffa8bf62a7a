package mds

import (
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// TestFsckOrphanList seeds orphan-list entries that are wrong: one of an
// inode that does not exist, one of a file that has a link.
func TestFsckOrphanList(t *testing.T) {
	for _, tc := range []struct {
		name string
		ino  func(f1 uint64) uint64
	}{
		{"missing inode", func(uint64) uint64 { return makeIno(0, 4444) }},
		{"linked inode", func(f1 uint64) uint64 { return f1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onEngines(t, func(t *testing.T, e *fsckEnv) {
				_, _, f1 := e.populate()
				ino := tc.ino(f1)
				e.corrupt(func(t *mtx) error { return t.setRecord(t.k.orphan(ino), &orphanRecord{Since: 1}) })
				f := e.checkSeeded(fsckOrphanList)
				if f.Ino != ino || e.isOrphan(ino) {
					t.Errorf("finding %+v; still on the orphan list: %v", f, e.isOrphan(ino))
				}
				if tc.ino(f1) == f1 && e.getattr(f1).Nlink != 2 {
					t.Error("the linked file changed")
				}
			})
		})
	}
}

// TestFsckDestroyQueueLive seeds a destroy-queue entry that lists objects
// of a live file's layout, which must never be destroyed.
func TestFsckDestroyQueueLive(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		_, _, f1 := e.populate()
		objs := e.inode(f1).objects()
		e.corrupt(func(t *mtx) error { _, err := t.queueDestroy(f1, objs); return err })
		f := e.checkSeeded(fsckDestroyQueue)
		if f.Ino != f1 || e.queueLen() != 0 {
			t.Errorf("finding %+v; queue holds %d entries", f, e.queueLen())
		}
		if _, _, err := e.s.drainDestroyQueue(e.ctx); err != nil {
			t.Fatal(err)
		}
		if inos := e.io.destroyedInos(); len(inos) != 0 {
			t.Errorf("objects of %v destroyed", inos)
		}
	})
}

// TestFsckDestroyQueueGone seeds a destroy-queue entry, queued long ago,
// whose objects are gone already. A young one like it is left alone (its
// destroy may be under way), and so is every such entry while the MDS has
// not run long enough for its destroy worker to have drained them.
func TestFsckDestroyQueueGone(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		gone := []proto.ObjRef{{OST: 1, ID: layout.ObjectID{Ino: makeIno(0, 3333), Seq: 1}}, {OST: 2, ID: layout.ObjectID{Ino: makeIno(0, 3333), Seq: 2}}}
		e.corrupt(func(t *mtx) error {
			return t.setRecord(t.k.destroy(makeIno(0, 3333), 1), &destroyRecord{Objs: gone, Queued: t.now - int64(time.Hour)})
		})
		e.mustClean() // the MDS has just started
		e.clock.Advance(fsckQueueGrace)
		young := []proto.ObjRef{{OST: 1, ID: layout.ObjectID{Ino: makeIno(0, 3334), Seq: 1}}}
		e.corrupt(func(t *mtx) error { _, err := t.queueDestroy(makeIno(0, 3334), young); return err })
		f := e.checkSeeded(fsckDestroyQueue)
		if f.Ino != makeIno(0, 3333) || e.queueLen() != 1 {
			t.Errorf("finding %+v; queue holds %d entries, want the young one", f, e.queueLen())
		}
	})
}
