package mds

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// shardTxn begins a raw transaction on the env's store, as the service's
// own would (without retries), for tests that interleave two by hand.
func (e *env) shardTxn() (kv.Tx, *mtx) {
	e.t.Helper()
	tx, err := e.db.Engine.Begin(e.ctx, true)
	e.must(err)
	return tx, e.s.newMtx(e.ctx, tx)
}

// namesInShards returns two names whose changes go to different shards,
// and one more in the first's shard.
func namesInShards() (a, b, a2 string) {
	a = "n0"
	for i := 1; b == "" || a2 == ""; i++ {
		n := fmt.Sprintf("n%d", i)
		switch {
		case shardOf(n) != shardOf(a) && b == "":
			b = n
		case shardOf(n) == shardOf(a) && a2 == "":
			a2 = n
		}
	}
	return a, b, a2
}

// testDirShards checks, on each engine, the conflicts the directory change
// shards promise: two changes in one directory through names of different
// shards both commit (no conflict storm on the directory), two through
// one shard do not both commit, and removing the directory conflicts with
// a change through any shard, whichever commits first.
func testDirShards(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755).Ino
	a, b, a2 := namesInShards()
	dirOf := func(m *mtx) *inode {
		in, err := m.dir(d)
		e.must(err)
		return in
	}
	touch := func(m *mtx, name string) {
		e.must(m.touchEntry(dirOf(m), name, 0))
	}
	commit := func(tx kv.Tx) error { return tx.Commit(e.ctx) }

	// Different shards: both commit.
	tx1, m1 := e.shardTxn()
	tx2, m2 := e.shardTxn()
	touch(m1, a)
	touch(m2, b)
	e.must(commit(tx1))
	if err := commit(tx2); err != nil {
		t.Fatalf("changes through different shards of one directory conflicted: %v", err)
	}

	// One shard: the second to commit fails.
	tx1, m1 = e.shardTxn()
	tx2, m2 = e.shardTxn()
	touch(m1, a)
	touch(m2, a2)
	e.must(commit(tx1))
	if err := commit(tx2); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("two changes through one shard both committed (second: %v)", err)
	}

	// Removal against a change, both orders.
	for _, removeFirst := range []bool{false, true} {
		tx1, m1 = e.shardTxn()
		tx2, m2 = e.shardTxn()
		touch(m1, b)
		e.must(m2.dropShards(d))
		first, second := tx1, tx2
		if removeFirst {
			first, second = tx2, tx1
		}
		e.must(commit(first))
		if err := commit(second); !errors.Is(err, kv.ErrConflict) {
			t.Fatalf("remove first %v: a change and the directory's removal both committed (second: %v)", removeFirst, err)
		}
	}
}

// testRmdirCreateRace races rmdir of a directory against a create and a
// mkdir in it, many rounds: never may both succeed (the entry would be
// left in a removed directory); the loser fails ENOTEMPTY or ENOENT.
func testRmdirCreateRace(t *testing.T, open opener) {
	e := newEnv(t, open)
	for round := range 40 {
		name := fmt.Sprintf("d%d", round)
		d := e.mkdir(root, RootIno, name, 0o755).Ino
		start := make(chan struct{})
		var wg sync.WaitGroup
		var rmErr, mkErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			rmErr = e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: RootIno, Name: name})
		}()
		go func() {
			defer wg.Done()
			<-start
			if round%2 == 0 {
				var r *proto.OpenResp
				r, mkErr = e.s.Create(e.ctx, &proto.CreateReq{Cred: root, Session: e.session, Parent: d, Name: "f",
					Mode: 0o644, Flags: syscall.O_RDONLY | syscall.O_CREAT})
				if mkErr == nil {
					e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle})
				}
			} else {
				_, mkErr = e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d, Name: "s", Mode: 0o755, MDT: -1})
			}
		}()
		close(start)
		wg.Wait()
		switch {
		case rmErr == nil && mkErr == nil:
			t.Fatalf("round %d: rmdir and a create in the directory both succeeded", round)
		case rmErr != nil && !errors.Is(rmErr, syscall.ENOTEMPTY):
			t.Fatalf("round %d: rmdir: %v", round, rmErr)
		case mkErr != nil && !errors.Is(mkErr, syscall.ENOENT):
			t.Fatalf("round %d: create: %v", round, mkErr)
		}
	}
}

