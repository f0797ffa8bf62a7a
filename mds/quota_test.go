package mds

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

func (e *env) quota(typ uint8, id uint32) *proto.QuotaResp {
	e.t.Helper()
	r, err := e.s.Quota(e.ctx, &proto.QuotaReq{Cred: root, Type: typ, ID: id})
	e.must(err)
	return r
}

func (e *env) setQuota(typ uint8, id uint32, valid uint32, l proto.QuotaLimits) {
	e.t.Helper()
	_, err := e.s.SetQuota(e.ctx, &proto.SetQuotaReq{Cred: root, Type: typ, ID: id, Valid: valid, Limits: l})
	e.must(err)
}

// closeWith closes an open reply's handle reporting a write to size.
func (e *env) closeWith(r *proto.OpenResp, size uint64) {
	e.t.Helper()
	_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle, Wrote: true, Size: size})
	e.must(err)
}

func TestQuotaUsage(t *testing.T) {
	onEachEngine(t, func(t *testing.T, e *env) {
		d := e.mkdir(root, RootIno, "d", 0o777)
		_, err := e.s.Project(e.ctx, &proto.ProjectReq{Cred: root, Ino: d.Ino, SetID: true, Project: 7, SetInherit: true, Inherit: true})
		e.must(err)
		for i := range 3 {
			e.closeWith(e.createOpen(alice, d.Ino, fmt.Sprintf("f%d", i), 0o644), 1000)
		}
		sub := e.mkdir(alice, d.Ino, "sub", 0o755)
		e.closeWith(e.createOpen(alice, sub.Ino, "deep", 0o644), 5)
		if u := e.quota(proto.QuotaUser, alice.Uid); u.Inodes != 5 || u.Bytes != 3005 {
			t.Fatalf("alice: %+v", u)
		}
		if g := e.quota(proto.QuotaGroup, alice.Gid); g.Inodes != 5 || g.Bytes != 3005 {
			t.Fatalf("alice's group: %+v", g)
		}
		// The project goes down the tree; the directory itself counts.
		if p := e.quota(proto.QuotaProject, 7); p.Inodes != 6 || p.Bytes != 3005 {
			t.Fatalf("project 7: %+v", p)
		}
		pr, err := e.s.Project(e.ctx, &proto.ProjectReq{Cred: alice, Ino: sub.Ino})
		e.must(err)
		if pr.Project != 7 || !pr.Inherit {
			t.Fatalf("subdirectory project %+v", pr)
		}
		_, err = e.s.Project(e.ctx, &proto.ProjectReq{Cred: bob, Ino: sub.Ino, SetID: true, Project: 9})
		wantErrno(t, err, syscall.EPERM)

		// chown moves usage; truncate and unlink give it back.
		f0, err := e.lookup(root, d.Ino, "f0")
		e.must(err)
		_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f0.Ino, Valid: proto.SetUid, Uid: bob.Uid})
		e.must(err)
		_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: f0.Ino, Valid: proto.SetSize, Size: 10})
		e.must(err)
		if u, b := e.quota(proto.QuotaUser, alice.Uid), e.quota(proto.QuotaUser, bob.Uid); u.Inodes != 4 || u.Bytes != 2005 || b.Inodes != 1 || b.Bytes != 10 {
			t.Fatalf("after chown and truncate: alice %+v, bob %+v", u, b)
		}
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: d.Ino, Name: "f1"}))
		if u := e.quota(proto.QuotaUser, alice.Uid); u.Inodes != 3 || u.Bytes != 1005 {
			t.Fatalf("after unlink: %+v", u)
		}
		// Usage is in the store with the changes: a restart keeps it.
		e.restart()
		if u := e.quota(proto.QuotaUser, alice.Uid); u.Inodes != 3 || u.Bytes != 1005 {
			t.Fatalf("after restart: %+v", u)
		}
		_, err = e.s.Quota(e.ctx, &proto.QuotaReq{Cred: bob, Type: proto.QuotaUser, ID: alice.Uid})
		wantErrno(t, err, syscall.EPERM)
		_, err = e.s.SetQuota(e.ctx, &proto.SetQuotaReq{Cred: alice, Type: proto.QuotaUser, ID: alice.Uid, Valid: proto.SetInodeHard})
		wantErrno(t, err, syscall.EPERM)
	})
}

