package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/proto"
)

// TestCompleteDirDropsUnrecordedNames: a directory this client made is
// known completely, and a lookup of a name missing there is answered
// locally. A create reply that cannot be cached (here: the cache's change
// marks overflowed while it was in flight) must end that, or the new name
// would be "no such file" to this client from then on. (Found by make
// bench: a stat of a file strata bench had just created failed ENOENT.)
func TestCompleteDirDropsUnrecordedNames(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 1})
	c := cl.Client(t, client.Config{Consistency: client.CloseToOpen})
	c.EnableMetaLeases()
	ctx := context.Background()
	// The first calls may come before the client's first poll made its
	// session a leasing one: make directories until one is leased.
	var d proto.Attr
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		a, ttl, err := c.MkdirEntry(ctx, proto.Cred{}, 1, fmt.Sprintf("d%d", i), 0o755, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			d = a
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease on a new directory")
		}
	}
	if !c.CachedAbsentForTest(d.Ino, "f") {
		t.Fatal("a directory the client just made is not known completely")
	}
	gen := c.LeaseGenForTest()
	c.RaiseLeaseFloorForTest()
	f := proto.Attr{Ino: d.Ino + 1, Mode: proto.ModeRegular | 0o644, Nlink: 1}
	c.LeasedForTest(gen, 10_000, d.Ino, map[string]uint64{"f": f.Ino}, f)
	if c.CachedAbsentForTest(d.Ino, "f") {
		t.Fatal("a name created while the cache could not record it is answered as absent")
	}
}
