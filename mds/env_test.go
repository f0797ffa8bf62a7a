package mds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// opener opens (or reopens) a store kept in dir; the suite runs once per
// engine with one opener each.
type opener func(t testing.TB, dir string) *kv.DB

// fakeClock is a settable clock shared by a test's services.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// punchCall is one recorded ObjectIO.Punch.
type punchCall struct {
	Addr  string
	Obj   proto.ObjRef
	Size  int64
	Epoch uint64 // the capability's truncate epoch
}

// fakeIO records object operations and fails them on demand.
type fakeIO struct {
	mu        sync.Mutex
	punches   []punchCall
	destroyed []proto.ObjRef
	fail      error
	secret    []byte
	// oldOSS makes DestroyMany fail as an OSS without it does (ENOSYS);
	// manyCalls counts the DestroyMany calls that went through.
	oldOSS    bool
	manyCalls int
	// punchesLeft, when positive, is how many more punches succeed
	// before every punch fails with EIO (a crash in the middle of a
	// truncate); 0 means no limit.
	punchesLeft int
}

func (f *fakeIO) Punch(_ context.Context, addr string, c proto.Capability, obj proto.ObjRef, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := c.Verify(f.secret, obj.ID.Ino, proto.RightWrite, time.Unix(0, c.Expiry)); err != nil {
		return err
	}
	if f.fail != nil {
		return f.fail
	}
	if f.punchesLeft > 0 {
		if f.punchesLeft == 1 {
			f.fail = syscall.EIO
		}
		f.punchesLeft--
	}
	f.punches = append(f.punches, punchCall{Addr: addr, Obj: obj, Size: size, Epoch: c.Epoch})
	return nil
}

func (f *fakeIO) Destroy(_ context.Context, _ string, c proto.Capability, objs []proto.ObjRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		if err := c.Verify(f.secret, o.ID.Ino, proto.RightWrite, time.Unix(0, c.Expiry)); err != nil {
			return err
		}
	}
	if f.fail != nil {
		return f.fail
	}
	f.destroyed = append(f.destroyed, objs...)
	return nil
}

// DestroyMany makes the service's destroy passes batch (ManyDestroyer).
func (f *fakeIO) DestroyMany(ctx context.Context, addr string, files []proto.ObjDestroyReq) error {
	f.mu.Lock()
	old := f.oldOSS
	if !old {
		f.manyCalls++
	}
	f.mu.Unlock()
	if old {
		return fmt.Errorf("rpc: op %d not supported: %w", proto.OpObjDestroyMany, syscall.ENOSYS)
	}
	for _, file := range files {
		if err := f.Destroy(ctx, addr, file.Cap, file.Objs); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeIO) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fakeIO) takePunches() []punchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.punches
	f.punches = nil
	return p
}

func (f *fakeIO) destroyedInos() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var inos []uint64
	for _, o := range f.destroyed {
		if !slices.Contains(inos, o.ID.Ino) {
			inos = append(inos, o.ID.Ino)
		}
	}
	return inos
}

// env is one formatted filesystem with a service over it, four active
// OSTs and a connected session.
type env struct {
	t       *testing.T
	ctx     context.Context
	open    opener
	dir     string
	db      *kv.DB
	s       *Service
	io      *fakeIO
	clock   *fakeClock
	session uint64
	// metaLease, if set before start, is the metadata lease term.
	metaLease time.Duration
}

var testSecret = []byte("test secret")

// Credentials used throughout the suite.
var (
	root  = proto.Cred{}
	alice = proto.Cred{Uid: 1000, Gid: 1000}
	bob   = proto.Cred{Uid: 1001, Gid: 1001, Groups: []uint32{500}}
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T, open opener) *env {
	t.Helper()
	e := &env{
		t: t, ctx: context.Background(), open: open, dir: t.TempDir(),
		io:    &fakeIO{secret: testSecret},
		clock: &fakeClock{now: time.Unix(1_800_000_000, 0)},
	}
	e.db = open(t, e.dir)
	t.Cleanup(func() { e.db.Close() })
	err := FormatDB(e.ctx, e.db, FormatOptions{FSName: "testfs", Logger: quietLogger()})
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	e.start()
	resp, err := e.s.RegisterOSS(e.ctx, &proto.RegisterOSSReq{FSName: "testfs", Addr: "oss0:1", OSTs: []proto.OSTAnnounce{
		{Index: -1, UUID: "ost-a", Total: 1 << 40, Avail: 1 << 40},
		{Index: -1, UUID: "ost-b", Total: 1 << 40, Avail: 1 << 40},
	}})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if !slices.Equal(resp.Indices, []uint32{0, 1}) {
		t.Fatalf("indices %v, want [0 1]", resp.Indices)
	}
	_, err = e.s.RegisterOSS(e.ctx, &proto.RegisterOSSReq{FSName: "testfs", Addr: "oss1:1", OSTs: []proto.OSTAnnounce{
		{Index: -1, UUID: "ost-c", Total: 1 << 40, Avail: 1 << 40},
		{Index: -1, UUID: "ost-d", Total: 1 << 40, Avail: 1 << 40},
	}})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	e.heartbeat()
	return e
}