// TestQuotaInodeLimitRaces is the probe of the inode limit: creates by one
// user, group or project from two services (as two MDSes) at once stop
// exactly at the hard limit.
func TestQuotaInodeLimitRaces(t *testing.T) {
	for _, typ := range []uint8{proto.QuotaUser, proto.QuotaGroup, proto.QuotaProject} {
		t.Run(quotaTypeName(typ), func(t *testing.T) {
			e := newEnv(t, openTiKVMock)
			other, err := NewService(e.ctx, e.db, ServiceOptions{Secret: testSecret, ObjectIO: e.io, Logger: quietLogger(),
				Now: e.clock.Now, MDTLease: time.Hour, Addr: "other"})
			e.must(err)
			oc, err := other.Connect(e.ctx, &proto.ConnectReq{FSName: "testfs"})
			e.must(err)
			e.must(other.OSSHeartbeat(e.ctx, &proto.OSSHeartbeatReq{OSTs: []proto.OSTAnnounce{{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3}}}))
			d := e.mkdir(root, RootIno, "d", 0o777)
			_, err = e.s.Project(e.ctx, &proto.ProjectReq{Cred: root, Ino: d.Ino, SetID: true, Project: 42, SetInherit: true, Inherit: true})
			e.must(err)
			id := map[uint8]uint32{proto.QuotaUser: alice.Uid, proto.QuotaGroup: alice.Gid, proto.QuotaProject: 42}[typ]
			// A directory per worker: creates in one directory conflict
			// on it anyway, and only the quota rule may keep these apart.
			var dirs []uint64
			for w := range 6 {
				dirs = append(dirs, e.mkdir(root, d.Ino, fmt.Sprintf("w%d", w), 0o777).Ino)
			}
			const limit = 40
			e.setQuota(typ, id, proto.SetInodeHard, proto.QuotaLimits{InodeHard: limit})
			base := e.quota(typ, id).Inodes // the directory, for the project
			var made, refused atomic.Int64
			var wg sync.WaitGroup
			for w := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, session := e.s, e.session
					if w%2 == 1 {
						s, session = other, oc.Session
					}
					for i := range 10 {
						_, err := s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: session, Parent: dirs[w],
							Name: fmt.Sprintf("w%d-%d", w, i), Mode: 0o644, Flags: syscall.O_RDONLY | syscall.O_CREAT | syscall.O_EXCL})
						switch {
						case err == nil:
							made.Add(1)
						case errors.Is(err, syscall.EDQUOT):
							refused.Add(1)
						default:
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if got := e.quota(typ, id).Inodes; got != limit || made.Load() != limit-base || refused.Load() != 60-(limit-base) {
				t.Fatalf("usage %d, made %d, refused %d; want usage %d", got, made.Load(), refused.Load(), limit)
			}
		})
	}
}

