package mds

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// startServer formats a store and runs an MDS on it on a free port.
func startServer(t testing.TB) (addr string, stop func()) {
	t.Helper()
	return startServerLease(t, 0)
}

// startServerLease is startServer with a client session lease (0 for the
// default).
func startServerLease(t testing.TB, lease time.Duration) (addr string, stop func()) {
	t.Helper()
	return startServerWith(t, lease, nil)
}

// startServerWith is startServerLease that hands the service to onService.
func startServerWith(t testing.TB, lease time.Duration, onService func(*Service)) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kvURL := "embedded:" + filepath.Join(t.TempDir(), "mdt")
	if err := Format(ctx, kvURL, FormatOptions{FSName: "wirefs", Logger: quietLogger()}); err != nil {
		t.Fatalf("format: %v", err)
	}
	if err := Format(ctx, kvURL, FormatOptions{FSName: "wirefs", Logger: quietLogger()}); !errors.Is(err, ErrFormatted) {
		t.Fatalf("second format: %v", err)
	}
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{KV: kvURL, Listen: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), Lease: lease,
			OnListen: func(a string) { addrs <- a }, OnService: onService})
	}()
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return addr, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func TestServerOverTheWire(t *testing.T) {
	addr, stop := startServer(t)
	defer stop()
	ctx := context.Background()
	c := rpc.NewClient(rpc.ClientConfig{Secret: testSecret})
	defer c.Close()

	var reg proto.RegisterOSSResp
	err := c.Call(ctx, addr, proto.OpRegisterOSS, &proto.RegisterOSSReq{FSName: "wirefs", Addr: "127.0.0.1:1",
		OSTs: []proto.OSTAnnounce{{Index: -1, UUID: "u0", Total: 1 << 30, Avail: 1 << 30}}}, &reg)
	if err != nil || len(reg.Indices) != 1 {
		t.Fatalf("register: %v %+v", err, reg)
	}
	err = c.Call(ctx, addr, proto.OpOSSHeartbeat, &proto.OSSHeartbeatReq{Addr: "127.0.0.1:1",
		OSTs: []proto.OSTAnnounce{{Index: int64(reg.Indices[0]), UUID: "u0", Total: 1 << 30, Avail: 1 << 30}}}, nil)
	if err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	var conn proto.ConnectResp
	if err := c.Call(ctx, addr, proto.OpConnect, &proto.ConnectReq{FSName: "wirefs", ClientID: "wire"}, &conn); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if conn.Root != RootIno || len(conn.OSTs) != 1 || len(conn.MDTs) != 1 || conn.MDTs[0].Addr != addr {
		t.Fatalf("connect reply %+v (addr %s)", conn, addr)
	}
	var created proto.OpenResp
	err = c.Call(ctx, addr, proto.OpCreate, &proto.CreateReq{Session: conn.Session, Parent: conn.Root, Name: "hello",
		Mode: 0o644, Flags: syscall.O_RDWR | syscall.O_CREAT}, &created)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Handle == 0 || len(created.Layout.Components) != 1 {
		t.Fatalf("create reply %+v", created)
	}
	if err := created.Cap.Verify(testSecret, created.Attr.Ino, proto.RightWrite, time.Now()); err != nil {
		t.Fatalf("capability: %v", err)
	}
	var entry proto.EntryResp
	if err := c.Call(ctx, addr, proto.OpLookup, &proto.LookupReq{Parent: conn.Root, Name: "hello"}, &entry); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if entry.Attr.Ino != created.Attr.Ino {
		t.Fatalf("lookup gave %#x, want %#x", entry.Attr.Ino, created.Attr.Ino)
	}
	var attr proto.AttrResp
	err = c.Call(ctx, addr, proto.OpClose, &proto.CloseReq{Session: conn.Session, Ino: created.Attr.Ino,
		Handle: created.Handle, Wrote: true, Size: 6}, &attr)
	if err != nil || attr.Attr.Size != 6 {
		t.Fatalf("close: %v %+v", err, attr.Attr)
	}
	err = c.Call(ctx, addr, proto.OpLookup, &proto.LookupReq{Parent: conn.Root, Name: "missing"}, &entry)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("lookup of a missing name: %v, want ENOENT", err)
	}
	err = c.Call(ctx, addr, proto.OpUnlink, &proto.UnlinkReq{Parent: conn.Root, Name: "hello"}, nil)
	if err != nil {
		t.Fatalf("unlink: %v", err)
	}
	var st proto.StatfsResp
	if err := c.Call(ctx, addr, proto.OpStatfs, &proto.StatfsReq{}, &st); err != nil || st.Blocks == 0 {
		t.Fatalf("statfs: %v %+v", err, st)
	}
	if err := c.Call(ctx, addr, proto.OpDisconnect, &proto.DisconnectReq{Session: conn.Session}, nil); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

