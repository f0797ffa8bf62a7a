package oss

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

var testSecret = []byte("oss-test-secret")

var quiet = slog.New(slog.DiscardHandler)

// fakeMDS answers the OSS-facing MDS opcodes: it assigns OST indices in
// registration order, records heartbeats and reports a filesystem name.
type fakeMDS struct {
	srv    *rpc.Server
	addr   string
	fsname string

	mu           sync.Mutex
	next         uint32
	transient    int           // registrations to fail with EAGAIN first
	refuse       syscall.Errno // fail every registration with this
	forget       bool          // answer the next heartbeat with ENOENT
	registers    []proto.RegisterOSSReq
	registered   chan proto.RegisterOSSReq
	heartbeatsCh chan proto.OSSHeartbeatReq
}

func startFakeMDS(t testing.TB, fsname string) *fakeMDS {
	t.Helper()
	m := &fakeMDS{
		fsname:       fsname,
		registered:   make(chan proto.RegisterOSSReq, 16),
		heartbeatsCh: make(chan proto.OSSHeartbeatReq, 1024),
	}
	m.srv = rpc.NewServer(rpc.ServerConfig{Addr: "127.0.0.1:0", Secret: testSecret, Logger: quiet})
	m.srv.Handle(proto.OpRegisterOSS, m.register)
	m.srv.Handle(proto.OpOSSHeartbeat, m.heartbeat)
	m.srv.Handle(proto.OpTargets, func(context.Context, *rpc.Request) (*rpc.Reply, error) {
		return &rpc.Reply{Body: &proto.TargetsResp{FSName: m.fsname}}, nil
	})
	if err := m.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.srv.Stop)
	m.addr = m.srv.Addr()
	return m
}

func (m *fakeMDS) register(_ context.Context, r *rpc.Request) (*rpc.Reply, error) {
	var req proto.RegisterOSSReq
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != 0 {
		return nil, fmt.Errorf("fake mds: refused: %w", m.refuse)
	}
	if m.transient > 0 {
		m.transient--
		return nil, fmt.Errorf("fake mds: busy: %w", syscall.EAGAIN)
	}
	var resp proto.RegisterOSSResp
	for _, o := range req.OSTs {
		if o.Index >= 0 {
			resp.Indices = append(resp.Indices, uint32(o.Index))
			continue
		}
		resp.Indices = append(resp.Indices, m.next)
		m.next++
	}
	m.registers = append(m.registers, req)
	m.registered <- req
	return &rpc.Reply{Body: &resp}, nil
}

func (m *fakeMDS) heartbeat(_ context.Context, r *rpc.Request) (*rpc.Reply, error) {
	var req proto.OSSHeartbeatReq
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	m.mu.Lock()
	forget := m.forget
	m.forget = false
	m.mu.Unlock()
	if forget {
		return nil, fmt.Errorf("fake mds: unknown OSS: %w", syscall.ENOENT)
	}
	select {
	case m.heartbeatsCh <- req:
	default:
	}
	return nil, nil
}

func (m *fakeMDS) registrations() []proto.RegisterOSSReq {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]proto.RegisterOSSReq(nil), m.registers...)
}

func (m *fakeMDS) waitRegistered(t testing.TB) proto.RegisterOSSReq {
	t.Helper()
	select {
	case req := <-m.registered:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("OSS did not register")
		return proto.RegisterOSSReq{}
	}
}

func (m *fakeMDS) waitHeartbeat(t testing.TB) proto.OSSHeartbeatReq {
	t.Helper()
	select {
	case req := <-m.heartbeatsCh:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
		return proto.OSSHeartbeatReq{}
	}
}

// testOSS is a running Server with a client to call it.
type testOSS struct {
	srv    *Server
	addr   string
	client *rpc.Client
	cancel context.CancelFunc
	done   chan error
}

// startOSS runs a server for dirs registered with m and waits until it has
// registered.
func startOSS(t testing.TB, m *fakeMDS, dirs ...string) *testOSS {
	t.Helper()
	ts := launchOSS(t, m, dirs...)
	m.waitRegistered(t)
	// The MDS has answered; wait for the OSS to take the indices.
	for deadline := time.Now().Add(10 * time.Second); len(*ts.srv.byIdx.Load()) < len(dirs); {
		if time.Now().After(deadline) {
			t.Fatal("OSS did not take its OST indices")
		}
		time.Sleep(time.Millisecond)
	}
	return ts
}

