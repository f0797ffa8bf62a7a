package mds

import (
	"testing"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/embedded"
	"github.com/stratafs/strata/mds/kv/tikv"
)

// suite is the metadata test suite: every case runs against every engine.
var suite = []struct {
	name string
	fn   func(t *testing.T, open opener)
}{
	{"Format", testFormat},
	{"CreateLookup", testCreateLookup},
	{"Names", testNames},
	{"Readdir", testReaddir},
	{"ReaddirUnderChurn", testReaddirUnderChurn},
	{"LinkCounts", testLinkCounts},
	{"Times", testTimes},
	{"Symlink", testSymlink},
	{"Mknod", testMknod},
	{"Rename", testRename},
	{"RenameSubtree", testRenameSubtree},
	{"RenameExchange", testRenameExchange},
	{"RenameReplaceOpen", testRenameReplaceOpen},
	{"Permissions", testPermissions},
	{"Sticky", testSticky},
	{"Setgid", testSetgid},
	{"Setattr", testSetattr},
	{"SetidClearing", testSetidClearing},
	{"Xattr", testXattr},
	{"ACLXattr", testACLXattr},
	{"ACLPermissions", testACLPermissions},
	{"ACLChmod", testACLChmod},
	{"ACLInherit", testACLInherit},
	{"Consistency", testConsistency},
	{"Open", testOpen},
	{"Truncate", testTruncate},
	{"TruncateTimes", testTruncateTimes},
	{"TruncateCrash", testTruncateCrash},
	{"SizeMerge", testSizeMerge},
	{"Append", testAppend},
	{"Layouts", testLayouts},
	{"Orphans", testOrphans},
	{"OpenUnlinkRace", testOpenUnlinkRace},
	{"DestroyQueue", testDestroyQueue},
	{"LeaseExpiry", testLeaseExpiry},
	{"OrphansAfterRestart", testOrphansAfterRestart},
	{"ConcurrentCreates", testConcurrentCreates},
	{"ConcurrentRenames", testConcurrentRenames},
	{"CrossingRenames", testCrossingRenames},
	{"DirShards", testDirShards},
	{"RmdirCreateRace", testRmdirCreateRace},
	{"DirTimesAndLinks", testDirTimesAndLinks},
	{"SubdirLimit", testSubdirLimit},
	{"Restart", testRestart},
	{"Targets", testTargets},
	{"MultiMDT", testMultiMDT},
	{"ExactlyOnce", testExactlyOnce},
	{"HandlesOutliveRestart", testHandlesOutliveRestart},
	{"LockReplay", testLockReplay},
	{"Fencing", testFencing},
}

func runSuite(t *testing.T, open opener) {
	for _, c := range suite {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, open)
		})
	}
}

func openEmbedded(t testing.TB, dir string) *kv.DB {
	t.Helper()
	e, err := embedded.Open(dir, kv.Options{Sync: "none"})
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	return &kv.DB{Engine: e}
}

func openTiKVMock(t testing.TB, dir string) *kv.DB {
	t.Helper()
	e, err := tikv.OpenMock(dir)
	if err != nil {
		t.Fatalf("open mock TiKV: %v", err)
	}
	return &kv.DB{Engine: e}
}

func TestEmbedded(t *testing.T) { runSuite(t, openEmbedded) }

func TestTiKVMock(t *testing.T) { runSuite(t, openTiKVMock) }