func TestQuotaSoftAndBlocks(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	d := e.mkdir(root, RootIno, "d", 0o777)
	e.setQuota(proto.QuotaUser, alice.Uid, proto.SetInodeSoft|proto.SetInodeHard|proto.SetBlockHard,
		proto.QuotaLimits{InodeSoft: 2, InodeHard: 100, BlockHard: 20 << 20})
	for i := range 3 {
		e.closeWith(e.createOpen(alice, d.Ino, fmt.Sprintf("s%d", i), 0o644), 0)
	}
	q := e.quota(proto.QuotaUser, alice.Uid)
	if q.Limits.InodeGrace == 0 {
		t.Fatalf("past the soft limit with no grace: %+v", q)
	}
	// Past the grace, the soft limit holds like a hard one.
	e.clock.Advance(quotaGrace + time.Hour)
	e.heartbeat()
	_, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: d.Ino, Name: "late", Mode: 0o644,
		Flags: syscall.O_RDWR | syscall.O_CREAT})
	wantErrno(t, err, syscall.EDQUOT)
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: d.Ino, Name: "s2"}))
	if q := e.quota(proto.QuotaUser, alice.Uid); q.Limits.InodeGrace != 0 {
		t.Fatalf("back under the soft limit, grace still %d", q.Limits.InodeGrace)
	}

	// Blocks: the open says the file is under quota, grants come a qunit
	// at a time, and stop at the hard limit.
	f := e.createOpen(alice, d.Ino, "big", 0o644)
	if f.Attr.Flags&proto.AttrFlagQuota == 0 {
		t.Fatal("open of a file with block limits not flagged")
	}
	g, err := e.s.QuotaGrant(e.ctx, &proto.QuotaGrantReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, End: 1 << 20})
	e.must(err)
	if g.End != 1<<20+proto.QuotaUnit {
		t.Fatalf("grant to %d", g.End)
	}
	e.closeWith(f, 18<<20)
	f = e.createOpen(alice, d.Ino, "more", 0o644)
	g, err = e.s.QuotaGrant(e.ctx, &proto.QuotaGrantReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, End: 2 << 20})
	e.must(err)
	if g.End != 2<<20 {
		t.Fatalf("grant near the limit: to %d, want exactly the 2 MiB asked", g.End)
	}
	_, err = e.s.QuotaGrant(e.ctx, &proto.QuotaGrantReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, End: 3 << 20})
	wantErrno(t, err, syscall.EDQUOT)
	_, err = e.s.Append(e.ctx, &proto.AppendReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, Len: 3 << 20})
	wantErrno(t, err, syscall.EDQUOT)
	// A writer's report is never refused: the data is on the OSTs.
	e.closeWith(f, 4<<20)
	if q := e.quota(proto.QuotaUser, alice.Uid); q.Bytes != 22<<20 {
		t.Fatalf("bytes %d", q.Bytes)
	}
	// Root's files without limits get no flag.
	r := e.createOpen(root, d.Ino, "roots", 0o644)
	if r.Attr.Flags&proto.AttrFlagQuota != 0 {
		t.Fatal("a file without limits flagged")
	}
}

// TestFsckQuota: usage counters that disagree with the inodes are found
// and set right.
func TestFsckQuota(t *testing.T) {
	onEngines(t, func(t *testing.T, e *fsckEnv) {
		e.populate()
		before := e.quota(proto.QuotaUser, 0)
		e.corrupt(func(t *mtx) error {
			var u quotaUsage
			if _, err := t.getRecord(t.k.quotaUsage(proto.QuotaUser, 0, 3), &u); err != nil {
				return err
			}
			u.Inodes, u.Bytes = u.Inodes+5, u.Bytes+77
			return t.setRecord(t.k.quotaUsage(proto.QuotaUser, 0, 3), &u)
		})
		if wrong := e.quota(proto.QuotaUser, 0); wrong.Inodes != before.Inodes+5 {
			t.Fatalf("corruption did not take: %+v", wrong)
		}
		f := e.checkSeeded(fsckQuota)
		after := e.quota(proto.QuotaUser, 0)
		if after.Inodes != before.Inodes || after.Bytes != before.Bytes {
			t.Fatalf("usage %+v after repair, %+v before (finding %+v)", after, before, f)
		}
	})
}

// TestQuotaPowerLoss: usage commits with the changes it counts, so after a
// power loss of the store it still matches the inodes that survived.
func TestQuotaPowerLoss(t *testing.T) {
	e, store := lossyEnv(t)
	d := e.mkdir(root, RootIno, "d", 0o777)
	for i := range 6 {
		e.closeWith(e.createOpen(alice, d.Ino, fmt.Sprintf("kept%d", i), 0o644), uint64(100*i))
	}
	e.must(e.s.Sync(e.ctx, &proto.SyncReq{}))
	for i := range 6 {
		e.closeWith(e.createOpen(alice, d.Ino, fmt.Sprintf("lost%d", i), 0o644), 7)
	}
	e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: d.Ino, Name: "kept0"}))
	if store().Unsynced() == 0 {
		t.Fatal("nothing unsynced to lose: the test proves nothing")
	}
	e.powerLoss(store())
	if u := e.quota(proto.QuotaUser, alice.Uid); u.Inodes != 6 || u.Bytes != 1500 {
		t.Fatalf("usage after the power loss: %+v, want the 6 synced files", u)
	}
	var findings []proto.FsckFinding
	req := &proto.FsckReq{Checkers: []string{fsckQuota}}
	for page := uint64(1); ; page++ {
		res, err := e.s.Fsck(e.ctx, req)
		e.must(err)
		findings = append(findings, res.Findings...)
		if res.Done {
			break
		}
		req = &proto.FsckReq{Run: res.Run, Page: page}
	}
	if len(findings) > 0 {
		t.Fatalf("fsck after the power loss: %+v", findings)
	}
}
