package mds

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// TestFsckOrphanObject seeds an object no layout references, with a
// sequence its inode has not handed out yet: the repair destroys it and
// moves the inode's next sequence past it, so no future layout names a
// destroyed object.
func TestFsckOrphanObject(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		_, _, f1 := e.populate()
		next := e.inode(f1).NextObjSeq
		orphan := proto.ObjRef{OST: 2, ID: layout.ObjectID{Ino: f1, Seq: next + 3}}
		e.objs.put(orphan, 100, e.clock.Now().Add(-time.Hour).UnixNano())
		f := e.checkSeeded(fsckOrphanObjects)
		if f.Object == nil || f.Object.ID != orphan.ID || f.Object.OST != orphan.OST {
			t.Errorf("finding %+v", f)
		}
		if exists, destroyed := e.objs.has(orphan); exists || !destroyed {
			t.Errorf("orphan exists %v, destroyed %v after the repair", exists, destroyed)
		}
		if got := e.inode(f1).NextObjSeq; got <= orphan.ID.Seq {
			t.Errorf("next object sequence %d, want past the orphan's %d", got, orphan.ID.Seq)
		}
	})
}

// TestFsckMissingObject loses an object a file wrote: fsck reports the
// loss and the repair clears the written mark. The file's other object,
// never written and so never created, is not missing.
func TestFsckMissingObject(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		ino, objs := e.writeFile(RootIno, "victim", 2, 1)
		e.objs.lose(objs[1])
		f := e.checkSeeded(fsckMissingObjects)
		if f.Ino != ino || f.Object == nil || *f.Object != objs[1] || !strings.Contains(f.Problem, "lost") {
			t.Errorf("finding %+v, want object %+v", f, objs[1])
		}
		if in := e.inode(ino); in.wroteObject(1) || in.Written != nil {
			t.Errorf("written marks %08b after the repair", in.Written)
		}
	})
}

// TestWrittenReports checks that size reports and closes mark the objects
// they name as written, for the layout generation they name only.
func TestWrittenReports(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		r := e.createOpen(root, RootIno, "f", 0o644)
		gen := r.Layout.Gen
		n := objectCount(&r.Layout)
		report := func(gen uint32, idx ...uint32) {
			_, err := e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: r.Attr.Ino, Handle: r.Handle, Size: 1, Written: idx, WrittenGen: gen})
			e.must(err)
		}
		report(gen+1, 0)             // another generation: ignored
		report(gen, uint32(n), 1000) // past the layout: ignored
		if w := e.inode(r.Attr.Ino).Written; w != nil {
			t.Fatalf("written %08b after reports that name nothing of the layout", w)
		}
		report(gen, 0)
		_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: 1,
			Written: []uint32{uint32(n - 1)}, WrittenGen: gen})
		e.must(err)
		in := e.inode(r.Attr.Ino)
		for i := range n {
			if want := i == 0 || i == n-1; in.wroteObject(i) != want {
				t.Errorf("object %d written %v, want %v", i, in.wroteObject(i), want)
			}
		}
	})
}

// TestFsckConcurrentObjects runs fsck while a client creates and writes a
// file and another unlinks one whose objects are then destroyed, both
// after fsck's first listing: neither file's objects may be reported as
// orphans. An unreferenced object younger than the run's start is not
// reported either, until a later run.
func TestFsckConcurrentObjects(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		_, doomed := e.writeFile(RootIno, "doomed", -1, 0, 1, 2, 3)
		young := proto.ObjRef{OST: 3, ID: layout.ObjectID{Ino: makeIno(0, 5555), Seq: 1}}
		e.objs.put(young, 1, e.clock.Now().Add(time.Second).UnixNano())

		var once sync.Once
		var lateObjs []proto.ObjRef
		e.objs.afterList = func(req *proto.OSTListReq) {
			once.Do(func() {
				// The page just listed holds doomed's object on this OST:
				// the file goes, and so do its objects.
				e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "doomed"}))
				if _, _, err := e.s.drainDestroyQueue(e.ctx); err != nil {
					t.Errorf("drain destroy queue: %v", err)
				}
				// A new file with an object on every OST, written now.
				_, lateObjs = e.writeFile(RootIno, "late", -1, 0, 1, 2, 3)
			})
		}
		res := e.fsck(true)
		e.objs.afterList = nil
		if len(lateObjs) == 0 {
			t.Fatal("the concurrent client never ran")
		}
		if len(res.findings) != 0 {
			t.Fatalf("fsck during concurrent creates and destroys found %+v", res.findings)
		}
		for _, o := range lateObjs {
			if exists, _ := e.objs.has(o); !exists {
				t.Errorf("object %+v of the new file is gone", o)
			}
		}
		for _, o := range doomed {
			if exists, destroyed := e.objs.has(o); exists || !destroyed {
				t.Errorf("object %+v of the unlinked file: exists %v destroyed %v", o, exists, destroyed)
			}
		}
		// Once the young object is older than a run's start, it is an orphan.
		e.clock.Advance(2 * time.Second)
		e.heartbeat()
		res = e.fsck(false)
		if len(res.findings) != 1 || res.findings[0].Object == nil || res.findings[0].Object.ID != young.ID {
			t.Fatalf("later run found %+v, want the young object", res.findings)
		}
	})
}
