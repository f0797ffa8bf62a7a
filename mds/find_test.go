package mds

import (
	"fmt"
	"path"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// findAll runs a search to its end through svcs (any of which may serve a
// page: each request goes to the one owning the MDT of its directory) and
// returns the matched paths sorted, the errors, and the requests it took.
func findAll(t *testing.T, e *env, svcs []*Service, cred proto.Cred, start uint64, filter proto.FindFilter, limit int) ([]string, []proto.FindError, int) {
	t.Helper()
	var paths []string
	var errs []proto.FindError
	requests := 0
	work := []*proto.FindReq{{Cred: cred, Start: start, Filter: filter, Limit: limit}}
	for len(work) > 0 {
		req := work[0]
		work = work[1:]
		for req != nil {
			route := req.Start
			if len(req.Stack) > 0 {
				route = req.Stack[len(req.Stack)-1].Dir
			}
			var svc *Service
			for _, s := range svcs {
				if s.owns(inoMDT(route)) {
					svc = s
				}
			}
			if svc == nil {
				t.Fatalf("no service owns MDT %d", inoMDT(route))
			}
			resp, err := svc.Find(e.ctx, req)
			e.must(err)
			requests++
			if limit > 0 && len(resp.Entries) > limit {
				t.Fatalf("page of %d entries, limit %d", len(resp.Entries), limit)
			}
			for _, en := range resp.Entries {
				paths = append(paths, en.Path)
			}
			errs = append(errs, resp.Errors...)
			for _, r := range resp.Remote {
				work = append(work, &proto.FindReq{Cred: cred, Stack: []proto.FindFrame{r}, Filter: filter, Limit: limit})
			}
			req = nil
			if len(resp.Stack) > 0 {
				req = &proto.FindReq{Cred: cred, Stack: resp.Stack, Filter: filter, Limit: limit}
			}
		}
	}
	slices.Sort(paths)
	return paths, errs, requests
}

// findNode is an entry of the reference walk.
type findNode struct {
	path  string
	depth int
	in    *inode
}

// walkTree lists every entry below start with its inode, as root sees it.
func walkTree(t *testing.T, e *env, start uint64) []findNode {
	t.Helper()
	var out []findNode
	e.must(e.s.view(e.ctx, func(tx *mtx) error {
		out = out[:0]
		var walk func(dir uint64, rel string, depth int) error
		walk = func(dir uint64, rel string, depth int) error {
			start, end := tx.k.dentryRange(dir, "")
			type ent struct {
				name string
				d    dentry
			}
			var ents []ent
			var derr error
			err := tx.kv.Scan(e.ctx, start, end, 0, func(k, v []byte) bool {
				name, _ := tx.k.dentryName(k)
				var d dentry
				derr = decode(v, &d)
				ents = append(ents, ent{name, d})
				return derr == nil
			})
			if err = firstErr(err, derr); err != nil {
				return err
			}
			for _, en := range ents {
				in, err := tx.inode(en.d.Ino)
				if err != nil {
					return err
				}
				p := path.Join(rel, en.name)
				out = append(out, findNode{path: p, depth: depth, in: in})
				if in.isDir() {
					if err := walk(in.Ino, p, depth+1); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return walk(start, "", 1)
	}))
	return out
}

func TestFind(t *testing.T) {
	onEachEngine(t, func(t *testing.T, e *env) {
		_, err := e.pool(proto.PoolCreate, "fast")
		e.must(err)
		_, err = e.pool(proto.PoolAdd, "fast", 2, 3)
		e.must(err)
		top := e.mkdir(root, RootIno, "top", 0o777)
		wide := layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 2, StripeSize: 128 << 10, StripeOffset: -1, Pool: "fast"}}}
		dirs := []uint64{top.Ino}
		for i := range 6 {
			d := e.mkdir(alice, dirs[i/2], fmt.Sprintf("d%d", i), 0o755)
			dirs = append(dirs, d.Ino)
			if i == 3 {
				_, err := e.s.SetLayout(e.ctx, &proto.SetLayoutReq{Cred: root, Ino: d.Ino, Spec: wide})
				e.must(err)
			}
		}
		now := e.clock.Now()
		for i := range 60 {
			dir := dirs[i%len(dirs)]
			c := root
			if i%3 == 0 {
				c = alice
			}
			r := e.createOpen(c, dir, fmt.Sprintf("f%02d.dat", i), 0o644)
			size := uint64(i * 1000)
			_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle,
				Wrote: size > 0, Size: size, Mtime: now.Add(-time.Duration(i) * 6 * time.Hour).UnixNano()})
			e.must(err)
		}
		_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: top.Ino, Name: "link", Target: "d0"})
		e.must(err)
		nodes := walkTree(t, e, top.Ino)
		if len(nodes) != 67 {
			t.Fatalf("tree has %d entries", len(nodes))
		}
		nowSec := now.Unix()
		cases := []struct {
			name string
			f    proto.FindFilter
		}{
			{"all", proto.FindFilter{}},
			{"files", proto.FindFilter{Type: proto.ModeRegular}},
			{"dirs", proto.FindFilter{Type: proto.ModeDir}},
			{"name", proto.FindFilter{Name: "f[!0]?.dat"}},
			{"user", proto.FindFilter{HasUid: true, Uid: alice.Uid}},
			{"size+", proto.FindFilter{Size: proto.FindCmp{Set: true, Sign: 1, N: 20, Unit: 1024}}},
			{"size-", proto.FindFilter{Size: proto.FindCmp{Set: true, Sign: -1, N: 3, Unit: 1024}}},
			{"size=", proto.FindFilter{Size: proto.FindCmp{Set: true, N: 2, Unit: 1024}}},
			{"mtime+", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, Sign: 1, N: 5, Unit: 86400}}},
			{"mtime-", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, Sign: -1, N: 2, Unit: 86400}}},
			{"mtime=", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, N: 3, Unit: 86400}}},
			{"stripes", proto.FindFilter{StripeCount: proto.FindCmp{Set: true, N: 2, Unit: 1}}},
			{"stripesize", proto.FindFilter{StripeSize: proto.FindCmp{Set: true, Sign: 1, N: 64, Unit: 1024}}},
			{"ost", proto.FindFilter{OSTs: []uint32{0}}},
			{"pool", proto.FindFilter{HasPool: true, Pool: "fast"}},
			{"raid0", proto.FindFilter{Layout: "raid0", Type: proto.ModeRegular}},
			{"released", proto.FindFilter{Layout: "released"}},
			{"maxdepth", proto.FindFilter{MaxDepth: 2}},
		}
		for _, c := range cases {
			f, err := compileFindFilter(c.f)
			e.must(err)
			if c.f.MaxDepth == 0 {
				c.f.MaxDepth = -1
				f.MaxDepth = -1
			}
			var want []string
			if f.match("top", e.inodeOf(top.Ino)) {
				want = append(want, "")
			}
			for _, n := range nodes {
				if (f.MaxDepth < 0 || n.depth <= int(f.MaxDepth)) && f.match(path.Base(n.path), n.in) {
					want = append(want, n.path)
				}
			}
			slices.Sort(want)
			for _, limit := range []int{0, 7} {
				got, errs, _ := findAll(t, e, []*Service{e.s}, root, top.Ino, withName(c.f), limit)
				if !slices.Equal(got, want) || len(errs) > 0 {
					t.Errorf("%s (limit %d): got %d %v, want %d %v (errors %v)", c.name, limit, len(got), got, len(want), want, errs)
				}
			}
		}
		// Independent spot checks of the semantics the cases share with
		// the reference: sizes round up, ages round down.
		got, _, _ := findAll(t, e, []*Service{e.s}, root, top.Ino, proto.FindFilter{MaxDepth: -1,
			Size: proto.FindCmp{Set: true, N: 2, Unit: 1024}}, 0)
		if !slices.Equal(got, []string{"d1/f02.dat"}) {
			t.Errorf("size 2k (1025..2048 bytes): %v", got)
		}
		got, _, _ = findAll(t, e, []*Service{e.s}, root, top.Ino, proto.FindFilter{MaxDepth: -1, Type: proto.ModeRegular,
			Now: nowSec, Mtime: proto.FindCmp{Set: true, N: 0, Unit: 86400}}, 0)
		if len(got) != 4 {
			t.Errorf("mtime 0 (younger than a day: ages 0, 6, 12, 18 h): %v", got)
		}
		got, _, _ = findAll(t, e, []*Service{e.s}, root, top.Ino, proto.FindFilter{MaxDepth: -1, HasPool: true, Pool: "fast"}, 0)
		if len(got) < 2 || !slices.Contains(got, "d0/d3") {
			t.Errorf("pool fast: %v", got)
		}

		// Permissions: bob may not search d0 (0700), so its subtree is
		// reported as an error and nothing below it comes back.
		e.must(e.setMode(root, dirs[1], 0o700))
		got, errs, _ := findAll(t, e, []*Service{e.s}, bob, top.Ino, proto.FindFilter{MaxDepth: -1}, 0)
		if len(errs) != 1 || errs[0].Path != "d0" || errs[0].Errno != int32(syscall.EACCES) {
			t.Fatalf("errors %+v", errs)
		}
		for _, p := range got {
			if len(p) > 3 && p[:3] == "d0/" {
				t.Fatalf("bob sees %s inside an unsearchable directory", p)
			}
		}
		if !slices.Contains(got, "d0") || !slices.Contains(got, "d1/d4") {
			t.Fatalf("bob's search lost entries he may see: %v", got)
		}
		_, err = e.s.Find(e.ctx, &proto.FindReq{Cred: root, Start: top.Ino, Filter: proto.FindFilter{Name: "[", MaxDepth: -1}})
		wantErrno(t, err, syscall.EINVAL)
	})
}

