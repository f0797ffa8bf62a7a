package mds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// The HSM tests run on both engines: go test ./mds/ -run Hsm.
var hsmSuite = []struct {
	name string
	fn   func(t *testing.T, open opener)
}{
	{"ArchiveReleaseRestore", testHsmArchiveReleaseRestore},
	{"OneRestoreForManyReaders", testHsmOneRestore},
	{"DirtyAndOpenWriters", testHsmDirty},
	{"ReleaseAgainstWriteOpen", testHsmReleaseAgainstWriteOpen},
	{"FailedRestore", testHsmFailedRestore},
	{"SilentAgent", testHsmSilentAgent},
	{"QueueOutlivesRestart", testHsmQueueOutlivesRestart},
	{"Truncate", testHsmTruncate},
	{"ImportAndScan", testHsmImportAndScan},
	{"Access", testHsmAccess},
}

func TestHsm(t *testing.T) {
	for _, eng := range []struct {
		name string
		open opener
	}{{"embedded", openEmbedded}, {"tikv", openTiKVMock}} {
		t.Run(eng.name, func(t *testing.T) {
			for _, c := range hsmSuite {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.fn(t, eng.open)
				})
			}
		})
	}
}

// hsmFile creates a file of size bytes (as a writer reports them) and
// returns its inode.
func (e *env) hsmFile(name string, size uint64) uint64 {
	e.t.Helper()
	r := e.createOpen(root, RootIno, name, 0o644)
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: size,
		Written: []uint32{0}, WrittenGen: r.Layout.Gen})
	e.must(err)
	return r.Attr.Ino
}

// hsmReq sends a request and returns the reply.
func (e *env) hsmReq(ino uint64, action uint8) (*proto.HsmRequestResp, error) {
	return e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: root, Ino: ino, Action: action})
}

func (e *env) hsmState(ino uint64) proto.HsmState {
	e.t.Helper()
	r, err := e.s.HsmState(e.ctx, &proto.HsmStateReq{Ino: ino})
	e.must(err)
	return r.State
}

// agent registers an agent of archive 1.
func (e *env) agent(name string) uint64 {
	e.t.Helper()
	r, err := e.s.HsmRegister(e.ctx, &proto.HsmRegisterReq{Name: name, Archives: []uint32{1}})
	e.must(err)
	return r.Agent
}

// claim claims the queued actions (waiting at most a slice).
func (e *env) claim(agent uint64) []proto.HsmClaim {
	e.t.Helper()
	r, err := e.s.HsmClaim(e.ctx, &proto.HsmClaimReq{Agent: agent, Archives: []uint32{1}})
	e.must(err)
	return r.Actions
}

// run carries a claimed action out as a copytool would: start, then
// complete with errno (0: success).
func (e *env) run(c proto.HsmClaim, errno syscall.Errno) *proto.HsmWork {
	e.t.Helper()
	w, err := e.s.HsmStart(e.ctx, &proto.HsmStartReq{Ino: c.Ino, Seq: c.Seq, Attempt: c.Attempt})
	e.must(err)
	req := &proto.HsmCompleteReq{Ino: c.Ino, Seq: c.Seq, Attempt: c.Attempt, Errno: int32(errno), Bytes: w.Size, Checksum: "sum"}
	if errno != 0 {
		req.Error = errno.Error()
	}
	e.must(e.s.HsmComplete(e.ctx, req))
	return w
}

// archive archives ino through one agent and checks it ends archived.
func (e *env) archive(ino uint64, agent uint64) {
	e.t.Helper()
	if _, err := e.hsmReq(ino, proto.HsmArchive); err != nil {
		e.t.Fatal(err)
	}
	cs := e.claim(agent)
	if len(cs) != 1 || cs[0].Ino != ino || cs[0].Kind != proto.HsmArchive {
		e.t.Fatalf("claimed %+v, want one archive of %#x", cs, ino)
	}
	e.run(cs[0], 0)
	if st := e.hsmState(ino); st.Flags != proto.HsmExists|proto.HsmArchived {
		e.t.Fatalf("after archive: flags %#x %v", st.Flags, proto.HsmFlagNames(st.Flags))
	}
}

