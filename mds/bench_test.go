package mds

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/embedded"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// benchEnv is a service over the embedded engine with its default sync
// policy (interval), as an MDS runs, with two OSTs and a session.
type benchEnv struct {
	ctx     context.Context
	s       *Service
	session uint64
	dir     uint64       // a directory owned by alice for the benchmark's files
	beat    func() error // an OSS heartbeat, for runs longer than OST liveness
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ctx := context.Background()
	e, err := embedded.Open(b.TempDir(), kv.Options{Sync: embedded.SyncInterval})
	if err != nil {
		b.Fatal(err)
	}
	db := &kv.DB{Engine: e}
	b.Cleanup(func() { db.Close() })
	if err := FormatDB(ctx, db, FormatOptions{FSName: "benchfs", Logger: quietLogger()}); err != nil {
		b.Fatal(err)
	}
	s, err := NewService(ctx, db, ServiceOptions{Secret: testSecret, ObjectIO: &fakeIO{secret: testSecret}, Logger: quietLogger(),
		MDTLease: time.Hour}) // no renewal loop runs here; a long run must not be fenced
	if err != nil {
		b.Fatal(err)
	}
	_, err = s.RegisterOSS(ctx, &proto.RegisterOSSReq{FSName: "benchfs", Addr: "oss0:1", OSTs: []proto.OSTAnnounce{
		{Index: -1, UUID: "ost-a", Total: 1 << 40, Avail: 1 << 40},
		{Index: -1, UUID: "ost-b", Total: 1 << 40, Avail: 1 << 40},
	}})
	if err != nil {
		b.Fatal(err)
	}
	beat := func() error {
		return s.OSSHeartbeat(ctx, &proto.OSSHeartbeatReq{Addr: "oss0:1", OSTs: []proto.OSTAnnounce{
			{Index: 0, Total: 1 << 40, Avail: 1 << 40},
			{Index: 1, Total: 1 << 40, Avail: 1 << 40},
		}})
	}
	if err := beat(); err != nil {
		b.Fatal(err)
	}
	c, err := s.Connect(ctx, &proto.ConnectReq{FSName: "benchfs", ClientID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	d, err := s.Mkdir(ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: "bench", Mode: 0o777, MDT: -1})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{ctx: ctx, s: s, session: c.Session, dir: d.Attr.Ino, beat: beat}
}

// create makes the file name in the benchmark directory, as a FUSE create
// does: create with O_EXCL, then close the handle without having written.
func (e *benchEnv) create(b *testing.B, name string) uint64 {
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: e.dir, Name: name,
		Mode: 0o644, Umask: 0o022, Flags: syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle}); err != nil {
		b.Fatal(err)
	}
	return r.Attr.Ino
}

// BenchmarkCreateClose creates and closes empty files in one directory.
func BenchmarkCreateClose(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.create(b, fmt.Sprintf("f%08d", i))
		i++
	}
}

