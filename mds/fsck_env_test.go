package mds

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// fakeObjects is the fsck tests' OSTs: the objects clients wrote, kept in
// memory with what an OST lists of them, and the ones destroyed (a
// tombstone each), over fakeIO's recording of punches and destroys.
type fakeObjects struct {
	*fakeIO
	mu   sync.Mutex
	objs map[layout.Object]fakeObject
	dead map[layout.Object]bool
	// afterList, if set, runs after a listing page is made and before it
	// is returned: what a concurrent client does while fsck looks.
	afterList func(req *proto.OSTListReq)
}

// fakeObject is what an OST lists of an object.
type fakeObject struct {
	stripe uint32
	size   int64
	mtime  int64
}

var _ ObjectLister = (*fakeObjects)(nil)

// Destroy deletes and tombstones objects after fakeIO has checked and
// recorded the call.
func (f *fakeObjects) Destroy(ctx context.Context, addr string, c proto.Capability, objs []proto.ObjRef) error {
	if err := f.fakeIO.Destroy(ctx, addr, c, objs); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		key := layout.Object{OST: o.OST, ID: o.ID}
		delete(f.objs, key)
		f.dead[key] = true
	}
	return nil
}

// DestroyMany is Destroy for each file, as an OSS does in one call.
func (f *fakeObjects) DestroyMany(ctx context.Context, addr string, files []proto.ObjDestroyReq) error {
	for _, file := range files {
		if err := f.Destroy(ctx, addr, file.Cap, file.Objs); err != nil {
			return err
		}
	}
	return nil
}

// ListObjects lists or probes as an OSS does.
func (f *fakeObjects) ListObjects(_ context.Context, _ string, req *proto.OSTListReq) (*proto.OSTListResp, error) {
	if err := req.Cap.Verify(f.secret, proto.FsckIno, proto.RightRead, time.Unix(0, req.Cap.Expiry)); err != nil {
		return nil, fmt.Errorf("list: %w: %w", err, syscall.EACCES)
	}
	resp := f.list(req)
	if hook := f.afterList; hook != nil && len(req.IDs) == 0 {
		hook(req)
	}
	return resp, nil
}

func (f *fakeObjects) list(req *proto.OSTListReq) *proto.OSTListResp {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := func(id layout.ObjectID) proto.ObjInfo {
		key := layout.Object{OST: req.OST, ID: id}
		o, ok := f.objs[key]
		return proto.ObjInfo{ID: id, Stripe: o.stripe, Owned: ok, Size: o.size, Mtime: o.mtime, Exists: ok, Destroyed: f.dead[key]}
	}
	resp := &proto.OSTListResp{}
	if len(req.IDs) > 0 {
		for _, id := range req.IDs {
			resp.Objects = append(resp.Objects, info(id))
		}
		return resp
	}
	order := func(a, b layout.ObjectID) int {
		return cmp.Or(cmp.Compare(a.Ino&0xff, b.Ino&0xff), cmp.Compare(a.Ino, b.Ino), cmp.Compare(a.Seq, b.Seq))
	}
	var ids []layout.ObjectID
	for key := range f.objs {
		if key.OST == req.OST && (req.After == layout.ObjectID{} || order(key.ID, req.After) > 0) {
			ids = append(ids, key.ID)
		}
	}
	slices.SortFunc(ids, order)
	if req.Limit > 0 && len(ids) > req.Limit {
		ids, resp.More = ids[:req.Limit], true
	}
	for _, id := range ids {
		resp.Objects = append(resp.Objects, info(id))
	}
	return resp
}

// put stores an object as a client's write does.
func (f *fakeObjects) put(ref proto.ObjRef, size, mtime int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[layout.Object{OST: ref.OST, ID: ref.ID}] = fakeObject{stripe: ref.Stripe, size: size, mtime: mtime}
}

// lose deletes an object without a tombstone, as a lost disk does.
func (f *fakeObjects) lose(ref proto.ObjRef) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, layout.Object{OST: ref.OST, ID: ref.ID})
}

// has reports whether an object exists and whether it was destroyed.
func (f *fakeObjects) has(ref proto.ObjRef) (exists, destroyed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := layout.Object{OST: ref.OST, ID: ref.ID}
	_, exists = f.objs[key]
	return exists, f.dead[key]
}

// fsckEnv is an env whose service reaches fakeObjects.
type fsckEnv struct {
	*env
	objs *fakeObjects
}

// onEngines runs fn as a subtest on each kv engine, with a fresh fsckEnv.
func onEngines(t *testing.T, fn func(t *testing.T, e *fsckEnv)) {
	for _, eng := range []struct {
		name string
		open opener
	}{{"embedded", openEmbedded}, {"tikv", openTiKVMock}} {
		t.Run(eng.name, func(t *testing.T) { fn(t, newFsckEnv(t, eng.open)) })
	}
}

// newFsckEnv makes an env on the engine open opens with a service over
// fakeObjects.
func newFsckEnv(t *testing.T, open opener) *fsckEnv {
	t.Helper()
	e := newEnv(t, open)
	fo := &fakeObjects{fakeIO: e.io, objs: map[layout.Object]fakeObject{}, dead: map[layout.Object]bool{}}
	s, err := NewService(e.ctx, e.db, ServiceOptions{
		Secret: testSecret, ObjectIO: fo, Logger: quietLogger(), Now: e.clock.Now, Lease: 30 * time.Second,
		MDTLease: time.Hour, Addr: "env-mds", // takes MDT 0 over from the env's first service
	})
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	e.s = s
	c, err := s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "fsck-test"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	e.session = c.Session
	e.heartbeat()
	return &fsckEnv{env: e, objs: fo}
}

