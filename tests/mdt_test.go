package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMDTPlacement checks mkdir -i, getdirstripe and mdts on a filesystem
// with two MDTs: a directory lands on the MDT asked for, its entries work
// through the mount, and a missing MDT is refused.
func TestMDTPlacement(t *testing.T) {
	c := startCluster(t, t.TempDir(), 1, "--mds", "2")
	for _, mdt := range []string{"0", "1"} {
		d := filepath.Join(c.mnt, "on"+mdt)
		mustStrata(t, "mkdir", "-i", mdt, "-m", "0750", d)
		var doc struct {
			MDTIndex    int `json:"mdt_index"`
			StripeCount int `json:"stripe_count"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "getdirstripe", "--json", d)), &doc); err != nil {
			t.Fatal(err)
		}
		if want := int(mdt[0] - '0'); doc.MDTIndex != want {
			t.Errorf("getdirstripe %s: MDT %d, want %d", d, doc.MDTIndex, want)
		}
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o750 || !fi.IsDir() {
			t.Fatalf("stat %s: %v %v", d, fi, err)
		}
		f := filepath.Join(d, "file")
		if err := os.WriteFile(f, []byte("on "+mdt), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(f); err != nil || string(b) != "on "+mdt {
			t.Fatalf("read back %q %v", b, err)
		}
	}
	if !strings.Contains(mustStrata(t, "getdirstripe", filepath.Join(c.mnt, "on1")), "lmv_stripe_offset: 1") {
		t.Errorf("getdirstripe text lacks lmv_stripe_offset: 1")
	}
	if _, err := strata(t, "mkdir", "-i", "7", filepath.Join(c.mnt, "nowhere")); err == nil {
		t.Errorf("mkdir -i 7 on a 2-MDT filesystem succeeded")
	}
	if _, err := os.Stat(filepath.Join(c.mnt, "nowhere")); !os.IsNotExist(err) {
		t.Errorf("refused mkdir left %v", err)
	}
	var mdts struct {
		MDTs []struct {
			Index int `json:"index"`
		} `json:"mdts"`
	}
	if err := json.Unmarshal([]byte(mustStrata(t, "mdts", "--json", c.mnt)), &mdts); err != nil || len(mdts.MDTs) != 2 {
		t.Errorf("mdts --json: %+v %v", mdts, err)
	}
}