// launchOSS runs a server without waiting for its registration.
func launchOSS(t testing.TB, m *fakeMDS, dirs ...string) *testOSS {
	t.Helper()
	srv, err := NewServer(Config{
		MDS:               []string{m.addr},
		OSTs:              dirs,
		Listen:            "127.0.0.1:0",
		Secret:            testSecret,
		Logger:            quiet,
		HeartbeatInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	srv.cfg.OnListen = func(addr string) { listening <- addr }
	ts := &testOSS{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ctx)
		if cerr := srv.Close(); err == nil {
			err = cerr
		}
		ts.done <- err
	}()
	select {
	case ts.addr = <-listening:
	case err := <-ts.done:
		t.Fatalf("Serve: %v", err)
	}
	ts.client = rpc.NewClient(rpc.ClientConfig{Secret: testSecret, Logger: quiet})
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop ends the server and returns Serve's error; it is idempotent.
func (ts *testOSS) stop(t testing.TB) error {
	t.Helper()
	if ts.cancel == nil {
		return nil
	}
	ts.cancel()
	ts.cancel = nil
	ts.client.Close()
	select {
	case err := <-ts.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
		return nil
	}
}

func capFor(ino uint64, rights uint8) proto.Capability {
	return proto.SignCapability(testSecret, ino, rights, time.Now().Add(time.Minute))
}

func ref(ost uint32, ino uint64, seq uint32) proto.ObjRef {
	return proto.ObjRef{OST: ost, ID: layout.ObjectID{Ino: ino, Seq: seq}}
}

func (ts *testOSS) write(ctx context.Context, c proto.Capability, obj proto.ObjRef, off int64, data []byte) (int64, error) {
	var resp proto.ObjWriteResp
	_, err := ts.client.CallBulk(ctx, ts.addr, proto.OpObjWrite,
		&proto.ObjWriteReq{Cap: c, Obj: obj, Offset: off}, data, &resp, nil)
	return resp.Size, err
}

func (ts *testOSS) read(ctx context.Context, c proto.Capability, obj proto.ObjRef, off int64, buf []byte) (int, int64, error) {
	var resp proto.ObjReadResp
	n, err := ts.client.CallBulk(ctx, ts.addr, proto.OpObjRead,
		&proto.ObjReadReq{Cap: c, Obj: obj, Offset: off, Length: int64(len(buf))}, nil, &resp, buf)
	return n, resp.Size, err
}

func TestServerWriteRead(t *testing.T) {
	m := startFakeMDS(t, "")
	ts := startOSS(t, m, t.TempDir())
	ctx := context.Background()
	obj := ref(0, 100, 0)
	rw := capFor(100, proto.RightRead|proto.RightWrite)

	data := pattern(1<<20, 5)
	size, err := ts.write(ctx, rw, obj, 0, data)
	if err != nil || size != 1<<20 {
		t.Fatalf("write: size %d, %v", size, err)
	}
	buf := make([]byte, 1<<20)
	n, size, err := ts.read(ctx, capFor(100, proto.RightRead), obj, 0, buf)
	if err != nil || n != 1<<20 || size != 1<<20 || !bytes.Equal(buf, data) {
		t.Fatalf("read back: n %d size %d err %v", n, size, err)
	}
	// Short at EOF, empty past it.
	n, _, err = ts.read(ctx, rw, obj, 1<<20-10, buf[:100])
	if err != nil || n != 10 || !bytes.Equal(buf[:10], data[1<<20-10:]) {
		t.Fatalf("read at EOF: n %d err %v", n, err)
	}
	// A missing object reads as empty.
	n, size, err = ts.read(ctx, capFor(101, proto.RightRead), ref(0, 101, 0), 0, buf)
	if err != nil || n != 0 || size != 0 {
		t.Fatalf("missing object: n %d size %d err %v", n, size, err)
	}

	var attr proto.ObjGetattrResp
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: rw, Obj: obj}, &attr); err != nil {
		t.Fatal(err)
	}
	if !attr.Exists || attr.Size != 1<<20 || attr.Blocks == 0 {
		t.Fatalf("getattr %+v", attr)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjPunch, &proto.ObjPunchReq{Cap: rw, Obj: obj, Size: 4096}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjSync, &proto.ObjSyncReq{Cap: capFor(100, proto.RightRead), Obj: obj}, nil); err != nil {
		t.Fatalf("sync with a read capability: %v", err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: rw, Obj: obj}, &attr); err != nil || attr.Size != 4096 {
		t.Fatalf("after punch: %+v %v", attr, err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjDestroy, &proto.ObjDestroyReq{Cap: rw, Objs: []proto.ObjRef{obj, ref(0, 100, 1)}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: rw, Obj: obj}, &attr); err != nil || attr.Exists {
		t.Fatalf("after destroy: %+v %v", attr, err)
	}

	var st proto.OSTStatfsResp
	if err := ts.client.Call(ctx, ts.addr, proto.OpOSTStatfs, &proto.OSTStatfsReq{OST: 0}, &st); err != nil {
		t.Fatal(err)
	}
	if st.Stat.Index != 0 || st.Stat.Total == 0 || st.Stat.UUID == "" {
		t.Fatalf("statfs %+v", st.Stat)
	}

	stats := ts.srv.Stats()
	if stats.BytesWritten != 1<<20 || stats.BytesRead != 1<<20+10 || stats.Ops.Read != 3 || stats.Ops.Write != 1 || len(stats.OSTs) != 1 {
		t.Fatalf("stats %+v", stats)
	}
}

func TestServerRefusals(t *testing.T) {
	m := startFakeMDS(t, "")
	ts := startOSS(t, m, t.TempDir())
	ctx := context.Background()
	obj := ref(0, 7, 0)
	if _, err := ts.write(ctx, capFor(7, proto.RightWrite), obj, 0, []byte("precious")); err != nil {
		t.Fatal(err)
	}

	forged := capFor(7, proto.RightWrite)
	forged.MAC[0] ^= 1
	otherSecret := proto.SignCapability([]byte("not the secret"), 7, proto.RightWrite, time.Now().Add(time.Minute))
	expired := proto.SignCapability(testSecret, 7, proto.RightWrite, time.Now().Add(-time.Second))
	elevated := capFor(7, proto.RightRead)
	elevated.Rights |= proto.RightWrite // no longer matches its MAC
	cases := []struct {
		name string
		cap  proto.Capability
		obj  proto.ObjRef
		want syscall.Errno
	}{
		{"forged MAC", forged, obj, syscall.EACCES},
		{"other secret", otherSecret, obj, syscall.EACCES},
		{"elevated rights", elevated, obj, syscall.EACCES},
		{"expired", expired, obj, syscall.EKEYEXPIRED},
		{"wrong inode", capFor(8, proto.RightWrite), obj, syscall.EACCES},
		{"read-only", capFor(7, proto.RightRead), obj, syscall.EACCES},
		{"no capability", proto.Capability{}, obj, syscall.EACCES},
		{"unknown OST", capFor(7, proto.RightWrite), ref(9, 7, 0), syscall.ENODEV},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.write(ctx, tc.cap, tc.obj, 0, []byte("evil"))
			if !errors.Is(err, tc.want) {
				t.Errorf("write: %v, want %v", err, tc.want)
			}
			err = ts.client.Call(ctx, ts.addr, proto.OpObjPunch, &proto.ObjPunchReq{Cap: tc.cap, Obj: tc.obj}, nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("punch: %v, want %v", err, tc.want)
			}
			err = ts.client.Call(ctx, ts.addr, proto.OpObjDestroy, &proto.ObjDestroyReq{Cap: tc.cap, Objs: []proto.ObjRef{tc.obj}}, nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("destroy: %v, want %v", err, tc.want)
			}
		})
	}
	// Reads need the read right; sync either right.
	if _, _, err := ts.read(ctx, capFor(7, proto.RightWrite), obj, 0, make([]byte, 8)); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read with a write-only capability: %v", err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjSync, &proto.ObjSyncReq{Cap: capFor(7, 0), Obj: obj}, nil); !errors.Is(err, syscall.EACCES) {
		t.Errorf("sync with no rights: %v", err)
	}
	if _, _, err := ts.read(ctx, expired, obj, 0, make([]byte, 8)); !errors.Is(err, syscall.EKEYEXPIRED) {
		t.Errorf("read with an expired capability: %v", err)
	}
	// One foreign object makes a destroy delete nothing.
	err := ts.client.Call(ctx, ts.addr, proto.OpObjDestroy, &proto.ObjDestroyReq{Cap: capFor(7, proto.RightWrite), Objs: []proto.ObjRef{obj, ref(0, 8, 0)}}, nil)
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("destroy with a foreign object: %v", err)
	}
	var req proto.ObjReadReq
	req = proto.ObjReadReq{Cap: capFor(7, proto.RightRead), Obj: obj, Length: MaxRead + 1}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjRead, &req, nil); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("oversized read: %v", err)
	}
	req = proto.ObjReadReq{Cap: capFor(7, proto.RightRead), Obj: obj, Offset: -1, Length: 1}
	if err := ts.client.Call(ctx, ts.addr, proto.OpObjRead, &req, nil); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("negative read offset: %v", err)
	}
	if err := ts.client.Call(ctx, ts.addr, proto.OpOSTStatfs, &proto.OSTStatfsReq{OST: 5}, nil); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("statfs of an unknown OST: %v", err)
	}

	buf := make([]byte, 64)
	n, _, err := ts.read(ctx, capFor(7, proto.RightRead), obj, 0, buf)
	if err != nil || string(buf[:n]) != "precious" {
		t.Fatalf("object damaged by refused requests: %q %v", buf[:n], err)
	}
	if st := ts.srv.Stats(); st.CapDenied != uint64(3*(len(cases)-1)+4) {
		t.Errorf("CapDenied = %d", st.CapDenied)
	}
}