// writeFile creates a file of stripes objects (-1: one per OST), writes
// the objects at indices written (storing them and reporting them at
// close, as a client does) and returns its inode and objects.
func (e *fsckEnv) writeFile(parent uint64, name string, stripes int32, written ...int) (uint64, []proto.ObjRef) {
	e.t.Helper()
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: parent, Name: name, Mode: 0o644,
		Flags:  syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL,
		Layout: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: stripes, StripeOffset: -1}}}})
	e.must(err)
	objs := layoutObjects(&r.Layout)
	var idx []uint32
	for _, i := range written {
		e.objs.put(objs[i], 4096, e.clock.Now().UnixNano())
		idx = append(idx, uint32(i))
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle,
		Wrote: len(written) > 0, Size: uint64(4096 * len(written)), Written: idx, WrittenGen: r.Layout.Gen})
	e.must(err)
	return r.Attr.Ino, objs
}

// populate makes a small tree that fsck finds clean: directories a and
// a/b, a file of two objects with one written and a second name for it,
// a file of one object per OST all written, a symlink and an empty file.
func (e *fsckEnv) populate() (a, b, f1 uint64) {
	e.t.Helper()
	a = e.mkdir(root, RootIno, "a", 0o755).Ino
	b = e.mkdir(root, a, "b", 0o755).Ino
	f1, _ = e.writeFile(a, "f1", 2, 0)
	_, err := e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: f1, NewParent: b, Name: "f1-again"})
	e.must(err)
	e.writeFile(b, "wide", -1, 0, 1, 2, 3)
	_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: root, Parent: RootIno, Name: "link", Target: "a/f1"})
	e.must(err)
	e.create(root, RootIno, "empty", 0o644)
	return a, b, f1
}

// corrupt changes the store behind the service's back.
func (e *fsckEnv) corrupt(fn func(t *mtx) error) {
	e.t.Helper()
	e.must(e.s.update(e.ctx, fn))
}

// inode reads an inode's record.
func (e *fsckEnv) inode(ino uint64) *inode {
	e.t.Helper()
	var in *inode
	e.must(e.s.view(e.ctx, func(t *mtx) error {
		var err error
		in, err = t.inode(ino)
		return err
	}))
	return in
}

// fsckResult is what a whole run found.
type fsckResult struct {
	findings []proto.FsckFinding
	checked  map[string]uint64
	notes    []string
	pages    int
}

// status is the exit status strata fsck gives a result: 0 clean, 1 found
// (something not repaired), 2 repaired.
func (r fsckResult) status() int {
	if len(r.findings) == 0 {
		return 0
	}
	for _, f := range r.findings {
		if !f.Repaired {
			return 1
		}
	}
	return 2
}

// fsck runs a whole check, page by page, as the CLI does.
func (e *fsckEnv) fsck(repair bool, checks ...string) fsckResult {
	e.t.Helper()
	res := fsckResult{}
	req := &proto.FsckReq{Repair: repair, Checkers: checks}
	for {
		resp, err := e.s.Fsck(e.ctx, req)
		e.must(err)
		res.pages++
		res.findings = append(res.findings, resp.Findings...)
		res.notes = append(res.notes, resp.Notes...)
		res.checked = resp.Checked
		if resp.Done {
			return res
		}
		if res.pages > 100000 {
			e.t.Fatal("fsck does not finish")
		}
		req = &proto.FsckReq{Run: resp.Run, Page: uint64(res.pages)}
	}
}

// checkSeeded runs fsck report-only, with repair and again, and checks the
// first finds exactly one problem, of class, with status 1, the second
// repairs it (status 2) and the third finds nothing (status 0). It
// returns the repairing run's finding.
func (e *fsckEnv) checkSeeded(class string) proto.FsckFinding {
	e.t.Helper()
	for i, repair := range []bool{false, true} {
		res := e.fsck(repair)
		if len(res.findings) != 1 || res.findings[0].Class != class || res.status() != 1+i {
			e.t.Fatalf("fsck (repair %v) found %+v (status %d, notes %v), want one %s finding and status %d",
				repair, res.findings, res.status(), res.notes, class, 1+i)
		}
		e.t.Logf("%s: %s: %s", class, res.findings[0].Problem, res.findings[0].Action)
		if repair {
			e.mustClean()
			return res.findings[0]
		}
	}
	panic("unreachable")
}

// mustClean fails the test unless a report-only run finds nothing.
func (e *fsckEnv) mustClean() {
	e.t.Helper()
	res := e.fsck(false)
	if len(res.findings) != 0 || res.status() != 0 || len(res.notes) != 0 {
		e.t.Fatalf("fsck found %+v (notes %v), want nothing", res.findings, res.notes)
	}
	for _, c := range fsckCheckerNames() {
		if _, ok := res.checked[c]; !ok {
			e.t.Fatalf("checker %s did not run: checked %v", c, res.checked)
		}
	}
	if len(res.checked) != len(fsckCheckers) {
		e.t.Fatalf("checked %v", slices.Collect(maps.Keys(res.checked)))
	}
}
