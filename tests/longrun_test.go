package tests

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// Helpers of the long-running tests (the exerciser and the crash loop),
// which make soak runs for hours and the default suite briefly.

// soak reports whether the long runs of make soak were asked for.
func soak() bool { return os.Getenv("STRATA_SOAK") != "" }

// tempDir755 is a temporary directory that every user may enter (t.TempDir's
// parent is private). It is removed at cleanup unless the test failed: then
// the daemons' logs and state stay for inspection.
func tempDir755(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s (logs in its logs/) for inspection", dir)
			return
		}
		os.RemoveAll(dir)
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