func TestServerConcurrentWriters(t *testing.T) {
	m := startFakeMDS(t, "")
	ts := startOSS(t, m, t.TempDir())
	ctx := context.Background()
	obj := ref(0, 55, 3)
	c := capFor(55, proto.RightRead|proto.RightWrite)
	const writers, chunk, rounds = 16, 256 << 10, 4
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				off := int64((r*writers + w) * chunk)
				if _, err := ts.write(ctx, c, obj, off, pattern(chunk, byte(r*writers+w))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	buf := make([]byte, chunk)
	for i := range writers * rounds {
		n, size, err := ts.read(ctx, c, obj, int64(i*chunk), buf)
		if err != nil || n != chunk || size != writers*rounds*chunk {
			t.Fatalf("chunk %d: n %d size %d err %v", i, n, size, err)
		}
		if !bytes.Equal(buf, pattern(chunk, byte(i))) {
			t.Fatalf("chunk %d differs", i)
		}
	}
}

func TestRegistration(t *testing.T) {
	m := startFakeMDS(t, "strata")
	// Under the lock: the race detector does not see the TCP hop between
	// this goroutine and the handler's.
	m.mu.Lock()
	m.transient = 2 // the OSS must retry
	m.mu.Unlock()
	dirs := []string{t.TempDir(), t.TempDir()}
	ts := startOSS(t, m, dirs...)
	req := m.registrations()[0]
	if req.Addr != ts.addr || len(req.OSTs) != 2 || req.OSTs[0].Index != -1 || req.OSTs[0].Total == 0 {
		t.Fatalf("first registration %+v", req)
	}
	hb := m.waitHeartbeat(t)
	if hb.Addr != ts.addr || len(hb.OSTs) != 2 || hb.OSTs[0].Index != 0 || hb.OSTs[1].Index != 1 || hb.OSTs[1].UUID != req.OSTs[1].UUID {
		t.Fatalf("heartbeat %+v", hb)
	}

	// The MDS forgets the OSS: the OSS registers again, with its indices.
	m.mu.Lock()
	m.forget = true
	m.mu.Unlock()
	again := m.waitRegistered(t)
	if again.OSTs[0].Index != 0 || again.OSTs[1].Index != 1 || again.FSName != "strata" {
		t.Fatalf("re-registration %+v", again)
	}
	if err := ts.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}

	// Indices and the filesystem name survive a restart.
	for i, dir := range dirs {
		o, err := OpenOST(dir)
		if err != nil {
			t.Fatal(err)
		}
		if id := o.Identity(); id.Index != int64(i) || id.FSName != "strata" {
			t.Fatalf("%s: identity %+v", dir, id)
		}
		o.Close()
	}
	ts = startOSS(t, m, dirs[1], dirs[0])
	if regs := m.registrations(); regs[len(regs)-1].OSTs[0].Index != 1 || regs[len(regs)-1].OSTs[1].Index != 0 {
		t.Fatalf("registration after restart %+v", regs[len(regs)-1])
	}
	if _, err := ts.write(context.Background(), capFor(1, proto.RightWrite), ref(1, 1, 0), 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirs[1], ObjectPath(layout.ObjectID{Ino: 1}))); err != nil {
		t.Fatalf("object not on OST1's directory: %v", err)
	}
}

