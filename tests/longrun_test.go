package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Helpers of the long-running tests (the exerciser and the crash loop),
// which make soak runs for hours and the default suite briefly.

// soak reports whether the long runs of make soak were asked for.
func soak() bool { return os.Getenv("STRATA_SOAK") != "" }

// tempDir755 is a temporary directory that every user may enter (t.TempDir's
// parent is private). It is removed at cleanup, except, when the test
// failed, its logs/ directory (the daemons' logs), kept for inspection.
// Cleanups run last-registered first, so the daemons using it have been
// stopped and its mounts unmounted by then; a mount point that is still
// mounted is left alone rather than emptied.
func tempDir755(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(dir)
		keep := t.Failed()
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if (keep && e.Name() == "logs") || isMountPoint(p) {
				continue
			}
			os.RemoveAll(p)
		}
		if keep {
			t.Logf("kept the logs in %s", filepath.Join(dir, "logs"))
			return
		}
		os.Remove(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}
