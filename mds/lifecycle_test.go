package mds

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

func testOrphans(t *testing.T, open opener) {
	e := newEnv(t, open)
	r := e.createOpen(root, RootIno, "f", 0o644)
	ino := r.Attr.Ino
	ro, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: ino, Flags: syscall.O_RDONLY})
	e.must(err)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}))
	e.wantNoEntry(RootIno, "f")
	if a := e.getattr(ino); a.Nlink != 0 {
		t.Fatalf("orphan nlink %d", a.Nlink)
	}
	if !e.isOrphan(ino) || e.queueLen() != 0 {
		t.Fatal("unlinked open file not an orphan")
	}
	// An orphan can still be written, and linked no more.
	_, err = e.s.SetSize(e.ctx, &proto.SetSizeReq{Ino: ino, Handle: r.Handle, Size: 10})
	e.must(err)
	_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: root, Ino: ino, NewParent: RootIno, Name: "back"})
	wantErrno(t, err, syscall.ENOENT)
	// Nothing is destroyed while a handle remains.
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: r.Handle, Wrote: true, Size: 20})
	e.must(err)
	if !e.isOrphan(ino) || e.queueLen() != 0 {
		t.Fatal("orphan destroyed with a handle open")
	}
	if n, err := e.s.reapOrphans(e.ctx); err != nil || n != 0 {
		t.Fatalf("reaper took an open orphan: %d %v", n, err)
	}
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: ro.Handle})
	e.must(err)
	if e.isOrphan(ino) || e.queueLen() != 1 {
		t.Fatalf("last close: orphan %v queue %d", e.isOrphan(ino), e.queueLen())
	}
	_, err = e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: ino})
	wantErrno(t, err, syscall.ENOENT)
	done, left, err := e.s.drainDestroyQueue(e.ctx)
	e.must(err)
	if done != 1 || left != 0 || e.queueLen() != 0 {
		t.Fatalf("drain: done %d left %d queue %d", done, left, e.queueLen())
	}
	if got := e.io.destroyedInos(); !slices.Equal(got, []uint64{ino}) {
		t.Fatalf("destroyed %v", got)
	}
}

// testOpenUnlinkRace opens and closes a file from many goroutines while it
// is unlinked: whatever the interleaving, once every handle is closed the
// file is destroyed exactly once and no orphan is left.
func testOpenUnlinkRace(t *testing.T, open opener) {
	e := newEnv(t, open)
	for round := range 5 {
		name := fmt.Sprintf("f%d", round)
		ino := e.create(root, RootIno, name, 0o644).Ino
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					r, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: ino, Flags: syscall.O_RDWR})
					if errors.Is(err, syscall.ENOENT) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: r.Handle, Wrote: true, Size: 1}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: name}))
		wg.Wait()
		if _, err := e.s.Getattr(e.ctx, &proto.GetattrReq{Ino: ino}); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("round %d: file survives: %v", round, err)
		}
		if e.isOrphan(ino) || e.s.open.count(ino) != 0 || e.queueLen() != round+1 {
			t.Fatalf("round %d: orphan %v, handles %d, queue %d", round, e.isOrphan(ino), e.s.open.count(ino), e.queueLen())
		}
	}
}

func testDestroyQueue(t *testing.T, open opener) {
	e := newEnv(t, open)
	var inos []uint64
	for i := range 5 {
		r := e.create(root, RootIno, fmt.Sprintf("f%d", i), 0o644)
		inos = append(inos, r.Ino)
	}
	e.io.setFail(syscall.EHOSTUNREACH)
	for i := range 5 {
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: fmt.Sprintf("f%d", i)}))
	}
	done, left, err := e.s.drainDestroyQueue(e.ctx)
	e.must(err)
	if done != 0 || left != 5 || e.queueLen() != 5 {
		t.Fatalf("failing OSS: done %d left %d queue %d", done, left, e.queueLen())
	}
	e.io.setFail(nil)
	// The worker drains the queue once kicked.
	ctx, cancel := e.ctxWithCancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.s.runDestroyWorker(ctx)
	}()
	e.s.kickDestroy()
	deadline := time.Now().Add(10 * time.Second)
	for e.queueLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("worker left %d entries", e.queueLen())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	got := e.io.destroyedInos()
	slices.Sort(got)
	if !slices.Equal(got, inos) {
		t.Fatalf("destroyed %v, want %v", got, inos)
	}
}