func testHsmArchiveReleaseRestore(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 3<<20)
	before := e.getattr(ino)
	lay, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: ino})
	e.must(err)
	agent := e.agent("ct")
	e.archive(ino, agent)

	r, err := e.hsmReq(ino, proto.HsmRelease)
	e.must(err)
	if r.State.Flags != proto.HsmExists|proto.HsmArchived|proto.HsmReleased {
		t.Fatalf("after release: %v", proto.HsmFlagNames(r.State.Flags))
	}
	if d := e.io.destroyedInos(); len(d) != 1 || d[0] != ino {
		t.Fatalf("release destroyed objects of %v, want %#x at once", d, ino)
	}
	a := e.getattr(ino)
	if a.Size != before.Size || a.Mtime != before.Mtime || a.Flags&proto.AttrFlagReleased == 0 || a.Blocks != 0 {
		t.Fatalf("released attrs %+v, before %+v", a, before)
	}
	rel, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: ino})
	e.must(err)
	if !rel.Layout.Released || rel.Layout.Gen != lay.Layout.Gen+1 || !rel.Layout.SameShape(&lay.Layout) {
		t.Fatalf("released layout %+v from %+v", rel.Layout, lay.Layout)
	}
	// A second release changes nothing.
	if _, err := e.hsmReq(ino, proto.HsmRelease); err != nil {
		t.Fatal(err)
	}

	r, err = e.hsmReq(ino, proto.HsmRestore)
	e.must(err)
	if r.Done || r.Seq == 0 {
		t.Fatalf("restore request: %+v", r)
	}
	cs := e.claim(agent)
	if len(cs) != 1 || cs[0].Kind != proto.HsmRestore {
		t.Fatalf("claimed %+v", cs)
	}
	w := e.run(cs[0], 0)
	if w.Layout.Released || w.Layout.Gen != rel.Layout.Gen+1 || w.Checksum != "sum" || w.Size != before.Size {
		t.Fatalf("restore work %+v", w)
	}
	after, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: ino})
	e.must(err)
	if after.Layout.Released || !after.Layout.SameShape(&lay.Layout) || after.Layout.Gen != w.Layout.Gen {
		t.Fatalf("restored layout %+v, before %+v", after.Layout, lay.Layout)
	}
	st := e.hsmState(ino)
	if st.Flags != proto.HsmExists|proto.HsmArchived || st.Action.Kind != proto.HsmRestore || st.Action.Status != proto.HsmDone {
		t.Fatalf("after restore: %+v", st)
	}
	// Still clean: it can be released again.
	if _, err := e.hsmReq(ino, proto.HsmRelease); err != nil {
		t.Fatal(err)
	}
}

