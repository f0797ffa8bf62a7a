package client_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// TestWrittenObjectsReported checks that the client tells the MDS which
// objects it wrote, through write-behind and O_SYNC writes alike, so that
// fsck reports an object lost on its OST and never a stripe that was not
// written (and so never created).
func TestWrittenObjectsReported(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 4})
	c := cl.Client(t, client.Config{})
	spec := layout.DefaultSpec(4, 64<<10)
	sparse, err := c.CreateStriped("/sparse", 0o644, spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, stripe := range []int64{0, 2} {
		if _, err := sparse.WriteAt([]byte("x"), stripe*64<<10); err != nil {
			t.Fatal(err)
		}
	}
	sparseLay := sparse.Layout()
	if err := sparse.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateStriped("/synced", 0o644, spec); err != nil {
		t.Fatal(err)
	}
	synced, err := c.OpenFile("/synced", os.O_WRONLY|syscall.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synced.WriteAt([]byte("y"), 64<<10+5); err != nil {
		t.Fatal(err)
	}
	syncedLay := synced.Layout()
	if err := synced.Close(); err != nil {
		t.Fatal(err)
	}

	if found := runFsck(t, cl); len(found) != 0 {
		t.Fatalf("fsck of a healthy filesystem found %+v", found)
	}
	lost := []layout.Object{sparseLay.Components[0].Objects[2], syncedLay.Components[0].Objects[1]}
	for _, o := range lost {
		removeObject(t, cl, o.ID)
	}
	found := runFsck(t, cl)
	var got []layout.Object
	for _, f := range found {
		if f.Class != "missing-objects" || f.Object == nil {
			t.Fatalf("finding %+v", f)
		}
		got = append(got, layout.Object{OST: f.Object.OST, ID: f.Object.ID})
	}
	if len(got) != len(lost) || !slices.Contains(got, lost[0]) || !slices.Contains(got, lost[1]) {
		t.Fatalf("fsck found missing %v, want %v", got, lost)
	}
}

// runFsck runs a report-only fsck of every class over rpc and returns what
// it found.
func runFsck(t *testing.T, cl *testcluster.Cluster) []proto.FsckFinding {
	t.Helper()
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var found []proto.FsckFinding
	req := proto.FsckReq{}
	for pages := uint64(1); ; pages++ {
		var resp proto.FsckResp
		if err := rc.Call(ctx, cl.MDS, proto.OpFsck, &req, &resp); err != nil {
			t.Fatalf("fsck: %v", err)
		}
		if len(resp.Notes) > 0 {
			t.Fatalf("fsck could not check everything: %v", resp.Notes)
		}
		found = append(found, resp.Findings...)
		if resp.Done {
			return found
		}
		req = proto.FsckReq{Run: resp.Run, Page: pages}
	}
}

// removeObject deletes an object's file from whichever OST holds it, as a
// failed disk loses it.
func removeObject(t *testing.T, cl *testcluster.Cluster, id layout.ObjectID) {
	t.Helper()
	for _, dir := range cl.OSTDirs {
		err := os.Remove(filepath.Join(dir, oss.ObjectPath(id)))
		if err == nil {
			return
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	t.Fatalf("object %s is on no OST", id)
}
