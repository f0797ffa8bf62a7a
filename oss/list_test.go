package oss

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// listAll pages through an OST's listing limit objects at a time.
func listAll(t *testing.T, o *OST, limit int) []ObjectEntry {
	t.Helper()
	var all []ObjectEntry
	var after layout.ObjectID
	for pages := 0; ; pages++ {
		page, more, err := o.List(after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d objects, limit %d", len(page), limit)
		}
		all = append(all, page...)
		if !more {
			return all
		}
		if len(page) == 0 || pages > 10000 {
			t.Fatalf("listing makes no progress after %d pages", pages)
		}
		after = page[len(page)-1].ID
	}
}

// TestListPages checks that paging lists every object once, in order, with
// its owner and size, and nothing that is not an object.
func TestListPages(t *testing.T) {
	o := openTestOST(t)
	var want []layout.ObjectID
	for ino := uint64(1); ino <= 600; ino += 7 {
		for seq := uint32(0); seq < uint32(ino%3)+1; seq++ {
			ob := Object{ID: layout.ObjectID{Ino: ino, Seq: seq}, Stripe: seq + 1}
			mustWrite(t, o, ob, 0, pattern(int(ino%5)+1, byte(seq)))
			want = append(want, ob.ID)
		}
	}
	// Listing order: fan-out directory (the inode's low byte), then
	// inode, then sequence.
	slices.SortFunc(want, func(a, b layout.ObjectID) int {
		if c := int(a.Ino&0xff) - int(b.Ino&0xff); c != 0 {
			return c
		}
		if a.Ino != b.Ino {
			return int(a.Ino) - int(b.Ino)
		}
		return int(a.Seq) - int(b.Seq)
	})
	stray := filepath.Join(o.Dir(), objectsDir, "01", "not-an-object.tmp")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 7, 1000} {
		got := listAll(t, o, limit)
		var ids []layout.ObjectID
		for _, e := range got {
			ids = append(ids, e.ID)
			if !e.Exists || !e.Owned || e.Stripe != e.ID.Seq+1 || e.Size != int64(e.ID.Ino%5)+1 || e.Destroyed || e.Mtime.IsZero() {
				t.Fatalf("limit %d: entry %+v", limit, e)
			}
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("limit %d: listed %d objects %v\nwant %d %v", limit, len(ids), ids, len(want), want)
		}
	}
}

// TestListDestroyed checks that a destroyed object is not listed and that a
// probe tells a destroyed object from one that never existed, and a file a
// crash brought back after its destroy from a live object.
func TestListDestroyed(t *testing.T) {
	o := openTestOST(t)
	live, gone, back := obj(3, 1), obj(4, 1), obj(5, 1)
	for _, ob := range []Object{live, gone, back} {
		mustWrite(t, o, ob, 0, []byte("data"))
	}
	if err := o.Destroy(gone.ID, back.ID); err != nil {
		t.Fatal(err)
	}
	// The file of a destroyed object comes back, as after a crash that
	// lost the directory's update.
	if err := os.WriteFile(filepath.Join(o.Dir(), ObjectPath(back.ID)), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := listAll(t, o, 10)
	if len(got) != 2 || got[0].ID != live.ID || got[1].ID != back.ID || got[0].Destroyed || !got[1].Destroyed {
		t.Fatalf("listed %+v, want %s live and %s destroyed", got, live.ID, back.ID)
	}
	never := layout.ObjectID{Ino: 6, Seq: 1}
	probed, err := o.Probe([]layout.ObjectID{live.ID, gone.ID, back.ID, never})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ exists, destroyed bool }{{true, false}, {false, true}, {true, true}, {false, false}}
	for i, e := range probed {
		if e.Exists != want[i].exists || e.Destroyed != want[i].destroyed {
			t.Errorf("probe %s: exists %v destroyed %v, want %v %v", e.ID, e.Exists, e.Destroyed, want[i].exists, want[i].destroyed)
		}
	}
}

// TestServerList checks OpOSTList over rpc: it needs the MDS's listing
// capability, and a file's capability does not do.
func TestServerList(t *testing.T) {
	m := startFakeMDS(t, "")
	ts := startOSS(t, m, t.TempDir())
	ctx := context.Background()
	for ino := uint64(10); ino < 20; ino++ {
		if _, err := ts.write(ctx, capFor(ino, proto.RightWrite), ref(0, ino, 2), 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	listCap := capFor(proto.FsckIno, proto.RightRead)
	var all []proto.ObjInfo
	req := proto.OSTListReq{Cap: listCap, OST: 0, Limit: 4}
	for {
		var resp proto.OSTListResp
		if err := ts.client.Call(ctx, ts.addr, proto.OpOSTList, &req, &resp); err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.Objects...)
		if !resp.More {
			break
		}
		req.After = resp.Objects[len(resp.Objects)-1].ID
	}
	if len(all) != 10 {
		t.Fatalf("listed %d objects, want 10: %+v", len(all), all)
	}
	for _, e := range all {
		if !e.Exists || !e.Owned || e.Size != 1 || e.Mtime == 0 {
			t.Errorf("entry %+v", e)
		}
	}
	var resp proto.OSTListResp
	probe := proto.OSTListReq{Cap: listCap, OST: 0, IDs: []layout.ObjectID{{Ino: 10, Seq: 2}, {Ino: 10, Seq: 3}}}
	if err := ts.client.Call(ctx, ts.addr, proto.OpOSTList, &probe, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Objects) != 2 || !resp.Objects[0].Exists || resp.Objects[1].Exists {
		t.Fatalf("probe %+v", resp.Objects)
	}
	err := ts.client.Call(ctx, ts.addr, proto.OpOSTList, &proto.OSTListReq{Cap: capFor(10, proto.RightRead|proto.RightWrite)}, &resp)
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("list with a file's capability: %v, want EACCES", err)
	}
	err = ts.client.Call(ctx, ts.addr, proto.OpOSTList, &proto.OSTListReq{Cap: listCap, OST: 7}, &resp)
	if !errors.Is(err, syscall.ENODEV) {
		t.Errorf("list of an OST not served: %v, want ENODEV", err)
	}
}
