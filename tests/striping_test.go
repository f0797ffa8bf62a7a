package tests

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// getstripeDoc is getstripe --json as CLI.md specifies it.
type getstripeDoc struct {
	Path       string `json:"path"`
	LayoutGen  int    `json:"layout_gen"`
	Components []struct {
		Start       int64  `json:"start"`
		End         int64  `json:"end"`
		StripeCount int    `json:"stripe_count"`
		StripeSize  int64  `json:"stripe_size"`
		Pattern     string `json:"pattern"`
		Pool        string `json:"pool"`
		Objects     []struct {
			OST      int    `json:"ost"`
			ObjectID string `json:"object_id"`
		} `json:"objects"`
	} `json:"components"`
}

// writeRandom writes size random bytes to path in 1 MiB writes and returns
// their SHA-256.
func writeRandom(t *testing.T, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for done := int64(0); done < size; done += int64(len(buf)) {
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		h.Write(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatalf("write at %d: %v", done, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after write: %v", err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// hashFile reads path through whatever mount it is on.
func hashFile(t *testing.T, path string) ([32]byte, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n
}

// ostBytes sums the sizes of the object files in one OST directory.
func ostBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(dir, "O"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return total
}

// TestStripedFileSurvivesRestart is the acceptance scenario of a striped,
// persistent filesystem: four OSTs, a 4-way striped file of random data, its
// bytes spread evenly, read back identical from a second client and again
// after the whole cluster restarts.
func TestStripedFileSurvivesRestart(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	dir := t.TempDir()
	c := startCluster(t, dir, 4)
	path := filepath.Join(c.mnt, "striped.bin")
	mustStrata(t, "setstripe", "-c", "4", "-S", "1M", path)
	sum := writeRandom(t, path, size)

	var doc getstripeDoc
	if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", path)), &doc); err != nil {
		t.Fatalf("getstripe --json: %v", err)
	}
	if len(doc.Components) != 1 || doc.Components[0].StripeCount != 4 || doc.Components[0].StripeSize != 1<<20 {
		t.Fatalf("layout = %+v, want one component of 4 stripes of 1 MiB", doc.Components)
	}
	if doc.Components[0].End != -1 || doc.Components[0].Pattern != "raid0" {
		t.Errorf("component = %+v, want end -1 and pattern raid0", doc.Components[0])
	}
	osts := map[int]bool{}
	for _, o := range doc.Components[0].Objects {
		osts[o.OST] = true
	}
	if len(osts) != 4 {
		t.Fatalf("objects on OSTs %v, want 4 distinct", osts)
	}
	for i := 0; i < 4; i++ {
		if got := ostBytes(t, filepath.Join(dir, "ost"+string(rune('0'+i)))); got != size/4 {
			t.Errorf("ost%d holds %d bytes, want %d (a quarter)", i, got, size/4)
		}
	}

	second := c.mountSecond(t)
	if got, n := hashFile(t, filepath.Join(second, "striped.bin")); got != sum || n != size {
		t.Fatalf("second client read %d bytes with a different hash", n)
	}
	if _, err := strata(t, "umount", second); err != nil {
		t.Fatal(err)
	}

	c.stop()
	c = startCluster(t, dir, 4)
	if got, n := hashFile(t, filepath.Join(c.mnt, "striped.bin")); got != sum || n != size {
		t.Fatalf("after restart read %d bytes with a different hash", n)
	}
	var again getstripeDoc
	if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", path)), &again); err != nil {
		t.Fatal(err)
	}
	if len(again.Components) != 1 || len(again.Components[0].Objects) != 4 ||
		again.Components[0].Objects[0] != doc.Components[0].Objects[0] {
		t.Errorf("layout changed across restart: %+v vs %+v", again.Components, doc.Components)
	}
}

// TestDirectoryDefaultInherited checks that setstripe on a directory sets
// the layout of files created below it, on every client.
func TestDirectoryDefaultInherited(t *testing.T) {
	c := startCluster(t, t.TempDir(), 3)
	d := filepath.Join(c.mnt, "wide")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	mustStrata(t, "setstripe", "-c", "-1", "-S", "128k", d)
	second := c.mountSecond(t)
	if err := os.WriteFile(filepath.Join(second, "wide", "f"), []byte(strings.Repeat("x", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	var doc getstripeDoc
	if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", filepath.Join(d, "f"))), &doc); err != nil {
		t.Fatal(err)
	}
	if c0 := doc.Components[0]; c0.StripeCount != 3 || c0.StripeSize != 128<<10 || len(c0.Objects) != 3 {
		t.Fatalf("inherited layout = %+v, want 3 stripes of 128 KiB", c0)
	}
	if b, err := os.ReadFile(filepath.Join(d, "f")); err != nil || len(b) != 1<<20 {
		t.Fatalf("first client reads %d bytes, %v", len(b), err)
	}
	// A file that holds data keeps its layout.
	if _, err := strata(t, "setstripe", "-c", "1", filepath.Join(d, "f")); err == nil {
		t.Errorf("setstripe on a file with data succeeded, want an error")
	}
}