func testLeaseExpiry(t *testing.T, open opener) {
	e := newEnv(t, open)
	r := e.createOpen(root, RootIno, "f", 0o644)
	other, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "other"})
	e.must(err)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}))
	e.clock.Advance(20 * time.Second)
	_, err = e.s.Renew(e.ctx, &proto.RenewReq{Session: other.Session})
	e.must(err)
	e.clock.Advance(20 * time.Second)
	e.s.reapSessions(e.ctx, e.clock.Now())
	if e.s.open.count(r.Attr.Ino) != 0 {
		t.Fatal("expired session's handle still open")
	}
	if e.isOrphan(r.Attr.Ino) || e.queueLen() != 1 {
		t.Fatal("expired session's orphan not destroyed")
	}
	_, err = e.s.Renew(e.ctx, &proto.RenewReq{Session: e.session})
	wantErrno(t, err, syscall.ENOTCONN)
	if _, err := e.s.Renew(e.ctx, &proto.RenewReq{Session: other.Session}); err != nil {
		t.Fatalf("renewed session expired: %v", err)
	}
	_, err = e.s.Open(e.ctx, &proto.OpenReq{Session: e.session, Ino: RootIno})
	wantErrno(t, err, syscall.ENOTCONN)
	// Disconnect closes handles too.
	e.heartbeat()
	r2, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: other.Session, Parent: RootIno, Name: "g", Flags: syscall.O_RDWR})
	e.must(err)
	e.must(e.s.Disconnect(e.ctx, &proto.DisconnectReq{Session: other.Session}))
	if e.s.open.count(r2.Attr.Ino) != 0 {
		t.Fatal("disconnect left a handle open")
	}
}

func testOrphansAfterRestart(t *testing.T, open opener) {
	e := newEnv(t, open)
	r := e.createOpen(root, RootIno, "f", 0o644)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: RootIno, Name: "f"}))
	e.restart()
	if !e.isOrphan(r.Attr.Ino) {
		t.Fatal("orphan lost in restart")
	}
	// The handle open for writing came back from the store: the file is
	// kept while its client may come back to use it.
	n, err := e.s.reapOrphans(e.ctx)
	e.must(err)
	if n != 0 || !e.isOrphan(r.Attr.Ino) {
		t.Fatalf("an orphan still open before the restart was reaped (%d) after it", n)
	}
	// Its client never comes back: when the recovery window and its
	// session's clock run out, the handle closes and the orphan goes.
	e.clock.Advance(2 * time.Minute)
	e.s.reapSessions(e.ctx, e.clock.Now())
	if e.isOrphan(r.Attr.Ino) || e.queueLen() != 1 {
		t.Fatalf("orphan of an evicted client: orphan %v, queue %d", e.isOrphan(r.Attr.Ino), e.queueLen())
	}
}

