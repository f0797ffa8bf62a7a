package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fsckDoc is what the test reads of strata fsck --json.
type fsckDoc struct {
	Findings []struct {
		Class    string  `json:"class"`
		Ino      uint64  `json:"ino"`
		OST      *uint32 `json:"ost"`
		ObjectID string  `json:"object_id"`
		Problem  string  `json:"problem"`
		Repaired bool    `json:"repaired"`
	} `json:"findings"`
	Notes   []string `json:"notes"`
	Summary struct {
		Checked  map[string]uint64 `json:"checked"`
		Found    int               `json:"found"`
		Repaired int               `json:"repaired"`
		Clean    bool              `json:"clean"`
		Complete bool              `json:"complete"`
	} `json:"summary"`
}

// runFsckCLI runs strata fsck with args and returns its stdout, stderr and
// exit status.
func runFsckCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, append([]string{"fsck"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("strata fsck: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// fsckJSON runs strata fsck --json with args, checks its exit status and
// returns its document.
func fsckJSON(t *testing.T, c *cluster, wantCode int, args ...string) fsckDoc {
	t.Helper()
	out, errOut, code := runFsckCLI(t, append([]string{"--json", "--config", filepath.Join(c.dir, "client.yaml")}, args...)...)
	var doc fsckDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("fsck --json %v printed %q (stderr %q): %v", args, out, errOut, err)
	}
	if code != wantCode {
		t.Fatalf("fsck --json %v exited %d, want %d; document %+v; stderr:\n%s", args, code, wantCode, doc, errOut)
	}
	if len(doc.Notes) > 0 || !doc.Summary.Complete {
		t.Fatalf("fsck could not check everything: %v", doc.Notes)
	}
	return doc
}

// TestFsck runs strata fsck against a live cluster: clean after normal use,
// then with an orphan object planted on an OST and a written object deleted
// from another, report-only (exit 1, exactly those two), with --repair
// (exit 2) and again (exit 0).
func TestFsck(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, dir, 2)
	d := filepath.Join(c.mnt, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("strata fsck "), 100000)
	victim := filepath.Join(d, "victim")
	mustStrata(t, "setstripe", "-c", "2", "-S", "64k", victim)
	for _, name := range []string{"victim", "kept"} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(d, "kept"), filepath.Join(c.mnt, "kept-again")); err != nil {
		t.Fatal(err)
	}

	clean := fsckJSON(t, c, 0)
	for _, class := range []string{"orphan-objects", "missing-objects", "link-counts", "dangling-entries",
		"directories", "orphan-list", "destroy-queue"} {
		if _, ok := clean.Summary.Checked[class]; !ok {
			t.Errorf("summary has no %s count: %+v", class, clean.Summary)
		}
	}
	if !clean.Summary.Clean || clean.Summary.Found != 0 || clean.Summary.Checked["orphan-objects"] == 0 {
		t.Fatalf("fsck of a healthy filesystem: %+v", clean)
	}

	// An orphan: an object of an inode that never existed, on the first OST.
	orphanIno, orphanSeq := uint64(0x7ffff0), uint32(3)
	orphan := filepath.Join(dir, "ost0", "O", fmt.Sprintf("%02x", orphanIno&0xff), fmt.Sprintf("%016x.%08x", orphanIno, orphanSeq))
	if err := os.MkdirAll(filepath.Dir(orphan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("nobody's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(orphan, "user.strata.owner", fmt.Appendf(nil, "%d:%d:0", orphanIno, orphanSeq), 0); err != nil {
		t.Logf("no owner xattr on the planted orphan: %v", err)
	}
	// A lost object: the second stripe of victim, gone from its OST.
	var st getstripeDoc
	if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", victim)), &st); err != nil {
		t.Fatal(err)
	}
	lost := st.Components[0].Objects[1]
	var lostIno, lostSeq uint64
	if _, err := fmt.Sscanf(lost.ObjectID, "0x%x:0x%x", &lostIno, &lostSeq); err != nil {
		t.Fatalf("object id %q: %v", lost.ObjectID, err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "ost*", "O", "*", fmt.Sprintf("%016x.%08x", lostIno, lostSeq)))
	if err != nil || len(paths) != 1 {
		t.Fatalf("object %s found at %v (%v)", lost.ObjectID, paths, err)
	}
	if err := os.Remove(paths[0]); err != nil {
		t.Fatal(err)
	}

	found := fsckJSON(t, c, 1)
	classes := map[string]string{}
	for _, f := range found.Findings {
		classes[f.Class] = f.ObjectID
		if f.Repaired {
			t.Errorf("report-only run repaired %+v", f)
		}
	}
	wantOrphan := fmt.Sprintf("0x%x:0x%x", orphanIno, orphanSeq)
	if len(found.Findings) != 2 || classes["orphan-objects"] != wantOrphan || classes["missing-objects"] != lost.ObjectID ||
		found.Summary.Found != 2 || found.Summary.Clean {
		t.Fatalf("fsck found %+v, want orphan %s and missing %s", found, wantOrphan, lost.ObjectID)
	}

	repaired := fsckJSON(t, c, 2, "--repair")
	if repaired.Summary.Found != 2 || repaired.Summary.Repaired != 2 {
		t.Fatalf("repairing run: %+v", repaired)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan object still on its OST: %v", err)
	}

	out, errOut, code := runFsckCLI(t, "--config", filepath.Join(c.dir, "client.yaml"))
	if code != 0 || !strings.Contains(out, "found 0, repaired 0: clean") {
		t.Fatalf("fsck after the repair exited %d:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"fsck: checking", "fsck: orphan-objects: done", "fsck: missing-objects: done"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("progress on stderr lacks %q:\n%s", want, errOut)
		}
	}
	// Given a mount, fsck finds the cluster through the client serving it.
	out, errOut, code = runFsckCLI(t, "--json", c.mnt)
	if code != 0 || !strings.Contains(out, `"clean": true`) {
		t.Fatalf("fsck --json %s exited %d:\n%s\nstderr:\n%s", c.mnt, code, out, errOut)
	}
	// What was not lost reads back whole.
	if got, err := os.ReadFile(filepath.Join(c.mnt, "kept-again")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("kept file reads back %d bytes (%v)", len(got), err)
	}
}