func testHsmOneRestore(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	agent := e.agent("ct")
	e.archive(ino, agent)
	_, err := e.hsmReq(ino, proto.HsmRelease)
	e.must(err)
	seqs := make([]uint64, 8)
	var wg sync.WaitGroup
	for i := range seqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.hsmReq(ino, proto.HsmRestore)
			if err != nil {
				t.Error(err)
				return
			}
			seqs[i] = r.Seq
		}()
	}
	wg.Wait()
	for _, s := range seqs {
		if s != seqs[0] || s == 0 {
			t.Fatalf("readers got restore actions %v, want one", seqs)
		}
	}
	cs := e.claim(agent)
	if len(cs) != 1 {
		t.Fatalf("claimed %d actions, want 1", len(cs))
	}
	// A waiter wakes when the restore completes.
	done := make(chan error, 1)
	go func() {
		for {
			r, err := e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: root, Ino: ino, Action: proto.HsmWait, Seq: seqs[0], Wait: true})
			if errors.Is(err, syscall.EAGAIN) {
				continue
			}
			if err == nil && r.State.Flags&proto.HsmReleased != 0 {
				err = fmt.Errorf("waiter woke with the file still released: %+v", r)
			}
			done <- err
			return
		}
	}()
	e.run(cs[0], 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testHsmDirty(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	agent := e.agent("ct")
	e.archive(ino, agent)
	// A write-open of an archived file makes it dirty: release refused.
	h, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: ino, Flags: syscall.O_WRONLY})
	e.must(err)
	if st := e.hsmState(ino); st.Flags&proto.HsmDirty == 0 {
		t.Fatalf("write-open left %v", proto.HsmFlagNames(st.Flags))
	}
	_, err = e.hsmReq(ino, proto.HsmRelease)
	wantErrno(t, err, syscall.EBUSY)
	// Archived again while a writer holds it open: still dirty.
	_, err = e.hsmReq(ino, proto.HsmArchive)
	e.must(err)
	e.run(e.claim(agent)[0], 0)
	if st := e.hsmState(ino); st.Flags&proto.HsmDirty == 0 {
		t.Fatalf("archived under an open writer: %v", proto.HsmFlagNames(st.Flags))
	}
	_, err = e.hsmReq(ino, proto.HsmRelease)
	wantErrno(t, err, syscall.EBUSY)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: h.Handle, Wrote: true, Size: 2 << 20})
	e.must(err)
	e.archive(ino, agent)
	// A clean archived file open for writing elsewhere is not released.
	w, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: root, Session: e.session, Ino: ino, Flags: syscall.O_RDWR})
	e.must(err)
	_, err = e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: root, Ino: ino, Action: proto.HsmSetFlags, Clear: proto.HsmDirty})
	e.must(err)
	_, err = e.hsmReq(ino, proto.HsmRelease)
	wantErrno(t, err, syscall.EBUSY)
	_, err = e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: w.Handle})
	e.must(err)
	// never_release holds.
	_, err = e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: alice, Ino: ino, Action: proto.HsmSetFlags, Set: proto.HsmNoRelease})
	wantErrno(t, err, syscall.EPERM)
}

// testHsmReleaseAgainstWriteOpen is the snapshot-isolation probe for
// release against a write-open: two services over one store (as an MDT
// moving between MDSes), so that neither sees the other's open table and
// only the store can order them. A write-open writes the inode of a file
// under HSM and so does a release: if both commit, the open came second
// and saw the file released.
func testHsmReleaseAgainstWriteOpen(t *testing.T, open opener) {
	e := newEnv(t, open)
	other, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
		Now: e.clock.Now, Standby: true, MDTLease: time.Hour})
	e.must(err)
	sess, err := other.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs", ClientID: "other"})
	e.must(err)
	agent := e.agent("ct")
	for round := range 20 {
		ino := e.hsmFile(fmt.Sprintf("f%d", round), 1<<20)
		e.archive(ino, agent)
		start := make(chan struct{})
		var relErr, openErr error
		var opened *proto.OpenResp
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, relErr = e.hsmReq(ino, proto.HsmRelease)
		}()
		go func() {
			defer wg.Done()
			<-start
			opened, openErr = other.Open(e.ctx, &proto.OpenReq{Cred: root, Session: sess.Session, Ino: ino, Flags: syscall.O_RDWR})
		}()
		close(start)
		wg.Wait()
		e.must(openErr)
		if relErr == nil && !opened.Layout.Released {
			t.Fatalf("round %d: release committed and a write-open got the old layout", round)
		}
		if st := e.hsmState(ino); st.Flags&proto.HsmDirty == 0 {
			t.Fatalf("round %d: write-open left %v", round, proto.HsmFlagNames(st.Flags))
		}
	}
}