// testDirTimesAndLinks checks a directory's attributes with its changes in
// shards: link counts through mkdir, rename and rmdir, mtime from each
// change, and an explicit mtime standing over earlier changes.
func testDirTimesAndLinks(t *testing.T, open opener) {
	e := newEnv(t, open)
	a := e.mkdir(root, RootIno, "a", 0o755).Ino
	b := e.mkdir(root, RootIno, "b", 0o755).Ino
	for i := range 20 {
		e.mkdir(root, a, fmt.Sprintf("s%d", i), 0o755)
	}
	if got := e.getattr(a).Nlink; got != 22 {
		t.Fatalf("a has %d links after 20 mkdirs, want 22", got)
	}
	for i := range 5 {
		e.must(e.rename(root, a, fmt.Sprintf("s%d", i), b, fmt.Sprintf("m%d", i), 0))
	}
	if ga, gb := e.getattr(a).Nlink, e.getattr(b).Nlink; ga != 17 || gb != 7 {
		t.Fatalf("after 5 moves a has %d links, b %d; want 17 and 7", ga, gb)
	}
	e.must(e.s.Rmdir(e.ctx, &proto.RmdirReq{Cred: root, Parent: b, Name: "m0"}))
	got, err := e.lookup(root, RootIno, "b")
	e.must(err)
	if got.Nlink != 6 {
		t.Fatalf("lookup: b has %d links after an rmdir, want 6", got.Nlink)
	}
	page, err := e.s.Readdir(e.ctx, &proto.ReaddirReq{Cred: root, Ino: RootIno, Plus: true})
	e.must(err)
	for _, de := range page.Entries {
		if de.Name == "a" && de.Attr.Nlink != 17 {
			t.Fatalf("readdirplus: a has %d links, want 17", de.Attr.Nlink)
		}
	}

	before := e.getattr(b).Mtime
	e.clock.Advance(1e9)
	e.create(root, b, "f", 0o644)
	if got := e.getattr(b).Mtime; got <= before {
		t.Fatalf("mtime %d after a create, was %d", got, before)
	}
	r, err := e.s.Setattr(e.ctx, &proto.SetattrReq{Cred: root, Ino: b, Valid: proto.SetMtime, Mtime: 1_000_000_000})
	e.must(err)
	if r.Attr.Mtime != 1_000_000_000 || e.getattr(b).Mtime != 1_000_000_000 {
		t.Fatalf("mtime %d (reply %d) after setting it to 1e9", e.getattr(b).Mtime, r.Attr.Mtime)
	}
	if r.Attr.Nlink != 6 {
		t.Fatalf("setattr reply: %d links, want 6", r.Attr.Nlink)
	}
}

// testSubdirLimit: the subdirectory limit holds with the counts in shards.
// A directory whose inode already counts near the limit is checked exactly
// (every shard read), and a shard whose delta grows large has the deltas
// of all moved into the inode, so the cheap check stays sound.
func testSubdirLimit(t *testing.T, open opener) {
	e := newEnv(t, open)
	d := e.mkdir(root, RootIno, "d", 0o755).Ino
	setBase := func(n uint32) {
		e.must(e.s.update(e.ctx, func(m *mtx) error {
			in, err := m.dir(d)
			if err != nil {
				return err
			}
			in.Nlink = n
			m.put(in)
			return nil
		}))
	}
	setBase(maxLinks - 5) // as if 64,993 subdirectories were counted there
	made := 0
	var err error
	for i := range 10 {
		if _, err = e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: root, Parent: d, Name: fmt.Sprintf("s%d", i), Mode: 0o755, MDT: -1}); err != nil {
			break
		}
		made++
	}
	if made != 5 || !errors.Is(err, syscall.EMLINK) {
		t.Fatalf("made %d subdirectories before %v; want 5, then EMLINK", made, err)
	}
	if got := e.getattr(d).Nlink; got != maxLinks {
		t.Fatalf("%d links at the limit, want %d", got, maxLinks)
	}

	// A shard near its bound: the next subdirectory through it moves
	// every delta into the inode.
	d2 := e.mkdir(root, RootIno, "d2", 0o755).Ino
	name := "x"
	e.must(e.s.update(e.ctx, func(m *mtx) error {
		sh, err := m.shard(d2, shardOf(name))
		if err != nil {
			return err
		}
		sh.Nlink = maxLinks/(2*dirShards) - 1
		return m.setRecord(m.k.dirShard(d2, shardOf(name)), sh)
	}))
	before := e.getattr(d2).Nlink
	e.mkdir(root, d2, name, 0o755)
	if got := e.getattr(d2).Nlink; got != before+1 {
		t.Fatalf("links %d after a mkdir, want %d", got, before+1)
	}
	e.must(e.s.view(e.ctx, func(m *mtx) error {
		sh, err := m.shard(d2, shardOf(name))
		if err != nil {
			return err
		}
		in, err := m.dir(d2)
		if err != nil {
			return err
		}
		// The deltas moved into the inode; the new subdirectory's
		// link went to the shard after that.
		if sh.Nlink != 1 || in.Nlink != before {
			t.Errorf("after the exact count: shard delta %d, inode %d; want 1 and %d", sh.Nlink, in.Nlink, before)
		}
		return nil
	}))
}
