package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMPIIO runs mpiio/mpiio_test.c, an IO500 ior-hard style MPI-IO check,
// with four ranks over two strict-consistency mounts of one filesystem:
// interleaved unaligned 47008-byte records in one shared file, written
// independently, collectively and by ROMIO data sieving under fcntl locks,
// each rank's records verified byte for byte from the other client.
// $STRATA_MPIIO_RECORDS sets the records per rank (default 20).
func TestMPIIO(t *testing.T) {
	for _, tool := range []string{"mpicc", "mpirun"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: install mpich and libmpich-dev (make deps) to run the MPI-IO test", tool)
		}
	}
	records := 20
	if s := os.Getenv("STRATA_MPIIO_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("STRATA_MPIIO_RECORDS=%q: want a positive number", s)
		}
		records = n
	}
	prog := filepath.Join(t.TempDir(), "mpiio_test")
	if out, err := exec.Command("mpicc", "-O2", "-Wall", "-o", prog, filepath.Join("mpiio", "mpiio_test.c")).CombinedOutput(); err != nil {
		t.Fatalf("mpicc: %v\n%s", err, out)
	}
	c := startCluster(t, t.TempDir(), 2, "-o", "consistency=strict")
	second := c.mountSecond(t, "-o", "consistency=strict")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Hydra's fork launcher keeps every rank on this machine, no ssh.
	cmd := exec.CommandContext(ctx, "mpirun", "-launcher", "fork", "-np", "4", prog, c.mnt, second, strconv.Itoa(records))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("mpirun (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if ctx.Err() != nil {
		t.Fatalf("mpirun did not finish within 4 minutes")
	}
	summary := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "mpiio: PASS") || strings.HasPrefix(line, "mpiio: FAIL") {
			summary = line
		}
	}
	if err != nil || !strings.HasPrefix(summary, "mpiio: PASS") {
		t.Fatalf("MPI-IO check failed (%v): %s", err, summary)
	}
}