// BenchmarkLookup looks up existing names in a directory of 1,000 files.
func BenchmarkLookup(b *testing.B) {
	e := newBenchEnv(b)
	const files = 1000
	for i := range files {
		e.create(b, fmt.Sprintf("f%08d", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := &proto.LookupReq{Cred: alice, Parent: e.dir, Name: fmt.Sprintf("f%08d", i%files)}
		if _, err := e.s.Lookup(e.ctx, req); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookupMissing looks up names that do not exist, as every create
// through FUSE does first.
func BenchmarkLookupMissing(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := &proto.LookupReq{Cred: alice, Parent: e.dir, Name: fmt.Sprintf("m%08d", i)}
		if _, err := e.s.Lookup(e.ctx, req); err == nil {
			b.Fatal("lookup of a missing name succeeded")
		}
		i++
	}
}

// BenchmarkGetattr reads the attributes of files in a directory of 1,000.
func BenchmarkGetattr(b *testing.B) {
	e := newBenchEnv(b)
	const files = 1000
	inos := make([]uint64, files)
	for i := range inos {
		inos[i] = e.create(b, fmt.Sprintf("f%08d", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: inos[i%files]}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkUnlink removes closed files, each its last link.
func BenchmarkUnlink(b *testing.B) {
	e := newBenchEnv(b)
	for i := range b.N {
		e.create(b, fmt.Sprintf("f%08d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: e.dir, Name: fmt.Sprintf("f%08d", i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// wireEnv is an MDS and an OSS with two OSTs on loopback, and a client
// session: the small-file path of a mount without FUSE and the client
// library, serial as one process's creates are.
type wireEnv struct {
	ctx     context.Context
	c       *rpc.Client
	addr    string
	session uint64
	oss     *oss.Server
	s       *Service
}

func newWireEnv(b *testing.B) *wireEnv {
	b.Helper()
	var svc *Service
	addr, stop := startServerWith(b, 0, func(s *Service) { svc = s })
	b.Cleanup(stop)
	srv, err := oss.NewServer(oss.Config{MDS: []string{addr}, OSTs: []string{b.TempDir(), b.TempDir()},
		Listen: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ossDone := make(chan error, 1)
	go func() { ossDone <- srv.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-ossDone
		_ = srv.Close()
	})
	c := rpc.NewClient(rpc.ClientConfig{Secret: testSecret, Logger: quietLogger()})
	b.Cleanup(func() { _ = c.Close() })
	e := &wireEnv{ctx: context.Background(), c: c, addr: addr, oss: srv, s: svc}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var conn proto.ConnectResp
		if err := c.Call(e.ctx, addr, proto.OpConnect, &proto.ConnectReq{FSName: "wirefs", ClientID: "bench"}, &conn); err != nil {
			b.Fatal(err)
		}
		if len(conn.OSTs) == 2 && conn.OSTs[0].Active && conn.OSTs[1].Active {
			e.session = conn.Session
			return e
		}
		if time.Now().After(deadline) {
			b.Fatalf("OSTs did not register: %+v", conn.OSTs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// create does what a create through FUSE asks of the MDS: look the name
// up (it is missing), create the file and close it unwritten.
func (e *wireEnv) create(b *testing.B, name string) {
	var entry proto.EntryResp
	err := e.c.Call(e.ctx, e.addr, proto.OpLookup, &proto.LookupReq{Parent: RootIno, Name: name}, &entry)
	if !errors.Is(err, syscall.ENOENT) {
		b.Fatalf("lookup of a new name: %v", err)
	}
	var f proto.OpenResp
	err = e.c.Call(e.ctx, e.addr, proto.OpCreate, &proto.CreateReq{Session: e.session, Parent: RootIno, Name: name,
		Mode: 0o644, Umask: 0o022, Flags: syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL}, &f)
	if err != nil {
		b.Fatal(err)
	}
	var attr proto.AttrResp
	if err := e.c.Call(e.ctx, e.addr, proto.OpClose, &proto.CloseReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle}, &attr); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWireCreate creates empty files over the wire, as touch does.
func BenchmarkWireCreate(b *testing.B) {
	e := newWireEnv(b)
	i := 0
	for b.Loop() {
		e.create(b, fmt.Sprintf("f%08d", i))
		i++
	}
}

// BenchmarkWireStat looks up files over the wire, as stat of an uncached
// name does.
func BenchmarkWireStat(b *testing.B) {
	e := newWireEnv(b)
	const files = 1000
	for i := range files {
		e.create(b, fmt.Sprintf("f%08d", i))
	}
	i := 0
	for b.Loop() {
		var entry proto.EntryResp
		if err := e.c.Call(e.ctx, e.addr, proto.OpLookup, &proto.LookupReq{Parent: RootIno, Name: fmt.Sprintf("f%08d", i%files)}, &entry); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkWireUnlink removes files over the wire, as rm does (lookup,
// then unlink), until the MDS has had the OSS destroy every file's object
// (the default layout has one): destruction runs in the background, but
// it shares the machine with the unlinks.
func BenchmarkWireUnlink(b *testing.B) {
	e := newWireEnv(b)
	for i := range b.N {
		e.create(b, fmt.Sprintf("f%08d", i))
	}
	queued := func() int {
		n := 0
		err := e.s.view(e.ctx, func(t *mtx) error {
			start, end := t.k.destroyRange()
			return t.kv.Scan(e.ctx, start, end, 0, func(_, _ []byte) bool { n++; return true })
		})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	b.ResetTimer()
	defer func() {
		// The figure includes the objects' destruction.
		for queued() > 0 {
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range b.N {
		name := fmt.Sprintf("f%08d", i)
		var entry proto.EntryResp
		if err := e.c.Call(e.ctx, e.addr, proto.OpLookup, &proto.LookupReq{Parent: RootIno, Name: name}, &entry); err != nil {
			b.Fatal(err)
		}
		if err := e.c.Call(e.ctx, e.addr, proto.OpUnlink, &proto.UnlinkReq{Parent: RootIno, Name: name}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWireOpen opens an existing file read-only and releases it, as a
// small-file read through a mount does (the release batched later there).
func BenchmarkWireOpen(b *testing.B) {
	e := newWireEnv(b)
	const files = 1000
	for i := range files {
		e.create(b, fmt.Sprintf("f%08d", i))
	}
	inos := make([]uint64, files)
	for i := range files {
		var entry proto.EntryResp
		if err := e.c.Call(e.ctx, e.addr, proto.OpLookup, &proto.LookupReq{Parent: RootIno, Name: fmt.Sprintf("f%08d", i)}, &entry); err != nil {
			b.Fatal(err)
		}
		inos[i] = entry.Attr.Ino
	}
	i := 0
	for b.Loop() {
		var f proto.OpenResp
		ino := inos[i%files]
		if err := e.c.Call(e.ctx, e.addr, proto.OpOpen, &proto.OpenReq{Session: e.session, Ino: ino, Flags: syscall.O_RDONLY}, &f); err != nil {
			b.Fatal(err)
		}
		var attr proto.AttrResp
		if err := e.c.Call(e.ctx, e.addr, proto.OpClose, &proto.CloseReq{Session: e.session, Ino: ino, Handle: f.Handle}, &attr); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
