package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// changelogConsumer reads MDT 0's changelog as a registered consumer,
// clearing each page once it has taken it, and follows the MDT to whichever
// MDS owns it.
type changelogConsumer struct {
	rc     *rpc.Client
	addrs  []string
	id     string
	cursor uint64
	got    []proto.ChangelogEntry
}

// call sends a changelog request to the owner of MDT 0, waiting through a
// failover.
func (cc *changelogConsumer) call(ctx context.Context, op uint16, req, resp any) error {
	for {
		var last error
		for _, a := range cc.addrs {
			err := cc.rc.Call(ctx, a, op, req, resp)
			if err == nil {
				return nil
			}
			last = err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		}
		if !errors.Is(last, syscall.EREMOTE) && !errors.Is(last, syscall.ECONNREFUSED) && !errors.Is(last, syscall.ECONNRESET) {
			return last
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// poll takes one page, if any, and clears it.
func (cc *changelogConsumer) poll(ctx context.Context) (int, error) {
	var resp proto.ChangelogResp
	if err := cc.call(ctx, proto.OpChangelog, &proto.ChangelogReq{MDT: 0, After: cc.cursor, Wait: 50}, &resp); err != nil {
		return 0, err
	}
	if len(resp.Entries) == 0 {
		return 0, nil
	}
	cc.got = append(cc.got, resp.Entries...)
	cc.cursor = resp.Entries[len(resp.Entries)-1].Index
	clear := proto.ChangelogUserReq{Op: proto.ChangelogClear, ID: cc.id, MDT: 0, Index: cc.cursor}
	return len(resp.Entries), cc.call(ctx, proto.OpChangelogUser, &clear, &proto.ChangelogUserResp{})
}

// TestChangelogTwoClientsAcrossFailover: two clients create, write,
// rename, chmod and unlink files at once while a consumer follows the
// changelog; the MDS serving the MDT stops midway and a standby takes it
// over. The consumer sees every change exactly once, each client's in the
// order it made them, and its stored cursor is where it stopped.
func TestChangelogTwoClientsAcrossFailover(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 1, TiKV: true,
		MDSes: [][]uint32{{0}, {}}, MDTLease: time.Second})
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := &changelogConsumer{rc: rc, addrs: cl.MDSAddrs}
	var reg proto.ChangelogUserResp
	if err := cc.call(ctx, proto.OpChangelogUser, &proto.ChangelogUserReq{Op: proto.ChangelogRegister, Name: "test"}, &reg); err != nil {
		t.Fatal(err)
	}
	cc.id = reg.Users[0].ID

	const ops = 40
	type expect struct {
		typ  uint8
		name string // the entry's name (the new one for a rename); "" for CLOSE and SATTR
	}
	want := make([][]expect, 2)
	dirs := make([]uint64, 2)
	var inosMu sync.Mutex
	inos := map[uint64]int{} // file inode -> client
	progress := make(chan int, 2*ops)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		c := cl.Client(t, client.Config{})
		dir := fmt.Sprintf("/c%d", w)
		if err := c.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := c.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		dirs[w] = st.Ino
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ops {
				f, err := c.OpenFile(fmt.Sprintf("%s/f%d", dir, i), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					errs <- err
					return
				}
				inosMu.Lock()
				inos[f.Ino()] = w
				inosMu.Unlock()
				if _, err := f.WriteAt([]byte("data"), 0); err != nil {
					errs <- err
					return
				}
				err = f.Close()
				if err == nil {
					err = c.Rename(ctx, proto.Cred{}, dirs[w], fmt.Sprintf("f%d", i), dirs[w], fmt.Sprintf("g%d", i), 0)
				}
				if err == nil {
					_, err = c.Setattr(ctx, proto.Cred{}, f.Ino(), proto.SetattrReq{Valid: proto.SetMode, Mode: 0o600})
				}
				want[w] = append(want[w], expect{proto.ChangelogCreate, fmt.Sprintf("f%d", i)}, expect{proto.ChangelogClose, ""},
					expect{proto.ChangelogRename, fmt.Sprintf("g%d", i)}, expect{proto.ChangelogSetattr, ""})
				if err == nil && i%2 == 1 {
					err = c.Unlink(ctx, proto.Cred{}, dirs[w], fmt.Sprintf("g%d", i))
					want[w] = append(want[w], expect{proto.ChangelogUnlink, fmt.Sprintf("g%d", i)})
				}
				if err != nil {
					errs <- fmt.Errorf("client %d op %d: %w", w, i, err)
					return
				}
				progress <- 1
			}
		}()
	}
	// Follow the log; stop the first MDS halfway through the workload.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	stopped := false
	made := 0
	for finished := false; !finished; {
		select {
		case err := <-errs:
			t.Fatal(err)
		case <-done:
			finished = true
		case <-progress:
			made++
		default:
		}
		if !stopped && made >= ops {
			cl.StopMDS(0)
			stopped = true
		}
		if _, err := cc.poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if !stopped {
		t.Fatal("the workload ended before the failover")
	}
	for {
		n, err := cc.poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}

	// Each client's changes, exactly once, in its order.
	seen := map[uint64]bool{}
	got := make([][]expect, 2)
	for _, e := range cc.got {
		if seen[e.Index] {
			t.Fatalf("entry %d delivered twice", e.Index)
		}
		seen[e.Index] = true
		w := slices.Index(dirs, e.Parent)
		if w < 0 {
			inosMu.Lock()
			cw, ok := inos[e.Ino]
			inosMu.Unlock()
			if !ok {
				continue // the clients' mkdirs of their own directories
			}
			w = cw
		}
		name := e.Name
		if e.Type == proto.ChangelogClose || e.Type == proto.ChangelogSetattr {
			name = ""
		}
		got[w] = append(got[w], expect{e.Type, name})
	}
	for w := range 2 {
		if !slices.Equal(got[w], want[w]) {
			t.Fatalf("client %d: %d entries, want %d\ngot  %v\nwant %v", w, len(got[w]), len(want[w]), got[w], want[w])
		}
	}
	var users proto.ChangelogUserResp
	if err := cc.call(ctx, proto.OpChangelogUser, &proto.ChangelogUserReq{Op: proto.ChangelogUsers}, &users); err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 1 || users.Users[0].Cursors[0] != cc.cursor {
		t.Fatalf("stored cursor %+v, the consumer read to %d", users.Users, cc.cursor)
	}
	t.Logf("%d entries across the failover", len(cc.got))
}