func testHsmFailedRestore(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	agent := e.agent("ct")
	e.archive(ino, agent)
	_, err := e.hsmReq(ino, proto.HsmRelease)
	e.must(err)
	queued := e.queueLen()
	_, err = e.hsmReq(ino, proto.HsmRestore)
	e.must(err)
	w := e.run(e.claim(agent)[0], syscall.EIO)
	st := e.hsmState(ino)
	if st.Flags&proto.HsmReleased == 0 || st.Action.Status != proto.HsmFailed || st.Action.Kind != proto.HsmRestore {
		t.Fatalf("after a failed restore: %+v", st)
	}
	if e.queueLen() != queued+1 {
		t.Fatalf("the failed restore's objects %v were not queued for destruction", w.Layout)
	}
}

func testHsmSilentAgent(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	a1 := e.agent("host-a")
	_, err := e.hsmReq(ino, proto.HsmArchive)
	e.must(err)
	c1 := e.claim(a1)[0]
	_, err = e.s.HsmStart(e.ctx, &proto.HsmStartReq{Ino: ino, Seq: c1.Seq, Attempt: c1.Attempt})
	e.must(err)
	// The watcher sees the action, then sees it not move for the timeout.
	if n, err := e.s.requeueStalled(e.ctx); err != nil || n != 0 {
		t.Fatalf("requeued %d (%v) of a live agent", n, err)
	}
	e.clock.Advance(DefaultHsmTimeout + time.Second)
	if n, err := e.s.requeueStalled(e.ctx); err != nil || n != 1 {
		t.Fatalf("requeued %d (%v), want 1", n, err)
	}
	a2 := e.agent("host-b")
	c2 := e.claim(a2)[0]
	if c2.Attempt != c1.Attempt+1 {
		t.Fatalf("second claim %+v after %+v", c2, c1)
	}
	// The first agent, back from the dead, is refused.
	err = e.s.HsmComplete(e.ctx, &proto.HsmCompleteReq{Ino: ino, Seq: c1.Seq, Attempt: c1.Attempt})
	wantErrno(t, err, syscall.ESTALE)
	// A restarted agent (same name) gets its running actions back at once.
	e.agent("host-b")
	c3 := e.claim(e.agent("host-b"))
	if len(c3) != 1 || c3[0].Attempt != c2.Attempt+1 {
		t.Fatalf("after re-registration claimed %+v", c3)
	}
	e.run(c3[0], 0)
	if st := e.hsmState(ino); st.Flags&proto.HsmArchived == 0 {
		t.Fatalf("not archived: %v", proto.HsmFlagNames(st.Flags))
	}
}

func testHsmQueueOutlivesRestart(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	agent := e.agent("ct")
	e.archive(ino, agent)
	_, err := e.hsmReq(ino, proto.HsmRelease)
	e.must(err)
	r, err := e.hsmReq(ino, proto.HsmRestore)
	e.must(err)
	e.restart()
	// The same request after the restart finds the queued restore.
	r2, err := e.hsmReq(ino, proto.HsmRestore)
	e.must(err)
	if r2.Seq != r.Seq {
		t.Fatalf("restore after restart: seq %d, want %d", r2.Seq, r.Seq)
	}
	agent = e.agent("ct")
	e.run(e.claim(agent)[0], 0)
	if st := e.hsmState(ino); st.Flags&proto.HsmReleased != 0 {
		t.Fatalf("still released: %+v", st)
	}
}

func testHsmTruncate(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 1<<20)
	agent := e.agent("ct")
	e.archive(ino, agent)
	_, err := e.hsmReq(ino, proto.HsmRelease)
	e.must(err)
	_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: ino, Valid: proto.SetSize, Size: 10})
	wantErrno(t, err, syscall.ENODATA)
	r, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: ino, Valid: proto.SetSize, Size: 0})
	e.must(err)
	if r.Attr.Size != 0 || r.Attr.Flags&proto.AttrFlagReleased != 0 {
		t.Fatalf("truncated to 0: %+v", r.Attr)
	}
	st := e.hsmState(ino)
	if st.Flags != proto.HsmExists|proto.HsmArchived|proto.HsmDirty {
		t.Fatalf("after truncate to 0: %v", proto.HsmFlagNames(st.Flags))
	}
	lay, err := e.s.GetLayout(e.ctx, &proto.GetLayoutReq{Ino: ino})
	e.must(err)
	if lay.Layout.Released || lay.Layout.Validate() != nil {
		t.Fatalf("layout after truncate to 0: %+v", lay.Layout)
	}
}

