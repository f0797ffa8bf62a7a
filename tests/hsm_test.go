package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

// TestHSMArchiveReleaseRestore is the round trip against each backend:
// archive, release (df shows the space back), a read through the mount
// restores identical bytes, the state is exists archived again and the
// layout has the shape it had.
func TestHSMArchiveReleaseRestore(t *testing.T) {
	for _, kind := range []string{"posix", "s3"} {
		t.Run(kind, func(t *testing.T) {
			e := newHSMEnvOn(t, kind, 2, true)
			mnt := e.c.mnt
			f := filepath.Join(mnt, "data")
			mustStrata(t, "setstripe", "-c", "2", "-S", "1M", f)
			const size = 48 << 20
			data := randomFile(t, f, size)
			before := mustStrata(t, "getstripe", "--json", f)
			e.must("hsm", "archive", "--wait", f)
			if out := e.must("hsm", "state", f); strings.TrimSpace(out) != f+": (0x00000009) exists archived, archive_id:1" {
				t.Fatalf("state after archive: %q", out)
			}
			ino := inoOf(t, f)
			if n := ostObjects(t, e.c.dir, ino); n != 2 {
				t.Fatalf("%d objects on the OSTs before release, want 2", n)
			}
			// The OSTs report usage with their heartbeats (every 2 s).
			deadline := time.Now().Add(20 * time.Second)
			used := dfUsed(t, mnt)
			for ; used < size; used = dfUsed(t, mnt) {
				if time.Now().After(deadline) {
					t.Fatalf("df: %d bytes used with a file of %d", used, size)
				}
				time.Sleep(200 * time.Millisecond)
			}
			e.must("hsm", "release", f)
			var st struct {
				Path      string   `json:"path"`
				Flags     []string `json:"flags"`
				ArchiveID uint32   `json:"archive_id"`
			}
			if err := json.Unmarshal([]byte(e.must("hsm", "state", "--json", f)), &st); err != nil {
				t.Fatal(err)
			}
			if strings.Join(st.Flags, " ") != "released exists archived" || st.ArchiveID != 1 {
				t.Fatalf("state --json after release: %+v", st)
			}
			if n := ostObjects(t, e.c.dir, ino); n != 0 {
				t.Fatalf("%d objects left on the OSTs after release", n)
			}
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != size || fi.Sys().(*syscall.Stat_t).Blocks != 0 {
				t.Fatalf("released file: size %d blocks %d", fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks)
			}
			// Wait for df to show most of the file's space back.
			deadline = time.Now().Add(20 * time.Second)
			for after := dfUsed(t, mnt); used < after || used-after < size/2; after = dfUsed(t, mnt) {
				if time.Now().After(deadline) {
					t.Fatalf("df: %d bytes used before release, %d after", used, after)
				}
				time.Sleep(200 * time.Millisecond)
			}
			sameContent(t, f, data)
			if out := e.must("hsm", "state", f); strings.TrimSpace(out) != f+": (0x00000009) exists archived, archive_id:1" {
				t.Fatalf("state after restore: %q", out)
			}
			after := mustStrata(t, "getstripe", "--json", f)
			if shape(t, before) != shape(t, after) {
				t.Fatalf("getstripe after restore:\n%s\nbefore:\n%s", after, before)
			}
		})
	}
}

// shape is a getstripe --json document without object ids and generation.
func shape(t *testing.T, doc string) string {
	t.Helper()
	var d struct {
		Components []struct {
			Start, End, StripeCount, StripeSize int64
			Pattern, Pool                       string
			Objects                             []any
		}
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatalf("getstripe --json: %v: %s", err, doc)
	}
	var parts []string
	for _, c := range d.Components {
		parts = append(parts, fmt.Sprintf("%d-%d c%d S%d %s %q %d objects", c.Start, c.End, c.StripeCount, c.StripeSize, c.Pattern,
			c.Pool, len(c.Objects)))
	}
	return strings.Join(parts, "; ")
}