// start makes a service over the env's store and connects a session.
func (e *env) start() {
	e.t.Helper()
	s, err := NewService(e.ctx, e.db, ServiceOptions{
		Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(), Now: e.clock.Now, Lease: 30 * time.Second,
		MDTLease:  time.Hour, // no renewal loop runs in these tests
		Addr:      "env-mds", // a restart takes its MDTs back at once
		MetaLease: e.metaLease,
	})
	if err != nil {
		e.t.Fatalf("new service: %v", err)
	}
	e.s = s
	c, err := s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "test"})
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.session = c.Session
}

// restart closes the store, reopens it and starts a new service over it,
// as an MDS restart does. OSTs come back with their heartbeats.
func (e *env) restart() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatalf("close store: %v", err)
	}
	e.db = e.open(e.t, e.dir)
	e.start()
	e.heartbeat()
}

// heartbeat refreshes every OST.
func (e *env) heartbeat() {
	e.t.Helper()
	for addr, idx := range map[string][]int64{"oss0:1": {0, 1}, "oss1:1": {2, 3}} {
		var osts []proto.OSTAnnounce
		for _, i := range idx {
			osts = append(osts, proto.OSTAnnounce{Index: i, Total: 1 << 40, Used: 1 << 30, Avail: 1<<40 - 1<<30})
		}
		if err := e.s.OSSHeartbeat(e.ctx, &proto.OSSHeartbeatReq{Addr: addr, OSTs: osts}); err != nil {
			e.t.Fatalf("heartbeat: %v", err)
		}
	}
}

// must fails the test on err.
func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantErrno fails unless err carries errno.
func wantErrno(t *testing.T, err error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Fatalf("got error %v, want %v (%s)", err, errno, fmt.Sprint(int(errno)))
	}
}

func (e *env) mkdir(c proto.Cred, parent uint64, name string, mode uint32) proto.Attr {
	e.t.Helper()
	r, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: c, Parent: parent, Name: name, Mode: mode, MDT: -1})
	e.must(err)
	return r.Attr
}

// create creates and closes a file.
func (e *env) create(c proto.Cred, parent uint64, name string, mode uint32) proto.Attr {
	e.t.Helper()
	r := e.createOpen(c, parent, name, mode)
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle})
	e.must(err)
	return r.Attr
}

// createOpen creates a file and leaves it open for writing.
func (e *env) createOpen(c proto.Cred, parent uint64, name string, mode uint32) *proto.OpenResp {
	e.t.Helper()
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: c, Session: e.session, Parent: parent, Name: name,
		Mode: mode, Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL})
	e.must(err)
	return r
}

func (e *env) lookup(c proto.Cred, parent uint64, name string) (proto.Attr, error) {
	r, err := e.s.Lookup(e.ctx, &proto.LookupReq{Cred: c, Parent: parent, Name: name})
	if err != nil {
		return proto.Attr{}, err
	}
	return r.Attr, nil
}

func (e *env) getattr(ino uint64) proto.Attr {
	e.t.Helper()
	r, err := e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: ino})
	e.must(err)
	return r.Attr
}

// names lists a directory through readdir pages of size page.
func (e *env) names(ino uint64, page int) []string {
	e.t.Helper()
	var out []string
	after := ""
	for {
		r, err := e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: ino, After: after, Max: page})
		e.must(err)
		for _, d := range r.Entries {
			out = append(out, d.Name)
		}
		if !r.More {
			return out
		}
		after = r.Entries[len(r.Entries)-1].Name
	}
}

// queueLen counts destroy-queue entries.
func (e *env) queueLen() int {
	e.t.Helper()
	n := 0
	e.must(e.s.view(e.ctx, func(t *mtx) error {
		start, end := t.k.destroyRange()
		return t.kv.Scan(e.ctx, start, end, 0, func(_, _ []byte) bool { n++; return true })
	}))
	return n
}

// isOrphan reports whether ino is on the orphan list.
func (e *env) isOrphan(ino uint64) bool {
	e.t.Helper()
	found := false
	e.must(e.s.view(e.ctx, func(t *mtx) error {
		var r orphanRecord
		ok, err := t.getRecord(t.k.orphan(ino), &r)
		found = ok
		return err
	}))
	return found
}

func (e *env) ctxWithCancel() (context.Context, context.CancelFunc) { return context.WithCancel(e.ctx) }