func testHsmImportAndScan(t *testing.T, open opener) {
	e := newEnv(t, open)
	dir := e.mkdir(root, RootIno, "lake", 0o755).Ino
	for i := range 5 {
		_, err := e.s.HsmImport(e.ctx, &proto.HsmImportReq{Cred: root, Parent: dir, Name: fmt.Sprintf("o%d", i), Mode: 0o644,
			Size: uint64(i) << 20, Mtime: 1234, ArchiveID: 1, Key: fmt.Sprintf("data/o%d", i), ETag: "etag"})
		e.must(err)
	}
	a, err := e.lookup(root, dir, "o3")
	e.must(err)
	if a.Size != 3<<20 || a.Mtime != 1234 || a.Flags&proto.AttrFlagReleased == 0 {
		t.Fatalf("stub attrs %+v", a)
	}
	// hsm remove of an imported file never reaches the source: it is
	// refused while released.
	_, err = e.hsmReq(a.Ino, proto.HsmRemove)
	wantErrno(t, err, syscall.EBUSY)
	_, err = e.hsmReq(a.Ino, proto.HsmRestore)
	e.must(err)
	w := e.run(e.claim(e.agent("ct"))[0], 0)
	if w.Key != "data/o3" || w.ETag != "etag" || !w.Imported {
		t.Fatalf("restore work of an import: %+v", w)
	}
	r, err := e.hsmReq(a.Ino, proto.HsmRemove)
	e.must(err)
	if !r.Done || r.State.Flags&proto.HsmArchived != 0 {
		t.Fatalf("remove of an imported file: %+v", r)
	}
	e.hsmFile("plain", 5)
	var files []proto.HsmFile
	after := uint64(0)
	for {
		page, err := e.s.HsmScan(e.ctx, &proto.HsmScanReq{MDT: 0, After: after, Limit: 2})
		e.must(err)
		files = append(files, page.Files...)
		after = page.Next
		if page.Done {
			break
		}
	}
	if len(files) != 6 {
		t.Fatalf("scan found %d files, want 6: %+v", len(files), files)
	}
	released := 0
	for _, f := range files {
		if f.Flags&proto.HsmReleased != 0 {
			released++
		}
	}
	if released != 4 {
		t.Fatalf("scan found %d released files, want 4", released)
	}
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	list, err := e.s.HsmList(ctx, &proto.HsmListReq{})
	e.must(err)
	if len(list.Actions) != 0 || len(list.Agents) != 1 {
		t.Fatalf("list: %+v", list)
	}
}

func testHsmAccess(t *testing.T, open opener) {
	e := newEnv(t, open)
	ino := e.hsmFile("f", 10)
	atime := e.getattr(ino).Atime
	access := func() {
		t.Helper()
		_, err := e.s.HsmRequest(e.ctx, &proto.HsmRequestReq{Cred: bob, Ino: ino, Action: proto.HsmAccess})
		e.must(err)
	}
	access()
	if a := e.getattr(ino).Atime; a != atime {
		t.Fatalf("atime moved within the grain: %d -> %d", atime, a)
	}
	e.clock.Advance(2 * proto.HsmAccessGrain * time.Second)
	access()
	if a := e.getattr(ino).Atime; a != e.clock.Now().UnixNano() {
		t.Fatalf("atime %d after an access past the grain, want %d", a, e.clock.Now().UnixNano())
	}
}