// TestHSMOneRestoreForManyReaders: eight readers of a released file cause
// one RESTORE and all read the right bytes; lfs spellings work.
func TestHSMOneRestoreForManyReaders(t *testing.T) {
	e := newHSMEnv(t, "posix", 2)
	f := filepath.Join(e.c.mnt, "shared")
	data := randomFile(t, f, 16<<20)
	lfs := filepath.Join(filepath.Dir(strataBin), "lfs")
	if _, err := os.Stat(lfs); err != nil {
		lfs = strataBin
	}
	e.must("hsm", "archive", "--wait", f)
	e.must("hsm", "release", f)
	seq := hsmState(t, f).Action.Seq
	// Read through a mount that never cached the file's pages.
	other := filepath.Join(e.c.mountSecond(t), "shared")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := os.ReadFile(other)
			if err == nil && string(got) != string(data) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
	st := hsmState(t, f)
	if st.Action.Kind != proto.HsmRestore || st.Action.Seq != seq+1 {
		t.Fatalf("after 8 readers the last action is %s #%d, want RESTORE #%d (one restore)", proto.HsmActionName(st.Action.Kind),
			st.Action.Seq, seq+1)
	}
	if n := strings.Count(e.logs(), "action=RESTORE"); n != 1 {
		t.Fatalf("the copytool ran %d restores", n)
	}
	if strings.HasSuffix(lfs, "lfs") {
		if out := e.must2(lfs, "hsm_state", f); !strings.Contains(out, "exists archived") {
			t.Fatalf("lfs hsm_state: %q", out)
		}
	}
}