// testConcurrentCreates creates files in one directory from many
// goroutines through two services over one store (as two MDSes):
// conflicts on the directory are retried and no entry is lost.
func testConcurrentCreates(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o777)
	other, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(), Now: e.clock.Now})
	e.must(err)
	oc, err := other.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	e.must(other.OSSHeartbeat(e.ctx, &proto.OSSHeartbeatReq{OSTs: []proto.OSTAnnounce{{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3}}}))
	const workers, each = 16, 25
	var wg sync.WaitGroup
	inos := make([][]uint64, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, session := e.s, e.session
			if w%2 == 1 {
				s, session = other, oc.Session
			}
			for i := range each {
				name := fmt.Sprintf("w%02d-%03d", w, i)
				var ino uint64
				if i%4 == 3 {
					r, err := s.Mkdir(e.ctx, &proto.MkdirReq{Cred: alice, Parent: d.Ino, Name: name, Mode: 0o755, MDT: -1})
					if err != nil {
						t.Error(err)
						return
					}
					ino = r.Attr.Ino
				} else {
					r, err := s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: session, Parent: d.Ino, Name: name,
						Mode: 0o644, Flags: syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL})
					if err != nil {
						t.Error(err)
						return
					}
					ino = r.Attr.Ino
					if _, err := s.Close(e.ctx, &proto.CloseReq{Session: session, Ino: ino, Handle: r.Handle}); err != nil {
						t.Error(err)
						return
					}
				}
				inos[w] = append(inos[w], ino)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	names := e.names(d.Ino, 100)
	if len(names) != workers*each {
		t.Fatalf("%d entries, want %d", len(names), workers*each)
	}
	seen := map[uint64]bool{}
	for _, list := range inos {
		for _, ino := range list {
			if seen[ino] {
				t.Fatalf("inode %#x handed out twice", ino)
			}
			seen[ino] = true
		}
	}
	if n := e.getattr(d.Ino).Nlink; n != 2+workers*(each/4) {
		t.Fatalf("nlink %d, want %d", n, 2+workers*(each/4))
	}
}

func testRestart(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(alice, e.mkdir(root, RootIno, "pub", 0o777).Ino, "d", 0o750)
	f := e.createOpen(alice, d.Ino, "f", 0o640)
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, Wrote: true, Size: 12345})
	e.must(err)
	e.must(e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: alice, Ino: f.Attr.Ino, Name: "user.k", Value: []byte("v")}))
	_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: d.Ino, Name: "l", Target: "f"})
	e.must(err)
	before := e.getattr(f.Attr.Ino)
	e.restart()
	got, err := e.lookup(alice, d.Ino, "f")
	e.must(err)
	if got != before {
		t.Fatalf("after restart %+v, before %+v", got, before)
	}
	x, err := e.s.Getxattr(e.ctx, &proto.GetxattrReq{Cred: alice, Ino: f.Attr.Ino, Name: "user.k"})
	e.must(err)
	if string(x.Value) != "v" {
		t.Fatalf("xattr %q", x.Value)
	}
	gl, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: f.Attr.Ino})
	e.must(err)
	if !slices.Equal(layoutObjects(&gl.Layout), layoutObjects(&f.Layout)) {
		t.Fatal("layout changed in restart")
	}
	if names := e.names(d.Ino, 0); !slices.Equal(names, []string{"f", "l"}) {
		t.Fatalf("entries %v", names)
	}
	// New inode numbers do not collide with old ones.
	n := e.create(alice, d.Ino, "new", 0o644)
	if n.Ino <= f.Attr.Ino {
		t.Fatalf("new inode %#x not above %#x", n.Ino, f.Attr.Ino)
	}
	// OSTs keep their indices when they register again by UUID.
	r, err := e.s.RegisterOSS(e.ctx, &proto.RegisterOSSReq{FSName: "testfs", Addr: "oss1:2", OSTs: []proto.OSTAnnounce{
		{Index: -1, UUID: "ost-d"}, {Index: 2, UUID: "ost-c"}, {Index: -1, UUID: "ost-e"},
	}})
	e.must(err)
	if !slices.Equal(r.Indices, []uint32{3, 2, 4}) {
		t.Fatalf("indices %v", r.Indices)
	}
}