func TestRunRefusesUnformattedStore(t *testing.T) {
	err := Run(context.Background(), Config{KV: "embedded:" + t.TempDir(), Listen: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger()})
	if !errors.Is(err, ErrNotFormatted) || err.Error() != "mds: store not formatted: run strata format" {
		t.Fatalf("run on an empty store: %v", err)
	}
}

// TestWithOSS runs an MDS and a real OSS: the OSS registers, a file's
// objects are truncated through OpObjPunch and destroyed through
// OpObjDestroy after the unlink.
func TestWithOSS(t *testing.T) {
	addr, stop := startServer(t)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	ossDone := make(chan error, 1)
	go func() {
		ossDone <- oss.Run(ctx, oss.Config{MDS: []string{addr}, OSTs: []string{t.TempDir(), t.TempDir()},
			Listen: "127.0.0.1:0", Secret: testSecret, Logger: quietLogger(), HeartbeatInterval: 100 * time.Millisecond})
	}()
	defer func() {
		cancel()
		<-ossDone
	}()
	c := rpc.NewClient(rpc.ClientConfig{Secret: testSecret})
	defer c.Close()
	var conn proto.ConnectResp
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := c.Call(ctx, addr, proto.OpConnect, &proto.ConnectReq{FSName: "wirefs"}, &conn); err != nil {
			t.Fatal(err)
		}
		if len(conn.OSTs) == 2 && conn.OSTs[0].Active && conn.OSTs[1].Active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OSTs did not register: %+v", conn.OSTs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var f proto.OpenResp
	err := c.Call(ctx, addr, proto.OpCreate, &proto.CreateReq{Session: conn.Session, Parent: RootIno, Name: "f", Mode: 0o644,
		Flags:  syscall.O_RDWR | syscall.O_CREAT,
		Layout: layout.Spec{Components: []layout.ComponentSpec{{StripeCount: 2, StripeSize: 64 << 10, StripeOffset: -1}}}}, &f)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	ossAddr := conn.OSTs[0].Addr
	objs := f.Layout.Components[0].Objects
	data := make([]byte, 64<<10)
	for i, o := range objs {
		ref := proto.ObjRef{OST: o.OST, ID: o.ID, Stripe: uint32(i)}
		var wr proto.ObjWriteResp
		_, err := c.CallBulk(ctx, ossAddr, proto.OpObjWrite, &proto.ObjWriteReq{Cap: f.Cap, Obj: ref}, data, &wr, nil)
		if err != nil {
			t.Fatalf("write object %d: %v", i, err)
		}
	}
	var attr proto.AttrResp
	err = c.Call(ctx, addr, proto.OpClose, &proto.CloseReq{Session: conn.Session, Ino: f.Attr.Ino, Handle: f.Handle,
		Wrote: true, Size: 128 << 10}, &attr)
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	objSize := func(i int) (bool, int64) {
		t.Helper()
		ref := proto.ObjRef{OST: objs[i].OST, ID: objs[i].ID, Stripe: uint32(i)}
		var ga proto.ObjGetattrResp
		if err := c.Call(ctx, ossAddr, proto.OpObjGetattr, &proto.ObjGetattrReq{Cap: f.Cap, Obj: ref}, &ga); err != nil {
			t.Fatalf("object getattr: %v", err)
		}
		return ga.Exists, ga.Size
	}
	err = c.Call(ctx, addr, proto.OpSetattr, &proto.SetattrReq{Ino: f.Attr.Ino, Valid: proto.SetSize, Size: 10 << 10}, &attr)
	if err != nil || attr.Attr.Size != 10<<10 {
		t.Fatalf("truncate: %v %+v", err, attr.Attr)
	}
	if _, s0 := objSize(0); s0 != 10<<10 {
		t.Fatalf("object 0 size %d after truncate, want %d", s0, 10<<10)
	}
	if _, s1 := objSize(1); s1 != 0 {
		t.Fatalf("object 1 size %d after truncate, want 0", s1)
	}
	if err := c.Call(ctx, addr, proto.OpUnlink, &proto.UnlinkReq{Parent: RootIno, Name: "f"}, nil); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	for i := range objs {
		for {
			if exists, _ := objSize(i); !exists {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("object %d not destroyed", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
