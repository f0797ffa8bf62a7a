package tikv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/kvtest"
)

// pdEnv names a real TiKV cluster to run the suite against, as
// "host:port[,host:port...]" PD addresses.
const pdEnv = "STRATA_TEST_TIKV_PD"

func openMock(t testing.TB, dir string) *Engine {
	t.Helper()
	e, err := OpenMock(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSuiteMock(t *testing.T) {
	kvtest.RunSuite(t, func(t *testing.T) kv.Engine { return openMock(t, t.TempDir()) })
}

func TestPersistenceMock(t *testing.T) {
	kvtest.RunPersistence(t, func(t *testing.T, dir string) kv.Engine { return openMock(t, dir) })
}

// TestSuiteCluster runs the suite on the cluster STRATA_TEST_TIKV_PD names,
// each test under a random key prefix that it deletes afterwards.
func TestSuiteCluster(t *testing.T) {
	pd := os.Getenv(pdEnv)
	if pd == "" {
		t.Skipf("set %s=host:port[,...] to run the suite against a real TiKV cluster", pdEnv)
	}
	kvtest.RunSuite(t, func(t *testing.T) kv.Engine {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e, err := Open(ctx, strings.Split(pd, ","))
		if err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Appendf(nil, "strata-kvtest/%016x/", rand.Uint64())
		t.Cleanup(func() { deletePrefix(t, pd, prefix) })
		return kvtest.WithPrefix(e, prefix)
	})
}

// deletePrefix removes a test's keys from the shared cluster.
func deletePrefix(t *testing.T, pd string, prefix []byte) {
	ctx := context.Background()
	e, err := Open(ctx, strings.Split(pd, ","))
	if err != nil {
		t.Logf("cleanup of %q: %v", prefix, err)
		return
	}
	defer e.Close()
	db := &kv.DB{Engine: kvtest.WithPrefix(e, prefix)}
	for more := true; more; {
		err := db.Update(ctx, func(tx kv.Txn) error {
			var keys [][]byte
			err := tx.Scan(ctx, nil, nil, 1000, func(k, _ []byte) bool {
				keys = append(keys, bytes.Clone(k))
				return true
			})
			for _, k := range keys {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			more = len(keys) == 1000
			return err
		})
		if err != nil {
			t.Logf("cleanup of %q: %v", prefix, err)
			return
		}
	}
}

func TestParsePDAddrs(t *testing.T) {
	good := map[string][]string{
		"//pd1:2379":                {"pd1:2379"},
		"//pd1:2379,10.0.0.2:2379/": {"pd1:2379", "10.0.0.2:2379"},
		"//[::1]:2379":              {"[::1]:2379"},
	}
	for in, want := range good {
		got, err := parsePDAddrs(in)
		if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("parsePDAddrs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"pd1:2379", "//", "//pd1", "//pd1:2379,", "//pd1:"} {
		if got, err := parsePDAddrs(in); err == nil {
			t.Errorf("parsePDAddrs(%q) = %q, want an error", in, got)
		}
	}
	if _, err := kv.Open(context.Background(), "tikv:pd1:2379", kv.Options{}); !errors.Is(err, kv.ErrBadURL) {
		t.Errorf("kv.Open(tikv:pd1:2379): %v, want ErrBadURL", err)
	}
}

func TestOpenGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Port 1 on loopback: nothing listens, and client-go retries for ~100 s.
	_, err := Open(ctx, []string{"127.0.0.1:1"})
	if err == nil {
		t.Fatal("Open with no PD succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %v to give up", d)
	}
}

func TestValueEncoding(t *testing.T) {
	for _, v := range [][]byte{{}, {0}, {0, 0}, {1}, {0, 1}, {1, 0}, {0, 0, 0, 7}, []byte("inode")} {
		s := encodeValue(v)
		if len(s) == 0 {
			t.Errorf("encodeValue(%v) is empty", v)
		}
		if got := decodeValue(s); !bytes.Equal(got, v) || got == nil {
			t.Errorf("decodeValue(encodeValue(%v)) = %v", v, got)
		}
	}
	if v := []byte("abc"); &encodeValue(v)[0] != &v[0] {
		t.Error("encodeValue copied a value that needs no escaping")
	}
}

func BenchmarkUpdateNewKeys(b *testing.B) {
	kvtest.BenchUpdateNewKeys(b, &kv.DB{Engine: openMock(b, b.TempDir())})
}

func BenchmarkUpdateHotKey(b *testing.B) {
	kvtest.BenchUpdateHotKey(b, &kv.DB{Engine: openMock(b, b.TempDir())})
}
