package fuse

import (
	"os"
	"testing"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/proto"
)

func TestNodeIDSwapsRoot(t *testing.T) {
	fs := &fileSystem{root: 0x1_0000_0000_0007}
	cases := map[uint64]uint64{
		gofuse.FUSE_ROOT_ID: fs.root,
		fs.root:             gofuse.FUSE_ROOT_ID,
		0x1_0000_0000_0042:  0x1_0000_0000_0042,
		0x2_0000_0000_0001:  0x2_0000_0000_0001,
	}
	for node, ino := range cases {
		if got := fs.ino(node); got != ino {
			t.Errorf("ino(%#x) = %#x, want %#x", node, got, ino)
		}
		if got := fs.nodeID(ino); got != node {
			t.Errorf("nodeID(%#x) = %#x, want %#x", ino, got, node)
		}
	}
	same := &fileSystem{root: gofuse.FUSE_ROOT_ID}
	if same.ino(1) != 1 || same.ino(5) != 5 {
		t.Error("a root numbered 1 must map to itself")
	}
}

func TestKeepCacheNeedsUnchangedVersion(t *testing.T) {
	fs := &fileSystem{nodes: map[uint64]*node{}}
	a := proto.Attr{Ino: 9, Size: 10, Mtime: 100, DataVersion: 3}
	if fs.keepCache(&a) {
		t.Error("kept the cache of a node the kernel does not hold")
	}
	fs.ref(9, &a)
	if fs.keepCache(&a) {
		t.Error("kept the cache at the first open")
	}
	if !fs.keepCache(&a) {
		t.Error("dropped the cache of an unchanged file")
	}
	for _, change := range []func(*proto.Attr){
		func(a *proto.Attr) { a.DataVersion++ },
		func(a *proto.Attr) { a.Size++ },
		func(a *proto.Attr) { a.Mtime++ },
	} {
		change(&a)
		if fs.keepCache(&a) {
			t.Errorf("kept the cache after a change to %+v", a)
		}
		if !fs.keepCache(&a) {
			t.Error("dropped the cache of an unchanged file")
		}
	}
	fs.Forget(9, 1)
	if fs.keepCache(&a) {
		t.Error("kept the cache of a forgotten node")
	}
}

func TestReadGroupsOfThisProcess(t *testing.T) {
	want, err := os.Getgroups()
	if err != nil {
		t.Skip(err)
	}
	got := readGroups(uint32(os.Getpid()))
	if len(got) != len(want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != uint32(want[i]) {
			t.Fatalf("groups %v, want %v", got, want)
		}
	}
	var g groupCache
	if g.of(uint32(os.Getpid()), 0) != nil {
		t.Error("root gets supplementary groups looked up")
	}
}