// must2 runs another binary (the lfs link) like must.
func (e *hsmEnv) must2(bin string, args ...string) string {
	e.t.Helper()
	out, err := execOut(bin, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestHSMDirtyAndWriters: a write to an archived file makes it dirty, a
// dirty file is not released, nor one open for writing elsewhere; a reader
// holding the layout across a release reads the right bytes.
func TestHSMDirtyAndWriters(t *testing.T) {
	e := newHSMEnv(t, "posix", 2)
	mnt := e.c.mnt
	f := filepath.Join(mnt, "f")
	randomFile(t, f, 4<<20)
	e.must("hsm", "archive", "--wait", f)
	w, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("changed"), 10); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out := e.must("hsm", "state", f); !strings.Contains(out, "exists dirty archived") {
		t.Fatalf("after a write: %q", out)
	}
	if _, err := e.strata("hsm", "release", f); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("release of a dirty file: %v", err)
	}

	// Archived clean, then open for writing on another mount: refused.
	e.must("hsm", "archive", "--wait", f)
	other := e.c.mountSecond(t)
	w2, err := os.OpenFile(filepath.Join(other, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.must("hsm", "clear", "--dirty", f)
	if _, err := e.strata("hsm", "release", f); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("release of a file open for writing elsewhere: %v", err)
	}
	w2.Close()

	// A reader holding the old layout across a release.
	g := filepath.Join(mnt, "g")
	data := randomFile(t, g, 32<<20)
	e.must("hsm", "archive", "--wait", g)
	r, err := os.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	e.must("hsm", "release", g)
	tail := make([]byte, 4<<20)
	if _, err := r.ReadAt(tail, int64(len(data)-len(tail))); err != nil {
		t.Fatalf("read across the release: %v", err)
	}
	if string(tail) != string(data[len(data)-len(tail):]) || string(head) != string(data[:len(head)]) {
		t.Fatal("a reader across the release got wrong bytes")
	}
	if st := hsmState(t, g); st.Flags&proto.HsmReleased != 0 {
		t.Fatalf("not restored: %v", proto.HsmFlagNames(st.Flags))
	}
}

// TestHSMCopytoolKilled: a copytool killed in the middle of an archive;
// its next run finishes the action.
func TestHSMCopytoolKilled(t *testing.T) {
	e := newHSMEnv(t, "posix", 2, "--chunk-size", "1M", "--streams", "1")
	f := filepath.Join(e.c.mnt, "big")
	data := randomFile(t, f, 96<<20)
	e.must("hsm", "archive", f)
	deadline := time.Now().Add(30 * time.Second)
	for hsmState(t, f).Action.Status != proto.HsmRunning {
		if time.Now().After(deadline) {
			t.Fatalf("the archive never ran: %+v\n%s", hsmState(t, f), e.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.killCopytool()
	if st := hsmState(t, f); st.Flags&proto.HsmArchived != 0 {
		t.Skip("the archive finished before the copytool was killed")
	}
	e.startCopytool("--chunk-size", "1M")
	e.must("hsm", "archive", "--wait", f)
	st := hsmState(t, f)
	if st.Flags != proto.HsmExists|proto.HsmArchived || st.Action.Status != proto.HsmDone {
		t.Fatalf("after the restart: %+v", st)
	}
	e.must("hsm", "release", f)
	sameContent(t, f, data)
}

// TestHSMMDSRestartWhileReadersWait: readers blocked on a restore survive
// a restart of the MDS and get their bytes once a copytool runs.
func TestHSMMDSRestartWhileReadersWait(t *testing.T) {
	e := newHSMEnv(t, "posix", 2)
	f := filepath.Join(e.c.mnt, "f")
	data := randomFile(t, f, 8<<20)
	e.must("hsm", "archive", "--wait", f)
	e.must("hsm", "release", f)
	e.killCopytool()
	// Read through a mount that never cached the file's pages.
	other := filepath.Join(e.c.mountSecond(t), "f")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := os.ReadFile(other)
			if err == nil && string(got) != string(data) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	// Queued, or claimed by the dead copytool's last claim: its next run
	// (same name) gets it back when it registers.
	for st := hsmState(t, f); st.Action.Kind != proto.HsmRestore || st.Action.Status == proto.HsmDone; st = hsmState(t, f) {
		if time.Now().After(deadline) {
			t.Fatalf("no restore queued by the readers: %+v", hsmState(t, f))
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := childPID(t, e.c, "mds --kv")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewChild(t, e.c, "mds --kv", pid)
	e.startCopytool()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
}

// TestHSMCorruptArchive: a corrupted archive copy is found at restore:
// the reader gets EIO, the file stays released, nothing wrong is served.
func TestHSMCorruptArchive(t *testing.T) {
	e := newHSMEnv(t, "posix", 2)
	f := filepath.Join(e.c.mnt, "f")
	randomFile(t, f, 3<<20)
	e.must("hsm", "archive", "--wait", f)
	e.must("hsm", "release", f)
	copyPath := filepath.Join(e.archive, "strata", fmt.Sprintf("%016x", inoOf(t, f)))
	a, err := os.OpenFile(copyPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("archive copy: %v", err)
	}
	if _, err := a.WriteAt([]byte("corruption"), 1<<20); err != nil {
		t.Fatal(err)
	}
	a.Close()
	_, err = os.ReadFile(f)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a file with a corrupt archive copy: %v, want EIO", err)
	}
	st := hsmState(t, f)
	if st.Flags&proto.HsmReleased == 0 || st.Action.Status != proto.HsmFailed || !strings.Contains(st.Action.Error, "corrupt") {
		t.Fatalf("after the failed restore: %+v", st)
	}
	out := e.must("hsm", "action", "--json", f)
	var act struct{ Action, Status string }
	if err := json.Unmarshal([]byte(out), &act); err != nil || act.Action != "RESTORE" || act.Status != "failed" {
		t.Fatalf("hsm action --json: %s (%v)", out, err)
	}
}

// TestHSMImport links 1,000 objects of an S3 bucket into the namespace,
// reads a sample, and finds an object changed after the import.
func TestHSMImport(t *testing.T) {
	e := newHSMEnv(t, "s3", 2)
	src := filepath.Join(e.archive, hsmBucket, "lake")
	const n = 1000
	want := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("part-%04d", i)
		sub := filepath.Join(src, fmt.Sprintf("d%d", i%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		data := []byte(strings.Repeat(name+"\n", 1+i%50))
		if err := os.WriteFile(filepath.Join(sub, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("d%d/%s", i%10, name)] = data
	}
	dir := filepath.Join(e.c.mnt, "lake")
	out := e.must("hsm", "import", "--archive", "1", "s3://"+hsmBucket+"/lake", dir)
	if !strings.HasPrefix(out, fmt.Sprintf("imported %d objects", n)) {
		t.Fatalf("import: %q", out)
	}
	count := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			count++
		}
		return err
	})
	if err != nil || count != n {
		t.Fatalf("%d stubs (%v), want %d", count, err, n)
	}
	for i := 0; i < n; i += 97 {
		rel := fmt.Sprintf("d%d/part-%04d", i%10, i)
		p := filepath.Join(dir, rel)
		if st := hsmState(t, p); st.Flags != proto.HsmExists|proto.HsmArchived|proto.HsmReleased {
			t.Fatalf("%s before reading: %v", rel, proto.HsmFlagNames(st.Flags))
		}
		sameContent(t, p, want[rel])
	}
	// Change an object behind the import's back: its restore refuses it.
	changed := filepath.Join(src, "d3", "part-0003")
	if err := os.WriteFile(changed, []byte("not what was imported\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(dir, "d3", "part-0003")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a changed object: %v, want EIO", err)
	}
	if st := hsmState(t, filepath.Join(dir, "d3", "part-0003")); !strings.Contains(st.Action.Error, "changed since it was imported") {
		t.Fatalf("the failed restore says %q", st.Action.Error)
	}
	// hsm remove of an imported (restored) file leaves the object.
	p := filepath.Join(dir, "d0", "part-0000")
	e.must("hsm", "remove", p)
	if _, err := os.Stat(filepath.Join(src, "d0", "part-0000")); err != nil {
		t.Fatalf("hsm remove deleted the source object: %v", err)
	}
}

// TestHSMPolicyDryRun: what a dry run lists is what the run then does.
func TestHSMPolicyDryRun(t *testing.T) {
	e := newHSMEnv(t, "posix", 2)
	mnt := e.c.mnt
	for i := range 6 {
		randomFile(t, filepath.Join(mnt, fmt.Sprintf("f%d", i)), (i+1)<<19)
	}
	cfg := filepath.Join(e.c.dir, "client.yaml")
	dry := e.must("hsm", "policy", "--config", cfg, "--dry-run", "--archive-larger-than", "1M")
	run := e.must("hsm", "policy", "--config", cfg, "--archive-larger-than", "1M")
	if dry != run || strings.Count(run, "archive ") != 4 {
		t.Fatalf("dry run:\n%s\nrun:\n%s", dry, run)
	}
	for i := range 6 {
		st := hsmState(t, filepath.Join(mnt, fmt.Sprintf("f%d", i)))
		queued := st.Action.Kind == proto.HsmArchive
		if queued != (i >= 2) {
			t.Fatalf("f%d (%d bytes): last action %s", i, (i+1)<<19, proto.HsmActionName(st.Action.Kind))
		}
	}
	e.must("hsm", "archive", "--wait", mnt)
	if again := e.must("hsm", "policy", "--config", cfg, "--dry-run", "--archive-larger-than", "1M"); again != "" {
		t.Fatalf("a second dry run after the archives: %q", again)
	}
}

// execOut runs a binary and returns its stdout.
func execOut(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), fmt.Errorf("%s %v: %v: %s", bin, args, err, ee.Stderr)
	}
	return string(out), err
}
