package tests

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestCLIContract runs the verbs of ../shared/CLI.md against one cluster and
// checks the spellings and JSON fields scripts rely on.
func TestCLIContract(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, dir, 2)

	t.Run("getstripe text", func(t *testing.T) {
		p := filepath.Join(c.mnt, "text")
		mustStrata(t, "setstripe", "-c", "2", "-S", "256k", p)
		out := mustStrata(t, "getstripe", p)
		for _, want := range []string{"lmm_stripe_count:  2", "lmm_stripe_size:   262144", "lmm_pattern:       raid0",
			"lmm_layout_gen:", "lmm_stripe_offset:", "obdidx", "objid", "group"} {
			if !strings.Contains(out, want) {
				t.Errorf("getstripe output lacks %q:\n%s", want, out)
			}
		}
		rows := regexp.MustCompile(`(?m)^\s+\d+\s+\d+\s+0x[0-9a-f]+\s+0x[0-9a-f]+$`).FindAllString(out, -1)
		if len(rows) != 2 {
			t.Errorf("want 2 object rows, got %d:\n%s", len(rows), out)
		}
	})

	t.Run("composite layout", func(t *testing.T) {
		p := filepath.Join(c.mnt, "pfl")
		mustStrata(t, "setstripe", "-E", "1M", "-c", "1", "-E", "-1", "-c", "2", "-S", "128k", p)
		var doc getstripeDoc
		if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", p)), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Components) != 2 || doc.Components[0].End != 1<<20 || doc.Components[1].Start != 1<<20 ||
			doc.Components[1].End != -1 || doc.Components[1].StripeCount != 2 {
			t.Fatalf("components = %+v", doc.Components)
		}
		data := make([]byte, 3<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != string(data) {
			t.Fatalf("PFL file read back differs (err %v)", err)
		}
	})

	t.Run("df json", func(t *testing.T) {
		var doc struct {
			Targets []struct {
				Name  string `json:"name"`
				Kind  string `json:"kind"`
				Index int    `json:"index"`
				Total uint64 `json:"total"`
				Used  uint64 `json:"used"`
				Avail uint64 `json:"avail"`
			} `json:"targets"`
			Total, Used, Avail uint64
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "df", "--json", c.mnt)), &doc); err != nil {
			t.Fatal(err)
		}
		var osts, mdts int
		var sum uint64
		for _, tg := range doc.Targets {
			switch tg.Kind {
			case "ost":
				osts++
				sum += tg.Total
				if !regexp.MustCompile(`^strata-OST[0-9a-f]{4}$`).MatchString(tg.Name) || tg.Total == 0 || tg.Avail > tg.Total {
					t.Errorf("bad OST entry %+v", tg)
				}
			case "mdt":
				mdts++
			default:
				t.Errorf("target kind %q", tg.Kind)
			}
		}
		if osts != 2 || mdts != 1 || doc.Total != sum {
			t.Errorf("df: %d OSTs, %d MDTs, total %d vs sum %d", osts, mdts, doc.Total, sum)
		}
		for _, args := range [][]string{{"df"}, {"df", "-h", c.mnt}, {"df", "-i", c.mnt}} {
			if out := mustStrata(t, args...); !strings.Contains(out, "filesystem_summary:") || !strings.Contains(out, "strata-OST0001_UUID") {
				t.Errorf("strata %v output:\n%s", args, out)
			}
		}
	})

	t.Run("osts", func(t *testing.T) {
		// Data on both OSTs, so the mount has reached both OSSes.
		wide := filepath.Join(c.mnt, "osts-wide")
		mustStrata(t, "setstripe", "-c", "2", "-S", "64K", wide)
		if err := os.WriteFile(wide, make([]byte, 256<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			OSTs []struct {
				Index     int    `json:"index"`
				Active    bool   `json:"active"`
				Transport string `json:"transport"`
			} `json:"osts"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "osts", "--json", c.mnt)), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.OSTs) != 2 || !doc.OSTs[0].Active || !doc.OSTs[1].Active {
			t.Errorf("osts = %+v", doc.OSTs)
		}
		for _, o := range doc.OSTs {
			if o.Transport != "tcp" { // no RDMA device here: the fallback
				t.Errorf("OST %d reached over %q, want tcp", o.Index, o.Transport)
			}
		}
	})

	t.Run("bench", func(t *testing.T) {
		var doc struct {
			Results []struct {
				Name  string  `json:"name"`
				Value float64 `json:"value"`
				Unit  string  `json:"unit"`
				Count int64   `json:"count"`
			} `json:"results"`
		}
		out := mustStrata(t, "bench", "--json", "--big-file-size", "4M", "--small-files", "5", "--meta-ops", "20", "--threads", "2", c.mnt)
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("bench --json: %v: %s", err, out)
		}
		want := []string{"big file write", "big file read", "small file write", "small file read", "create", "stat", "readdir", "unlink",
			"shared file write", "shared file read", "shared dir create", "shared dir unlink"}
		if len(doc.Results) != len(want) {
			t.Fatalf("bench results %+v, want %v", doc.Results, want)
		}
		for i, r := range doc.Results {
			if r.Name != want[i] || r.Value <= 0 || r.Count <= 0 {
				t.Errorf("bench result %d = %+v, want %s with a rate", i, r, want[i])
			}
		}
		if ents, _ := os.ReadDir(c.mnt); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), "strata-bench-") }) {
			t.Error("bench left its directory behind")
		}
	})

	t.Run("errors are one line", func(t *testing.T) {
		missing := filepath.Join(c.mnt, "no-such-file")
		cmd := exec.Command(strataBin, "getstripe", missing)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("getstripe on a missing file succeeded")
		}
		line := strings.TrimSpace(string(out))
		if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "strata: getstripe: "+missing+": ") {
			t.Errorf("error output %q, want one line 'strata: getstripe: PATH: reason'", line)
		}
	})

	t.Run("lfs spelling", func(t *testing.T) {
		lfs := filepath.Join(t.TempDir(), "lfs")
		if err := os.Symlink(strataBin, lfs); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(lfs, "getstripe", filepath.Join(c.mnt, "text")).Output()
		if err != nil || !strings.Contains(string(out), "lmm_stripe_count:  2") {
			t.Errorf("lfs getstripe: %v\n%s", err, out)
		}
	})

	t.Run("version", func(t *testing.T) {
		var v map[string]string
		if err := json.Unmarshal([]byte(mustStrata(t, "version", "--json")), &v); err != nil || v["version"] == "" {
			t.Errorf("version --json: %v %v", v, err)
		}
	})
}

// TestSecurity checks that a wrong secret is refused and that a malformed
// frame never takes the server down.
func TestSecurity(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, dir, 1)
	var cf struct {
		FSName string   `yaml:"fsname"`
		MDS    []string `yaml:"mds"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "client.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cf); err != nil || len(cf.MDS) == 0 {
		t.Fatalf("client.yaml: %v %+v", err, cf)
	}

	t.Run("wrong secret", func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(secret, []byte("not-the-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mnt := t.TempDir()
		_, err := strata(t, "mount", "--secret-file", secret, cf.MDS[0]+":/"+cf.FSName, mnt)
		if err == nil {
			_ = exec.Command("fusermount3", "-u", mnt).Run()
			t.Fatal("mount with a wrong secret succeeded")
		}
		if !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("error %q does not say authentication failed", err)
		}
		if isMountPoint(mnt) {
			t.Errorf("%s is mounted after a refused mount", mnt)
		}
	})

	t.Run("malformed frames", func(t *testing.T) {
		frames := [][]byte{
			[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			append([]byte("STRA\x01\x00\x00\x01"), make([]byte, 24)...),
			{0x53, 0x54, 0x52, 0x41, 1, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
			make([]byte, 3),
		}
		for _, f := range frames {
			conn, err := net.DialTimeout("tcp", cf.MDS[0], 5*time.Second)
			if err != nil {
				t.Fatalf("dial MDS: %v", err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write(f)
			_, _ = conn.Read(make([]byte, 4096))
			conn.Close()
		}
		// The filesystem still works after the garbage.
		p := filepath.Join(c.mnt, "after-garbage")
		if err := os.WriteFile(p, []byte("still alive"), 0o644); err != nil {
			t.Fatalf("write after malformed frames: %v", err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "still alive" {
			t.Fatalf("read after malformed frames: %q %v", b, err)
		}
	})
}