// withName gives a filter the test's start name and the default depth.
func withName(f proto.FindFilter) proto.FindFilter {
	if f.MaxDepth == 0 {
		f.MaxDepth = -1
	}
	return f
}

// inodeOf reads an inode with its layout.
func (e *env) inodeOf(ino uint64) *inode {
	e.t.Helper()
	var in *inode
	e.must(e.s.view(e.ctx, func(tx *mtx) error {
		var err error
		in, err = tx.inode(ino)
		return err
	}))
	return in
}

// setMode chmods an inode.
func (e *env) setMode(c proto.Cred, ino uint64, mode uint32) error {
	_, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: c, Ino: ino, Valid: proto.SetMode, Mode: mode})
	return err
}

// TestFindAcrossMDTs: a subdirectory on an MDT another MDS owns comes back
// as a remote part, which that MDS searches.
func TestFindAcrossMDTs(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	s1, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
		Now: e.clock.Now, MDTs: []uint32{1}, MDTLease: time.Hour, Addr: "mds1"})
	e.must(err)
	e.must(s1.targets.load(e.ctx, s1))
	e.must(e.s.targets.load(e.ctx, e.s))
	a := e.mkdir(root, RootIno, "a", 0o755)
	r, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: "b", Mode: 0o755, MDT: 1})
	e.must(err)
	if inoMDT(r.Attr.Ino) != 1 {
		t.Fatalf("b on MDT %d", inoMDT(r.Attr.Ino))
	}
	c, err := s1.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "t1"})
	e.must(err)
	for i := range 5 {
		e.create(root, a.Ino, fmt.Sprintf("x%d", i), 0o644)
		_, err := s1.Create(e.ctx, &proto.CreateReq{Cred: root, Session: c.Session, Parent: r.Attr.Ino,
			Name: fmt.Sprintf("y%d", i), Mode: 0o644, Flags: syscall.O_RDWR | syscall.O_CREAT})
		e.must(err)
	}
	sub, err := s1.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: r.Attr.Ino, Name: "back", Mode: 0o755, MDT: 0})
	e.must(err)
	e.create(root, sub.Attr.Ino, "z", 0o644)
	got, _, requests := findAll(t, e, []*Service{e.s, s1}, root, RootIno, proto.FindFilter{MaxDepth: -1, Type: proto.ModeRegular}, 0)
	want := []string{"a/x0", "a/x1", "a/x2", "a/x3", "a/x4", "b/back/z", "b/y0", "b/y1", "b/y2", "b/y3", "b/y4"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// One request for the root's MDT, then one per crossing: b on MDT
	// 1, b/back back on MDT 0, and a if it was placed on MDT 1.
	if want := 3 + int(inoMDT(a.Ino)); requests != want {
		t.Errorf("%d requests, want %d", requests, want)
	}
	// A page asked of an MDS for a directory it does not serve fails
	// with EREMOTE, so the client learns the MDT table again.
	_, err = e.s.Find(e.ctx, &proto.FindReq{Cred: root, Stack: []proto.FindFrame{{Dir: r.Attr.Ino, Path: "b", Depth: 2}}, Filter: proto.FindFilter{MaxDepth: -1}})
	wantErrno(t, err, syscall.EREMOTE)
}