func testTargets(t *testing.T, open opener) {
	e := newEnv(t, open)
	e.heartbeat()
	tr, err := e.s.Targets(e.ctx, &proto.TargetsReq{})
	e.must(err)
	if tr.FSName != "testfs" || len(tr.OSTs) != 4 || len(tr.MDTs) != 1 {
		t.Fatalf("targets %+v", tr)
	}
	for i, o := range tr.OSTs {
		if o.Index != uint32(i) || !o.Active || o.Used != 1<<30 {
			t.Fatalf("OST %+v", o)
		}
	}
	if tr.MDTs[0].Files == 0 || tr.MDTs[0].FFree == 0 {
		t.Fatalf("MDT usage %+v", tr.MDTs[0])
	}
	st, err := e.s.Statfs(e.ctx, &proto.StatfsReq{})
	e.must(err)
	if st.Bsize != 4096 || st.Blocks != 4*(1<<40)/4096 || st.Bavail != 4*(1<<40-1<<30)/4096 || st.Files == 0 {
		t.Fatalf("statfs %+v", st)
	}
	_, err = e.s.RegisterOSS(e.ctx, &proto.RegisterOSSReq{FSName: "otherfs", Addr: "x:1"})
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.s.RegisterOSS(e.ctx, &proto.RegisterOSSReq{FSName: "testfs", Addr: "x:1", OSTs: []proto.OSTAnnounce{{Index: 0, UUID: "impostor"}}})
	wantErrno(t, err, syscall.EEXIST)
	err = e.s.OSSHeartbeat(e.ctx, &proto.OSSHeartbeatReq{Addr: "x:1", OSTs: []proto.OSTAnnounce{{Index: 99}}})
	wantErrno(t, err, syscall.ENOENT)
	e.clock.Advance(11 * time.Second)
	tr, err = e.s.Targets(e.ctx, &proto.TargetsReq{})
	e.must(err)
	if tr.OSTs[0].Active {
		t.Fatal("silent OST still active")
	}
	c, err := e.s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	if len(c.OSTs) != 4 || len(c.MDTs) != 1 || c.LeaseMillis != 30000 {
		t.Fatalf("connect %+v", c)
	}
}

func testMultiMDT(t *testing.T, open opener) {
	e := newEnv(t, open)
	s, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
		Now: e.clock.Now, MDTs: []uint32{0, 1, 2}})
	e.must(err)
	e.s = s
	e.heartbeat()
	mdts := map[uint32]int{}
	for i := range 6 {
		a := e.mkdir(root, RootIno, fmt.Sprintf("top%d", i), 0o755)
		mdts[inoMDT(a.Ino)]++
		sub := e.mkdir(root, a.Ino, "sub", 0o755)
		if inoMDT(sub.Ino) != inoMDT(a.Ino) {
			t.Fatalf("subdirectory on MDT %d, parent on %d", inoMDT(sub.Ino), inoMDT(a.Ino))
		}
	}
	if len(mdts) != 3 || mdts[0] != 2 {
		t.Fatalf("top-level directories per MDT %v", mdts)
	}
	r, err := s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: "on2", MDT: 2})
	e.must(err)
	if inoMDT(r.Attr.Ino) != 2 {
		t.Fatalf("mkdir -i 2 gave MDT %d", inoMDT(r.Attr.Ino))
	}
	_, err = s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: RootIno, Name: "on7", MDT: 7})
	wantErrno(t, err, syscall.EINVAL)
	c, err := s.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
	e.must(err)
	e.session = c.Session
	f := e.create(root, r.Attr.Ino, "f", 0o644)
	if inoMDT(f.Ino) != 2 {
		t.Fatalf("file in an MDT 2 directory on MDT %d", inoMDT(f.Ino))
	}
	// Renames across MDTs are one transaction like any other.
	e.must(e.rename(root, r.Attr.Ino, "f", RootIno, "f", 0))
	e.wantEntry(RootIno, "f", f.Ino)
	tr, err := s.Targets(e.ctx, &proto.TargetsReq{})
	e.must(err)
	if len(tr.MDTs) != 3 {
		t.Fatalf("MDTs %+v", tr.MDTs)
	}
}
