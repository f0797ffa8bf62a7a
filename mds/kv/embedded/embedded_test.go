package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/kv/kvtest"
)

func openTemp(t *testing.T, policy string) kv.Engine {
	t.Helper()
	e, err := Open(t.TempDir(), kv.Options{Sync: policy})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSuite(t *testing.T) {
	for _, policy := range []string{SyncInterval, SyncAlways, SyncNone} {
		t.Run(policy, func(t *testing.T) {
			kvtest.RunSuite(t, func(t *testing.T) kv.Engine { return openTemp(t, policy) })
		})
	}
}

func TestPersistence(t *testing.T) {
	kvtest.RunPersistence(t, func(t *testing.T, dir string) kv.Engine {
		e, err := Open(dir, kv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/new/sub"
	db, err := kv.Open(ctx, "embedded:"+dir+"?sync=always", kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := db.Engine.(*Engine).policy; got != SyncAlways {
		t.Errorf("policy %q, want always from the URL", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = kv.Open(ctx, "embedded:"+dir+"?sync=always", kv.Options{Sync: SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	if got := db.Engine.(*Engine).policy; got != SyncNone {
		t.Errorf("policy %q, want none from Options over the URL", got)
	}
	db.Close()
	for _, bad := range []string{"embedded:", "embedded:" + dir + "?sync=sometimes", "embedded:" + dir + "?fast=1"} {
		if _, err := kv.Open(ctx, bad, kv.Options{}); !errors.Is(err, kv.ErrBadURL) {
			t.Errorf("Open(%q): %v, want ErrBadURL", bad, err)
		}
	}
}

func TestTooLarge(t *testing.T) {
	db := &kv.DB{Engine: openTemp(t, SyncNone)}
	defer db.Close()
	value := make([]byte, 60<<10) // under the value-log threshold: counts whole
	err := db.Update(context.Background(), func(tx kv.Txn) error {
		for i := range 1000 {
			if err := tx.Set(fmt.Appendf(nil, "k%d", i), value); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("60 MiB transaction: %v, want ErrTooLarge", err)
	}
}

func TestIntervalSync(t *testing.T) {
	e, err := Open(t.TempDir(), kv.Options{Sync: SyncInterval, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	db := &kv.DB{Engine: e}
	for i := range 20 {
		err := db.Update(context.Background(), func(tx kv.Txn) error {
			return tx.Set([]byte("k"), []byte(strconv.Itoa(i)))
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// crashEnv names the directory a re-executed test binary commits into
// before its parent kills it; crashSyncEnv the sync policy it uses.
const (
	crashEnv     = "STRATA_KV_CRASH_DIR"
	crashSyncEnv = "STRATA_KV_CRASH_SYNC"
	crashTxns    = 500
)

// TestCrashChild is the child half of TestKillLosesNothing.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestKillLosesNothing")
	}
	e, err := Open(dir, kv.Options{Sync: os.Getenv(crashSyncEnv), SyncInterval: time.Hour})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	db := &kv.DB{Engine: e}
	for i := range crashTxns {
		err := db.Update(context.Background(), func(tx kv.Txn) error {
			return tx.Set(fmt.Appendf(nil, "txn/%05d", i), []byte(strconv.Itoa(i)))
		})
		if err != nil {
			fmt.Println("update:", err)
			os.Exit(1)
		}
	}
	fmt.Println("committed")
	time.Sleep(time.Minute) // until killed; never Close
	os.Exit(1)
}

// TestKillLosesNothing commits in a child process, SIGKILLs it, and checks
// that every committed transaction is there, under every sync policy (the
// interval one with an hour-long interval, so no fsync happens).
func TestKillLosesNothing(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	for _, policy := range []string{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
			cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashSyncEnv+"="+policy)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			ok := false
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "committed" {
					ok = true
					break
				}
				t.Logf("child: %s", sc.Text())
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if !ok {
				t.Fatal("child did not report its commits")
			}

			e, err := Open(dir, kv.Options{})
			if err != nil {
				t.Fatal(err)
			}
			db := &kv.DB{Engine: e}
			defer db.Close()
			n := 0
			err = db.View(context.Background(), func(tx kv.Txn) error {
				return tx.Scan(context.Background(), []byte("txn/"), []byte("txn0"), 0, func(k, v []byte) bool {
					if want := fmt.Sprintf("txn/%05d", n); string(k) != want || string(v) != strconv.Itoa(n) {
						t.Errorf("entry %d: %q=%q", n, k, v)
					}
					n++
					return true
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != crashTxns {
				t.Fatalf("found %d of %d committed transactions after SIGKILL", n, crashTxns)
			}
		})
	}
}

func BenchmarkUpdateNewKeys(b *testing.B) {
	for _, policy := range []string{SyncNone, SyncInterval, SyncAlways} {
		b.Run(policy, func(b *testing.B) {
			e, err := Open(b.TempDir(), kv.Options{Sync: policy})
			if err != nil {
				b.Fatal(err)
			}
			kvtest.BenchUpdateNewKeys(b, &kv.DB{Engine: e})
		})
	}
}

func BenchmarkUpdateHotKey(b *testing.B) {
	e, err := Open(b.TempDir(), kv.Options{Sync: SyncInterval})
	if err != nil {
		b.Fatal(err)
	}
	kvtest.BenchUpdateHotKey(b, &kv.DB{Engine: e})
}
