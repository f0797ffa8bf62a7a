package mds

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// readChangelog reads MDT 0's log after after to the safe point.
func (e *env) readChangelog(after uint64) []proto.ChangelogEntry {
	e.t.Helper()
	var out []proto.ChangelogEntry
	for {
		r, err := e.s.Changelog(e.ctx, &proto.ChangelogReq{MDT: 0, After: after, Limit: 7})
		e.must(err)
		if len(r.Entries) == 0 {
			return out
		}
		for _, en := range r.Entries {
			if en.Index <= after {
				e.t.Fatalf("entry %d returned after %d", en.Index, after)
			}
			after = en.Index
		}
		out = append(out, r.Entries...)
	}
}

// typesOf lists the Lustre names of entries' types.
func typesOf(es []proto.ChangelogEntry) []string {
	var out []string
	for _, en := range es {
		out = append(out, proto.ChangelogTypeNames[en.Type])
	}
	return out
}

func TestChangelogRecords(t *testing.T) {
	onEachEngine(t, func(t *testing.T, e *env) {
		top := e.mkdir(root, RootIno, "top", 0o777)
		d := e.mkdir(alice, top.Ino, "d", 0o755)
		f := e.createOpen(alice, d.Ino, "f", 0o644)
		_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: f.Attr.Ino, Handle: f.Handle, Wrote: true, Size: 5})
		e.must(err)
		_, err = e.s.Link(e.ctx, &proto.LinkReq{Cred: alice, Ino: f.Attr.Ino, NewParent: d.Ino, Name: "hard"})
		e.must(err)
		_, err = e.s.Symlink(e.ctx, &proto.SymlinkReq{Cred: alice, Parent: d.Ino, Name: "sym", Target: "f"})
		e.must(err)
		e.must(e.setMode(alice, f.Attr.Ino, 0o600))
		_, err = e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: alice, Ino: f.Attr.Ino, Valid: proto.SetSize, Size: 1})
		e.must(err)
		e.must(e.s.Setxattr(e.ctx, &proto.SetxattrReq{Cred: alice, Ino: f.Attr.Ino, Name: "user.x", Value: []byte("1")}))
		e.must(e.rename(alice, d.Ino, "f", top.Ino, "g", 0))
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: d.Ino, Name: "hard"}))
		e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: alice, Parent: d.Ino, Name: "sym"}))
		e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: alice, Parent: top.Ino, Name: "d"}))
		// A failed operation records nothing.
		err = e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: alice, Parent: top.Ino, Name: "d"})
		wantErrno(t, err, syscall.ENOENT)

		got := e.readChangelog(1) // after top's MKDIR
		want := []string{"MKDIR", "CREAT", "CLOSE", "HLINK", "SLINK", "SATTR", "TRUNC", "XATTR", "RENME", "UNLNK", "UNLNK", "RMDIR"}
		if !slices.Equal(typesOf(got), want) {
			t.Fatalf("types %v, want %v", typesOf(got), want)
		}
		for i, en := range got {
			if en.Index != uint64(i+2) || en.MDT != 0 || en.Time == 0 {
				t.Fatalf("entry %d: %+v", i, en)
			}
		}
		if c := got[1]; c.Ino != f.Attr.Ino || c.Parent != d.Ino || c.Name != "f" || c.Uid != alice.Uid {
			t.Fatalf("CREAT %+v", c)
		}
		if r := got[8]; r.Ino != f.Attr.Ino || r.Parent != top.Ino || r.Name != "g" || r.SrcParent != d.Ino || r.SrcName != "f" {
			t.Fatalf("RENME %+v", r)
		}
		if s := got[5]; s.Flags != proto.SetMode {
			t.Fatalf("SATTR flags %#x", s.Flags)
		}
		// The numbering goes on after a restart, above what is stored.
		e.restart()
		e.mkdir(root, RootIno, "again", 0o755)
		if got := e.readChangelog(13); len(got) != 1 || got[0].Index != 14 || got[0].Type != proto.ChangelogMkdir {
			t.Fatalf("after restart: %+v", got)
		}
	})
}

