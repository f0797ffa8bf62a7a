package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// migBlock is the unit the migrate test writes and checks: every block
// says which block it is and which version, and its bytes follow from
// those, so a reader can tell a valid block from zeros or garbage.
const migBlock = 4096

// blockData is version v of block i.
func blockData(i, v uint64) []byte {
	b := make([]byte, migBlock)
	binary.LittleEndian.PutUint64(b[0:], i+1)
	binary.LittleEndian.PutUint64(b[8:], v)
	h := fnv.New64a()
	h.Write(b[:16])
	seed := h.Sum64()
	r := rand.New(rand.NewPCG(seed, v))
	for j := 24; j < migBlock; j += 8 {
		binary.LittleEndian.PutUint64(b[j:], r.Uint64())
	}
	binary.LittleEndian.PutUint64(b[16:], seed)
	return b
}

// checkBlock returns the version block i holds, or an error if it is not a
// valid version of block i (zeros included).
func checkBlock(i uint64, b []byte) (uint64, error) {
	if binary.LittleEndian.Uint64(b) == 0 {
		if bytes.Equal(b, make([]byte, len(b))) {
			return 0, fmt.Errorf("block %d reads as zeros", i)
		}
	}
	if got := binary.LittleEndian.Uint64(b); got != i+1 {
		return 0, fmt.Errorf("block %d holds block %d's header", i, got-1)
	}
	v := binary.LittleEndian.Uint64(b[8:])
	if !bytes.Equal(b, blockData(i, v)) {
		return v, fmt.Errorf("block %d version %d: bytes differ", i, v)
	}
	return v, nil
}