func TestRegistrationRefused(t *testing.T) {
	m := startFakeMDS(t, "strata")
	m.mu.Lock()
	m.refuse = syscall.EXDEV
	m.mu.Unlock()
	ts := launchOSS(t, m, t.TempDir())
	select {
	case err := <-ts.done:
		if !errors.Is(err, syscall.EXDEV) {
			t.Fatalf("Serve: %v, want EXDEV", err)
		}
		ts.cancel = nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not give up on a refused registration")
	}
}

func TestForeignOSTRefused(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.SetFSName("other"); err != nil {
		t.Fatal(err)
	}
	o.SetIndex(4)
	o.Close()
	m := startFakeMDS(t, "strata")
	ts := launchOSS(t, m, dir)
	select {
	case err := <-ts.done:
		if !errors.Is(err, ErrFSMismatch) {
			t.Fatalf("Serve: %v, want ErrFSMismatch", err)
		}
		ts.cancel = nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve accepted an OST of another filesystem")
	}
	if len(m.registrations()) != 0 {
		t.Fatal("foreign OST registered")
	}
}

func TestNewServerChecks(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		o, err := OpenOST(dir)
		if err != nil {
			t.Fatal(err)
		}
		o.SetIndex(1)
		o.Close()
	}
	cfg := Config{MDS: []string{"127.0.0.1:1"}, OSTs: []string{a, b}, Secret: testSecret, Logger: quiet}
	if _, err := NewServer(cfg); err == nil {
		t.Fatal("two OSTs with one index accepted")
	}
	cfg.OSTs = []string{a, a}
	if _, err := NewServer(cfg); !errors.Is(err, ErrOSTBusy) {
		t.Fatalf("one OST twice: %v", err)
	}
	cfg.OSTs = []string{a}
	cfg.Secret = nil
	if _, err := NewServer(cfg); err == nil {
		t.Fatal("no secret accepted")
	}
	// A failed NewServer released the directories.
	cfg.Secret = testSecret
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestAdvertiseAddr(t *testing.T) {
	mds := []string{"127.0.0.1:7000"}
	for _, tc := range []struct{ configured, listen, want string }{
		{"oss1.example:7100", "0.0.0.0:7100", "oss1.example:7100"},
		{"", "10.1.2.3:7100", "10.1.2.3:7100"},
		{"", "0.0.0.0:7100", "127.0.0.1:7100"},
		{"", "[::]:7100", "127.0.0.1:7100"},
		{"", ":7100", "127.0.0.1:7100"},
	} {
		if got := advertiseAddr(tc.configured, tc.listen, mds); got != tc.want {
			t.Errorf("advertiseAddr(%q, %q) = %q, want %q", tc.configured, tc.listen, got, tc.want)
		}
	}
}