// TestChangelogSafePoint: a number in flight holds the safe point, so a
// reader never passes an entry that commits after a higher one.
func TestChangelogSafePoint(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	e.mkdir(root, RootIno, "a", 0o755)
	var slow changelogTicket
	held, err := e.s.changelogTake(e.ctx, 0, &slow) // a transaction that has not committed yet
	e.must(err)
	e.mkdir(root, RootIno, "b", 0o755)
	r, err := e.s.Changelog(e.ctx, &proto.ChangelogReq{MDT: 0})
	e.must(err)
	if r.SafePoint != held-1 || len(r.Entries) != 1 || r.Entries[0].Name != "a" {
		t.Fatalf("with %d in flight: safe point %d, entries %+v", held, r.SafePoint, r.Entries)
	}
	e.s.changelogRelease(&slow)
	if got := e.readChangelog(0); len(got) != 2 || got[1].Name != "b" || got[1].Index != held+1 {
		t.Fatalf("after release: %+v", got)
	}
}

// TestChangelogConcurrent is the probe of the numbering: creates and
// unlinks from many goroutines (on client-go's store, where they commit
// in parallel) each appear exactly once, and each file's create before its
// unlink, while a reader follows the log with a consumer's cursor.
func TestChangelogConcurrent(t *testing.T) {
	e := newEnv(t, openTiKVMock)
	u, err := e.s.ChangelogUser(e.ctx, &proto.ChangelogUserReq{Op: proto.ChangelogRegister, Name: "probe"})
	e.must(err)
	id := u.Users[0].ID
	var dirs []uint64
	for w := range 4 {
		dirs = append(dirs, e.mkdir(root, RootIno, fmt.Sprintf("w%d", w), 0o777).Ino)
	}
	const perWorker = 60
	var wg sync.WaitGroup
	stop := make(chan struct{})
	seen := map[string][]uint8{}
	var readErr error
	var cursor uint64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			r, err := e.s.Changelog(e.ctx, &proto.ChangelogReq{MDT: 0, After: cursor, Wait: 20})
			if err != nil {
				readErr = err
				return
			}
			for _, en := range r.Entries {
				if en.Index != cursor+1 && cursor != 0 {
					// Numbers may skip (an attempt that did not
					// commit), never go back.
					if en.Index <= cursor {
						readErr = fmt.Errorf("entry %d after %d", en.Index, cursor)
						return
					}
				}
				cursor = en.Index
				if en.Type == proto.ChangelogCreate || en.Type == proto.ChangelogUnlink {
					key := fmt.Sprintf("%d/%s", en.Parent, en.Name)
					seen[key] = append(seen[key], en.Type)
				}
			}
			if _, err := e.s.ChangelogUser(e.ctx, &proto.ChangelogUserReq{Op: proto.ChangelogClear, ID: id, MDT: 0, Index: cursor}); err != nil {
				readErr = err
				return
			}
			select {
			case <-stop:
				if len(r.Entries) == 0 {
					return
				}
			default:
			}
		}
	}()
	for w, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				name := fmt.Sprintf("f%d", i)
				e.create(root, dir, name, 0o644)
				if i%2 == w%2 {
					e.must(e.s.Unlink(e.ctx, &proto.UnlinkReq{Cred: root, Parent: dir, Name: name}))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readDone
	e.must(readErr)
	for w, dir := range dirs {
		for i := range perWorker {
			key := fmt.Sprintf("%d/f%d", dir, i)
			want := []uint8{proto.ChangelogCreate}
			if i%2 == w%2 {
				want = append(want, proto.ChangelogUnlink)
			}
			if !slices.Equal(seen[key], want) {
				t.Fatalf("%s: saw %v, want %v", key, seen[key], want)
			}
		}
	}
	// Purge: nothing the consumer has not cleared goes; once it is
	// deregistered, all but the newest keep do.
	n, err := e.s.purgeChangelog(e.ctx, 0, 10)
	e.must(err)
	if first := e.readChangelog(0); n == 0 || len(first) != 0 {
		t.Fatalf("purged %d; left before the cursor: %d entries", n, len(first))
	}
	e.mkdir(root, RootIno, "late", 0o755)
	_, err = e.s.ChangelogUser(e.ctx, &proto.ChangelogUserReq{Op: proto.ChangelogDeregister, ID: id})
	e.must(err)
	_, err = e.s.purgeChangelog(e.ctx, 0, 10)
	e.must(err)
	if left := e.readChangelog(0); len(left) != 1 || left[0].Name != "late" {
		t.Fatalf("after deregistering: %d entries left", len(left))
	}
}