// TestMigrateUnderLoad restripes a file three times while two readers and
// a writer use it: the readers never see zeros, an error or a block older
// than one they saw before, and the file ends as the writer left it, with
// its inode number.
func TestMigrateUnderLoad(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 2, OSTsPerOSS: 2, StripeCount: 1, StripeSize: 64 << 10})
	const blocks = 4096 // 16 MiB
	setup := cl.Client(t, client.Config{})
	f, err := setup.CreateStriped("/m", 0o644, layout.DefaultSpec(1, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(blocks) {
		if _, err := f.WriteAt(blockData(i, 0), int64(i*migBlock)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := setup.Stat("/m")
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Ino

	// The writer's versions: the latest version written of each block
	// (and, past the initial blocks, the blocks it appended).
	var versions [blocks + 256]atomic.Uint64
	var appended atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes, reads atomic.Int64
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}

	writer := cl.Client(t, client.Config{Consistency: client.Strict})
	w, err := writer.OpenFile("/m", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := rng.Uint64N(blocks)
			if rng.IntN(16) == 0 && appended.Load() < 256 {
				i = blocks + appended.Load()
				appended.Add(1)
			}
			v := versions[i].Load() + 1
			if _, err := w.WriteAt(blockData(i, v), int64(i*migBlock)); err != nil {
				report(fmt.Errorf("writer: block %d: %w", i, err))
				return
			}
			versions[i].Store(v)
			writes.Add(1)
		}
	}()
	for r := range 2 {
		rc := cl.Client(t, client.Config{Consistency: client.Strict})
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := rc.OpenFile("/m", os.O_RDONLY, 0)
			if err != nil {
				report(err)
				return
			}
			defer g.Close()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			seen := make([]uint64, blocks)
			buf := make([]byte, 16*migBlock)
			for {
				select {
				case <-stop:
					return
				default:
				}
				first := rng.Uint64N(blocks - 16)
				if _, err := g.ReadAt(buf, int64(first*migBlock)); err != nil {
					report(fmt.Errorf("reader %d at block %d: %w", r, first, err))
					return
				}
				reads.Add(1)
				for k := range uint64(16) {
					i := first + k
					b := buf[k*migBlock : (k+1)*migBlock]
					v, err := checkBlock(i, b)
					for try := 0; err != nil && try < 3 && !bytes.Equal(b, make([]byte, migBlock)); try++ {
						// A read racing the writer's write of the
						// block may see half of each: read it again.
						if _, rerr := g.ReadAt(b, int64(i*migBlock)); rerr != nil {
							err = rerr
							break
						}
						v, err = checkBlock(i, b)
					}
					switch {
					case err != nil:
						report(fmt.Errorf("reader %d: %w", r, err))
						return
					case v < seen[i]:
						report(fmt.Errorf("reader %d: block %d went back from version %d to %d", r, i, seen[i], v))
						return
					}
					seen[i] = v
				}
			}
		}()
	}

	migrator := cl.Client(t, client.Config{})
	specs := []layout.Spec{
		layout.DefaultSpec(4, 64<<10),
		{Components: []layout.ComponentSpec{{StripeCount: 2, StripeSize: 128 << 10, StripeOffset: -1}}},
		{},
	}
	wantCount := []uint32{4, 2, 2}
	var phases sync.Map
	for n, spec := range specs {
		before := writes.Load()
		beforeReads := reads.Load()
		// Let the load run into every pass, not just the first.
		waitFor(t, func() bool { return writes.Load() > before+20 && reads.Load() > beforeReads+5 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		lay, err := migrator.Migrate(ctx, proto.Cred{}, ino, spec, func(phase string, done, total int64) { phases.Store(phase, true) })
		cancel()
		if err != nil {
			t.Fatalf("migration %d: %v", n, err)
		}
		if lay.Gen != uint32(2+n) || lay.Components[0].StripeCount != wantCount[n] {
			t.Fatalf("migration %d: layout %+v", n, lay)
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		if writes.Load() == before {
			t.Fatalf("migration %d: the writer wrote nothing meanwhile", n)
		}
	}
	waitFor(t, func() bool { return reads.Load() > 20 && writes.Load() > 100 })
	close(stop)
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	for _, p := range []string{client.MigrateCopying, client.MigrateSyncing, client.MigrateSwapping, client.MigrateDone} {
		if _, ok := phases.Load(p); !ok {
			t.Errorf("no progress report of phase %s", p)
		}
	}
	t.Logf("%d writes and %d reads of 64 KiB ran through 3 migrations", writes.Load(), reads.Load())

	// The file is what the writer left, under the same inode.
	check := cl.Client(t, client.Config{})
	st, err = check.Stat("/m")
	if err != nil || st.Ino != ino {
		t.Fatalf("after migrating: %+v, %v (inode was %#x)", st, err, ino)
	}
	total := uint64(blocks) + appended.Load()
	if st.Size != total*migBlock {
		t.Fatalf("size %d, want %d", st.Size, total*migBlock)
	}
	g, err := check.OpenFile("/m", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if gen := g.Layout().Gen; gen != 4 {
		t.Fatalf("layout generation %d after three migrations", gen)
	}
	buf := make([]byte, migBlock)
	for i := range total {
		if _, err := g.ReadAt(buf, int64(i*migBlock)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, blockData(i, versions[i].Load())) {
			v, err := checkBlock(i, buf)
			t.Fatalf("block %d: holds version %d (%v), the writer last wrote %d", i, v, err, versions[i].Load())
		}
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMigrateOldObjectsGone: after a migration the old objects are
// destroyed, and a capability of the old generation gets ESTALE from the
// OSS rather than a hole.
func TestMigrateOldObjectsGone(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 2})
	c := cl.Client(t, client.Config{})
	f, err := c.CreateStriped("/f", 0o644, layout.DefaultSpec(2, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("strata"), 100000)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old := r.Layout()
	if _, err := c.Migrate(context.Background(), proto.Cred{}, r.Ino(), layout.DefaultSpec(1, 1<<20), nil); err != nil {
		t.Fatal(err)
	}
	// The open file learns the new layout at its next read.
	buf := make([]byte, len(data))
	if n, err := r.ReadAt(buf, 0); n != len(data) || !bytes.Equal(buf, data) {
		t.Fatalf("read after migrate: %d bytes, %v", n, err)
	}
	if r.Layout().Gen != old.Gen+1 {
		t.Fatalf("the open file did not learn the new layout: %+v", r.Layout())
	}
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret})
	defer rc.Close()
	targets, err := c.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o := old.Components[0].Objects[0]
	// The old objects were fenced to the new generation: a capability of
	// that one reads them until they are destroyed.
	newCap := proto.Capability{Ino: r.Ino(), Rights: proto.RightRead, Expiry: time.Now().Add(time.Hour).UnixNano(), Gen: old.Gen + 1}.Signed(cl.Secret)
	waitFor(t, func() bool {
		var resp proto.ObjReadResp
		_, err := rc.CallBulk(context.Background(), targets.OSTs[o.OST].Addr, proto.OpObjRead,
			&proto.ObjReadReq{Cap: newCap, Obj: proto.ObjRef{OST: o.OST, ID: o.ID}, Length: 100}, nil, &resp, make([]byte, 100))
		return errors.Is(err, syscall.ESTALE)
	})
}
