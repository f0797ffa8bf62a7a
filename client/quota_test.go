package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// TestQuotaTwoClients: two clients creating and writing at once as one
// user, group or project stop at its limits: exactly at the inode limit,
// and within the documented overshoot (a qunit and the write under way per
// file being written) of the block limit.
func TestQuotaTwoClients(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 2})
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret})
	defer rc.Close()
	ctx := context.Background()
	admin := cl.Client(t, client.Config{})
	for n, tc := range []struct {
		typ  uint8
		id   uint32
		cred proto.Cred
		proj uint32
	}{
		{proto.QuotaUser, 1000, proto.Cred{Uid: 1000, Gid: 1000}, 0},
		{proto.QuotaGroup, 3000, proto.Cred{Uid: 1001, Gid: 3000}, 0},
		{proto.QuotaProject, 77, proto.Cred{Uid: 1002, Gid: 1002}, 77},
	} {
		t.Run([]string{"user", "group", "project"}[n], func(t *testing.T) {
			dir := fmt.Sprintf("/q%d", n)
			if err := admin.MkdirAll(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			st, err := admin.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.proj != 0 {
				if _, err := admin.Project(ctx, proto.Cred{}, st.Ino, proto.ProjectReq{SetID: true, Project: tc.proj, SetInherit: true, Inherit: true}); err != nil {
					t.Fatal(err)
				}
			}
			const inodes, bytes = 30, 24 << 20
			var q proto.QuotaResp
			if err := rc.Call(ctx, cl.MDS, proto.OpSetQuota, &proto.SetQuotaReq{Type: tc.typ, ID: tc.id,
				Valid: proto.SetInodeHard | proto.SetBlockHard, Limits: proto.QuotaLimits{InodeHard: inodes, BlockHard: bytes}}, &q); err != nil {
				t.Fatal(err)
			}
			base := q.Inodes // the directory, for a project
			clients := []*client.Client{cl.Client(t, client.Config{}), cl.Client(t, client.Config{})}
			var wg sync.WaitGroup
			var mu sync.Mutex
			made, dquot := 0, 0
			chunk := make([]byte, 1<<20)
			for w, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						f, err := c.Create(ctx, tc.cred, st.Ino, fmt.Sprintf("c%d-%d", w, i), 0o644, 0, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, layout.Spec{})
						if errors.Is(err, syscall.EDQUOT) {
							mu.Lock()
							dquot++
							mu.Unlock()
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						made++
						mu.Unlock()
						// Write until the block limit stops this file
						// (a few MiB each), then go on creating.
						for off := int64(0); off < 8<<20; off += int64(len(chunk)) {
							if _, err := f.WriteAt(chunk, off); err != nil {
								if !errors.Is(err, syscall.EDQUOT) {
									t.Error(err)
								}
								break
							}
						}
						if err := f.Close(); err != nil && !errors.Is(err, syscall.EDQUOT) {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := rc.Call(ctx, cl.MDS, proto.OpQuota, &proto.QuotaReq{Type: tc.typ, ID: tc.id}, &q); err != nil {
				t.Fatal(err)
			}
			if q.Inodes != inodes || int64(made) != inodes-base || dquot != 2 {
				t.Fatalf("inodes %d (made %d, both clients stopped: %v), want exactly %d", q.Inodes, made, dquot == 2, inodes)
			}
			// The documented overshoot: what each writer was granted
			// and had not reported, a qunit and the write under way.
			if slack := int64(2 * (proto.QuotaUnit + len(chunk))); q.Bytes < bytes-slack || q.Bytes > bytes+slack {
				t.Fatalf("bytes %d, want the limit %d within %d", q.Bytes, bytes, slack)
			}
			t.Logf("%d inodes, %d bytes (limit %d)", q.Inodes, q.Bytes, bytes)
		})
	}
}
