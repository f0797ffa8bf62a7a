package tests

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// TestHSMThroughput measures archive and restore of a 1 GiB file against
// each backend next to a plain cp of the same file (set STRATA_HSM_BENCH=1;
// STRATA_HSM_BENCH_MB changes the size). It reports, it does not judge.
func TestHSMThroughput(t *testing.T) {
	if os.Getenv("STRATA_HSM_BENCH") == "" {
		t.Skip("set STRATA_HSM_BENCH=1 to measure HSM throughput")
	}
	size := 1 << 30
	for _, kind := range []string{"posix", "s3"} {
		t.Run(kind, func(t *testing.T) {
			e := newHSMEnv(t, kind, 2)
			f := filepath.Join(e.c.mnt, "big")
			mustStrata(t, "setstripe", "-c", "2", "-S", "4M", f)
			w, err := os.OpenFile(f, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			chunk := make([]byte, 64<<20)
			if _, err := rand.Read(chunk); err != nil {
				t.Fatal(err)
			}
			for off := 0; off < size; off += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			local := filepath.Join(t.TempDir(), "copy")
			mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
			began := time.Now()
			if out, err := exec.Command("cp", f, local).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			cpOut := time.Since(began)
			began = time.Now()
			if out, err := exec.Command("cp", local, local+"2").CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			cpLocal := time.Since(began)
			began = time.Now()
			e.must("hsm", "archive", "--wait", f)
			archive := time.Since(began)
			e.must("hsm", "release", f)
			began = time.Now()
			e.must("hsm", "restore", "--wait", f)
			restore := time.Since(began)
			if st := hsmState(t, f); st.Flags&proto.HsmReleased != 0 {
				t.Fatalf("still released after restore --wait: %+v", st)
			}
			if out, err := exec.Command("cmp", f, local).CombinedOutput(); err != nil {
				t.Fatalf("restored file differs: %v: %s", err, out)
			}
			t.Logf("%s, 1 GiB: archive %.1f s (%.0f MB/s), restore %.1f s (%.0f MB/s); cp from the mount %.1f s (%.0f MB/s), cp local disk to local disk %.1f s (%.0f MB/s)",
				kind, archive.Seconds(), mbps(archive), restore.Seconds(), mbps(restore), cpOut.Seconds(), mbps(cpOut),
				cpLocal.Seconds(), mbps(cpLocal))
		})
	}
}
