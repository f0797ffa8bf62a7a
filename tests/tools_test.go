package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestLustreTools runs strata pool, find, migrate and changelog as a user
// would, through the binary on a mounted filesystem.
func TestLustreTools(t *testing.T) {
	// Other users must reach the mount (quota): t.TempDir's parent is
	// private.
	dir, err := os.MkdirTemp("", "strata-tools-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, dir, 3)
	cfg := filepath.Join(dir, "client.yaml")

	// Changelog consumer first, so it sees everything below.
	reg := mustStrata(t, "changelog", "register", "--name", "indexer", "--config", cfg)
	if strings.TrimSpace(reg) != "Registered changelog userid 'cl1'" {
		t.Fatalf("register: %q", reg)
	}

	t.Run("pool", func(t *testing.T) {
		mustStrata(t, "pool", "create", "strata.fast", "--config", cfg)
		mustStrata(t, "pool", "add", "strata.fast", "OST[0-1]", "--config", cfg)
		var pl struct {
			FSName string `json:"fsname"`
			Pools  []struct {
				Name string   `json:"name"`
				OSTs []uint32 `json:"osts"`
			} `json:"pools"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "pool", "list", "--json", c.mnt)), &pl); err != nil {
			t.Fatal(err)
		}
		if len(pl.Pools) != 1 || pl.Pools[0].Name != "fast" || !slices.Equal(pl.Pools[0].OSTs, []uint32{0, 1}) {
			t.Fatalf("pool list: %+v", pl)
		}
		if out := mustStrata(t, "pool", "list", "strata.fast", "--config", cfg); !strings.Contains(out, "Pool: strata.fast\nstrata-OST0000_UUID\nstrata-OST0001_UUID") {
			t.Fatalf("pool list strata.fast:\n%s", out)
		}
		pd := filepath.Join(c.mnt, "pooled")
		if err := os.Mkdir(pd, 0o755); err != nil {
			t.Fatal(err)
		}
		mustStrata(t, "setstripe", "-c", "2", "-p", "fast", pd)
		for i := range 4 {
			if err := os.WriteFile(filepath.Join(pd, string(rune('a'+i))), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			var doc getstripeDoc
			if err := json.Unmarshal([]byte(mustStrata(t, "getstripe", "--json", filepath.Join(pd, string(rune('a'+i))))), &doc); err != nil {
				t.Fatal(err)
			}
			comp := doc.Components[0]
			if comp.Pool != "fast" || len(comp.Objects) != 2 {
				t.Fatalf("file in the pool's directory: %+v", comp)
			}
			for _, o := range comp.Objects {
				if o.OST > 1 {
					t.Fatalf("object on OST %d, outside pool fast", o.OST)
				}
			}
		}
		var df struct {
			Targets []struct {
				Kind  string `json:"kind"`
				Index uint32 `json:"index"`
			} `json:"targets"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "df", "--pool", "fast", "--json", c.mnt)), &df); err != nil {
			t.Fatal(err)
		}
		var osts []uint32
		for _, tg := range df.Targets {
			if tg.Kind == "ost" {
				osts = append(osts, tg.Index)
			}
		}
		if !slices.Equal(osts, []uint32{0, 1}) {
			t.Fatalf("df --pool fast lists OSTs %v", osts)
		}
		if _, err := strata(t, "pool", "destroy", "strata.fast", "--config", cfg); err == nil {
			t.Fatal("destroyed a pool with OSTs in it")
		}
	})

	t.Run("find", func(t *testing.T) {
		top := filepath.Join(c.mnt, "tree")
		for _, d := range []string{"tree/a/b", "tree/c"} {
			if err := os.MkdirAll(filepath.Join(c.mnt, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		files := map[string]int{"tree/a/small.c": 10, "tree/a/b/big.dat": 3 << 20, "tree/c/mid.c": 5000, "tree/top.c": 0}
		for f, n := range files {
			if err := os.WriteFile(filepath.Join(c.mnt, f), bytes.Repeat([]byte("z"), n), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		lines := func(out string) []string {
			l := strings.Split(strings.TrimSpace(out), "\n")
			slices.Sort(l)
			return l
		}
		abs := func(rel ...string) []string {
			var out []string
			for _, r := range rel {
				out = append(out, filepath.Join(c.mnt, r))
			}
			slices.Sort(out)
			return out
		}
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--type", "f"}, abs("tree/a/small.c", "tree/a/b/big.dat", "tree/c/mid.c", "tree/top.c")},
			{[]string{"-name", "*.c", "-size", "+1k"}, abs("tree/c/mid.c")},
			{[]string{"--size", "-1k", "--type", "f"}, abs("tree/top.c")}, // rounded up: only empty files are under 1k
			{[]string{"--size", "1k", "--type", "f"}, abs("tree/a/small.c")},
			{[]string{"--size", "+2M"}, abs("tree/a/b/big.dat")},
			{[]string{"-maxdepth", "1", "-type", "d"}, abs("tree", "tree/a", "tree/c")},
			{[]string{"--mtime", "-1", "--type", "f", "--name", "*.dat"}, abs("tree/a/b/big.dat")},
			{[]string{"--layout", "raid0", "--stripe-count", "1", "--name", "big*"}, abs("tree/a/b/big.dat")},
		} {
			got := lines(mustStrata(t, append([]string{"find", top}, tc.args...)...))
			if !slices.Equal(got, tc.want) {
				t.Errorf("find %v: got %v, want %v", tc.args, got, tc.want)
			}
		}
		out := mustStrata(t, "find", top, "-name", "*.c", "-print0")
		if n := strings.Count(out, "\x00"); n != 3 || strings.Contains(out, "\n") {
			t.Errorf("-print0: %q", out)
		}
		var doc struct {
			Path    string `json:"path"`
			Entries []struct {
				Path string `json:"path"`
				Type string `json:"type"`
				Size uint64 `json:"size"`
			} `json:"entries"`
			Requests int `json:"requests"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "find", top, "--json", "--type", "f", "--size", "+2M")), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Path != top || len(doc.Entries) != 1 || doc.Entries[0].Size != 3<<20 || doc.Entries[0].Type != "f" || doc.Requests < 1 {
			t.Errorf("find --json: %+v", doc)
		}
		if _, err := strata(t, "find", top, "--bogus"); err == nil {
			t.Error("find accepted an unknown option")
		}
	})

	t.Run("migrate", func(t *testing.T) {
		p := filepath.Join(c.mnt, "mig")
		data := bytes.Repeat([]byte("migrate me "), 500000)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		before, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc getstripeDoc
		if err := json.Unmarshal([]byte(mustStrata(t, "migrate", "--json", "-c", "3", "-S", "128k", p)), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.LayoutGen != 2 || doc.Components[0].StripeCount != 3 || doc.Components[0].StripeSize != 128<<10 {
			t.Fatalf("after migrate: %+v", doc)
		}
		after, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
			t.Fatal("migrate changed the inode number")
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("data after migrate differs (%v)", err)
		}
	})

	t.Run("quota", func(t *testing.T) {
		qd := filepath.Join(c.mnt, "quota")
		if err := os.Mkdir(qd, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(qd, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
		// Inode limit for user other: EDQUOT at the third create.
		mustStrata(t, "setquota", "-u", itoa(uint64(other.uid)), "-I", "2", "-B", "10M", c.mnt, "--config", cfg)
		for i, want := range []error{nil, nil, syscall.EDQUOT} {
			if err := runAs(t, other, "create", filepath.Join(qd, "o"+itoa(uint64(i))), "644"); err != want {
				t.Fatalf("create %d as uid %d: %v, want %v", i, other.uid, err, want)
			}
		}
		var q struct {
			Type   string `json:"type"`
			ID     uint32 `json:"id"`
			Files  int64  `json:"files"`
			Limits struct {
				InodeHard uint64 `json:"inode_hard"`
				BlockHard uint64 `json:"block_hard"`
			} `json:"limits"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "quota", "-u", itoa(uint64(other.uid)), "--json", c.mnt)), &q); err != nil {
			t.Fatal(err)
		}
		if q.Type != "usr" || q.ID != other.uid || q.Files != 2 || q.Limits.InodeHard != 2 || q.Limits.BlockHard != 10<<20 {
			t.Fatalf("quota --json: %+v", q)
		}
		if out := mustStrata(t, "quota", "-u", itoa(uint64(other.uid)), c.mnt); !strings.Contains(out, "Disk quotas for usr") ||
			!strings.Contains(out, "kbytes") {
			t.Fatalf("quota:\n%s", out)
		}
		// Projects: set with inherit, shown by project, counted by quota -p.
		pd := filepath.Join(qd, "proj")
		if err := os.Mkdir(pd, 0o755); err != nil {
			t.Fatal(err)
		}
		mustStrata(t, "project", "-p", "42", "-s", pd)
		if err := os.WriteFile(filepath.Join(pd, "f"), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := mustStrata(t, "project", "-r", pd); !strings.Contains(out, "   42 P "+pd+"\n") || !strings.Contains(out, "   42 - "+pd+"/f") {
			t.Fatalf("project -r:\n%s", out)
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "quota", "-p", "42", "--json", c.mnt)), &q); err != nil {
			t.Fatal(err)
		}
		if q.Type != "prj" || q.Files != 2 {
			t.Fatalf("quota -p 42: %+v", q)
		}
	})

	t.Run("changelog", func(t *testing.T) {
		if err := os.Rename(filepath.Join(c.mnt, "tree/top.c"), filepath.Join(c.mnt, "tree/moved.c")); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Entries []struct {
				Index      uint64 `json:"index"`
				Type       string `json:"type"`
				Name       string `json:"name"`
				SourceName string `json:"source_name"`
			} `json:"entries"`
		}
		if err := json.Unmarshal([]byte(mustStrata(t, "changelog", "--json", "--user", "cl1", "--config", cfg)), &doc); err != nil {
			t.Fatal(err)
		}
		var types []string
		renamed := false
		for _, e := range doc.Entries {
			types = append(types, e.Type)
			renamed = renamed || e.Type == "RENME" && e.Name == "moved.c" && e.SourceName == "top.c"
		}
		for _, want := range []string{"MKDIR", "CREAT", "CLOSE", "LYOUT", "MIGRT"} {
			if !slices.Contains(types, want) {
				t.Errorf("changelog lacks %s: %v", want, types)
			}
		}
		if !renamed {
			t.Errorf("changelog lacks the rename of top.c: %+v", doc.Entries)
		}
		last := doc.Entries[len(doc.Entries)-1].Index
		text := mustStrata(t, "changelog", "--config", cfg)
		if !strings.Contains(text, "08RENME") || !strings.Contains(text, " s=[0x") {
			t.Errorf("changelog text:\n%s", text)
		}
		mustStrata(t, "changelog", "clear", "cl1", "MDT0000:"+itoa(last), "--config", cfg)
		out := mustStrata(t, "changelog", "--json", "--user", "cl1", "--config", cfg)
		if strings.Contains(out, `"index"`) {
			t.Errorf("entries after clearing them all: %s", out)
		}
		mustStrata(t, "changelog", "deregister", "cl1", "--config", cfg)
		if out := mustStrata(t, "changelog", "list", "--config", cfg); strings.TrimSpace(out) != "" {
			t.Errorf("consumers after deregister: %q", out)
		}
	})
}

func itoa(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