func BenchmarkServerWrite1MiB(b *testing.B) {
	benchServer(b, func(ctx context.Context, ts *testOSS, c proto.Capability, data []byte, i int) error {
		_, err := ts.write(ctx, c, ref(0, 1, uint32(i%64)), int64(i/64)*int64(len(data)), data)
		return err
	})
}

func BenchmarkServerRead1MiB(b *testing.B) {
	benchServer(b, func(ctx context.Context, ts *testOSS, c proto.Capability, data []byte, i int) error {
		_, _, err := ts.read(ctx, c, ref(0, 1, 0), 0, data)
		return err
	})
}

// benchServer runs op b.N times from parallel goroutines against one OSS
// with a 1 MiB buffer each, reporting throughput.
func benchServer(b *testing.B, op func(ctx context.Context, ts *testOSS, c proto.Capability, data []byte, i int) error) {
	m := startFakeMDS(b, "")
	ts := startOSS(b, m, b.TempDir())
	ctx := context.Background()
	c := capFor(1, proto.RightRead|proto.RightWrite)
	if _, err := ts.write(ctx, c, ref(0, 1, 0), 0, pattern(1<<20, 0)); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetBytes(1 << 20)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		data := pattern(1<<20, 1)
		for pb.Next() {
			if err := op(ctx, ts, c, data, int(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
