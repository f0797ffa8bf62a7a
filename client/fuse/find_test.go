package fuse

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// findThroughMount runs a search through the mount's find channel, as
// strata find does, and returns the matched paths (relative to dir),
// sorted, and the MDS requests it took.
func findThroughMount(t *testing.T, dir string, q FindQuery) ([]string, int) {
	t.Helper()
	id := fmt.Sprintf("t%d", rand.Uint64())
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(dir, xattrFindPrefix+id, b, 0); err != nil {
		t.Fatalf("start search: %v", err)
	}
	var paths []string
	buf := make([]byte, 64<<10)
	for seq := 0; ; seq++ {
		name := fmt.Sprintf("%s%s.%d", xattrFindPrefix, id, seq)
		if seq == 0 {
			// A size probe, as getfattr makes, must not lose a page.
			if _, err := unix.Getxattr(dir, name, nil); err != nil {
				t.Fatalf("probe page 0: %v", err)
			}
		}
		n, err := unix.Getxattr(dir, name, buf)
		if err != nil {
			t.Fatalf("page %d: %v", seq, err)
		}
		var page FindPage
		if err := json.Unmarshal(buf[:n], &page); err != nil {
			t.Fatalf("page %d: %v", seq, err)
		}
		for _, e := range page.Entries {
			paths = append(paths, e.Path)
		}
		if len(page.Errors) > 0 {
			t.Fatalf("search errors %+v", page.Errors)
		}
		if page.Done {
			slices.Sort(paths)
			return paths, page.Requests
		}
	}
}

// walked is what a walk through the mount learns of an entry.
type walked struct {
	rel   string
	depth int
	st    syscall.Stat_t
	lay   proto.GetLayoutResp
	hasLy bool
}

// walkMount walks dir as find(1) would, with lstat and getstripe on every
// entry.
func walkMount(t *testing.T, dir string) []walked {
	t.Helper()
	var out []walked
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			rel = ""
		}
		w := walked{rel: rel}
		if rel != "" {
			w.depth = strings.Count(rel, "/") + 1
		}
		if err := syscall.Lstat(p, &w.st); err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			out = append(out, w)
			return nil
		}
		buf := make([]byte, 16<<10)
		n, err := unix.Getxattr(p, xattrLayout, buf)
		if err == nil {
			w.hasLy = true
			if err := json.Unmarshal(buf[:n], &w.lay); err != nil {
				return err
			}
		}
		out = append(out, w)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cmp applies a FindCmp the way lfs find documents it, for the walk.
func cmpWalk(c proto.FindCmp, rounded uint64) bool {
	switch c.Sign {
	case 1:
		return rounded > c.N
	case -1:
		return rounded < c.N
	}
	return rounded == c.N
}

func ceilDiv(v, unit uint64) uint64 { return (v + unit - 1) / unit }

// walkMatch decides a filter for a walked entry from what the walk saw.
func walkMatch(f proto.FindFilter, w walked, nowSec int64) bool {
	mode := w.st.Mode
	if f.Type != 0 && mode&syscall.S_IFMT != f.Type {
		return false
	}
	if f.Name != "" {
		if ok, _ := filepath.Match(f.Name, filepath.Base("/"+w.rel)); !ok || w.rel == "" {
			return false
		}
	}
	if f.HasUid && w.st.Uid != f.Uid {
		return false
	}
	if f.Size.Set && !cmpWalk(f.Size, ceilDiv(uint64(w.st.Size), f.Size.Unit)) {
		return false
	}
	if f.Mtime.Set {
		// An entry changed after the search began is younger than
		// any whole number of days: only "-N" takes it.
		age := nowSec - w.st.Mtim.Sec
		if age < 0 && f.Mtime.Sign >= 0 || age >= 0 && !cmpWalk(f.Mtime, uint64(age)/f.Mtime.Unit) {
			return false
		}
	}
	if f.MaxDepth >= 0 && w.depth > int(f.MaxDepth) {
		return false
	}
	layoutTest := f.StripeCount.Set || f.StripeSize.Set || len(f.OSTs) > 0 || f.HasPool || f.Layout != ""
	if !layoutTest {
		return true
	}
	if !w.hasLy {
		return false
	}
	type comp struct {
		count, size uint64
		pool        string
		osts        []uint32
	}
	var comps []comp
	switch {
	case w.lay.IsDir && !w.lay.Spec.IsZero():
		for _, c := range w.lay.Spec.Components {
			comps = append(comps, comp{count: uint64(max(c.StripeCount, 0)), size: uint64(c.StripeSize), pool: c.Pool})
		}
		if len(f.OSTs) > 0 || f.Layout == "released" {
			return false
		}
	case !w.lay.IsDir:
		if f.Layout == "released" {
			return false
		}
		for _, c := range w.lay.Layout.Components {
			cc := comp{count: uint64(c.StripeCount), size: uint64(c.StripeSize), pool: c.Pool}
			for _, o := range c.Objects {
				cc.osts = append(cc.osts, o.OST)
			}
			comps = append(comps, cc)
		}
	default:
		return false
	}
	any := func(fn func(c comp) bool) bool { return slices.ContainsFunc(comps, fn) }
	return (!f.StripeCount.Set || any(func(c comp) bool { return c.count > 0 && cmpWalk(f.StripeCount, c.count) })) &&
		(!f.StripeSize.Set || any(func(c comp) bool { return c.size > 0 && cmpWalk(f.StripeSize, ceilDiv(c.size, f.StripeSize.Unit)) })) &&
		(!f.HasPool || any(func(c comp) bool { return c.pool == f.Pool })) &&
		(len(f.OSTs) == 0 || any(func(c comp) bool {
			return slices.ContainsFunc(c.osts, func(o uint32) bool { return slices.Contains(f.OSTs, o) })
		}))
}

// buildFindTree makes dirs*dirs leaf directories under top, with files
// files in each spread over them, through the library (faster than the
// kernel), with varied sizes, times, owners and layouts.
func buildFindTree(t *testing.T, cl *testcluster.Cluster, top string, dirs, files int, now time.Time) {
	t.Helper()
	c := cl.Client(t, client.Config{})
	ctx := context.Background()
	rc := rpc.NewClient(rpc.ClientConfig{Secret: cl.Secret})
	defer rc.Close()
	for _, req := range []proto.PoolReq{{Op: proto.PoolCreate, Name: "fast"}, {Op: proto.PoolAdd, Name: "fast", OSTs: []uint32{1, 2}}} {
		if err := rc.Call(ctx, cl.MDS, proto.OpPool, &req, &proto.PoolResp{}); err != nil {
			t.Fatal(err)
		}
	}
	specs := []layout.Spec{
		layout.DefaultSpec(2, 64<<10),
		{Components: []layout.ComponentSpec{{StripeCount: 1, StripeSize: 256 << 10, StripeOffset: -1}}},
		{Components: []layout.ComponentSpec{{StripeCount: 2, StripeOffset: -1, Pool: "fast"}}},
		{},
	}
	if err := c.MkdirAll(top, 0o777); err != nil {
		t.Fatal(err)
	}
	var leaves []uint64
	cred := proto.Cred{}
	for i := range dirs {
		d, err := c.Mkdir(ctx, cred, mustStat(t, c, top).Ino, fmt.Sprintf("d%d", i), 0o755, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		if s := specs[i%len(specs)]; !s.IsZero() {
			if _, err := c.SetLayout(ctx, cred, d.Ino, s); err != nil {
				t.Fatal(err)
			}
		}
		for j := range dirs {
			e, err := c.Mkdir(ctx, cred, d.Ino, fmt.Sprintf("e%d", j), 0o755, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			if s := specs[(i+j)%len(specs)]; j%2 == 1 && !s.IsZero() {
				if _, err := c.SetLayout(ctx, cred, e.Ino, s); err != nil {
					t.Fatal(err)
				}
			}
			leaves = append(leaves, e.Ino)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < files; i += 8 {
				if err := makeFindFile(ctx, c, leaves[i%len(leaves)], i, now); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// makeFindFile creates file i of the tree.
func makeFindFile(ctx context.Context, c *client.Client, dir uint64, i int, now time.Time) error {
	cred := proto.Cred{}
	if i%5 == 0 {
		cred = proto.Cred{Uid: 1000, Gid: 1000}
	}
	name := fmt.Sprintf("f%05d.%s", i, []string{"dat", "log", "txt"}[i%3])
	f, err := c.Create(ctx, proto.Cred{}, dir, name, 0o644, 0, os.O_RDWR|os.O_CREATE|os.O_EXCL, layout.Spec{})
	if err != nil {
		return err
	}
	if size := []int64{0, 1, 1023, 1024, 1025, 4096, 100 << 10, 3 << 20}[i%8]; size > 0 {
		if err := f.Truncate(size); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Ages from 0 to 29 days, mid-day, so no test sits on a boundary.
	mtime := now.Add(-time.Duration(i%30)*24*time.Hour - 12*time.Hour)
	req := proto.SetattrReq{Valid: proto.SetMtime | proto.SetAtime, Mtime: mtime.UnixNano(), Atime: mtime.UnixNano()}
	if cred.Uid != 0 {
		req.Valid |= proto.SetUid | proto.SetGid
		req.Uid, req.Gid = cred.Uid, cred.Gid
	}
	_, err = c.Setattr(ctx, proto.Cred{}, f.Ino(), req)
	return err
}

func mustStat(t *testing.T, c *client.Client, p string) proto.Attr {
	t.Helper()
	a, err := c.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestFindEqualsWalk compares strata find with a walk through the mount
// over 10,000 files for every filter, and counts the MDS requests: about
// one per page of matches, never one per entry.
func TestFindEqualsWalk(t *testing.T) {
	files := 10000
	if testing.Short() || raceEnabled {
		files = 1000 // the race detector's run checks the races, the plain run the 10,000
	}
	if n, err := strconv.Atoi(os.Getenv("STRATA_FIND_FILES")); err == nil && n > 0 {
		files = n // a larger tree, to measure
	}
	cl, mnt := startMount(t, client.Config{}, Options{})
	now := time.Now()
	built := time.Now()
	buildFindTree(t, cl, "/tree", 10, files, now)
	t.Logf("built %d files in %v", files, time.Since(built).Round(time.Millisecond))
	dir := filepath.Join(mnt, "tree")

	walkStart := time.Now()
	entries := walkMount(t, dir)
	walkTime := time.Since(walkStart)
	if len(entries) != files+111 {
		t.Fatalf("walk saw %d entries, want %d", len(entries), files+111)
	}
	nowSec := now.Unix()
	day := uint64(86400)
	cases := []struct {
		name string
		f    proto.FindFilter
	}{
		{"all", proto.FindFilter{}},
		{"type f", proto.FindFilter{Type: proto.ModeRegular}},
		{"type d", proto.FindFilter{Type: proto.ModeDir}},
		{"name", proto.FindFilter{Name: "f*7.log"}},
		{"user", proto.FindFilter{HasUid: true, Uid: 1000}},
		{"size +1k", proto.FindFilter{Size: proto.FindCmp{Set: true, Sign: 1, N: 1, Unit: 1024}}},
		{"size -1k", proto.FindFilter{Size: proto.FindCmp{Set: true, Sign: -1, N: 1, Unit: 1024}}},
		{"size 1k", proto.FindFilter{Size: proto.FindCmp{Set: true, N: 1, Unit: 1024}}},
		{"size 1025", proto.FindFilter{Size: proto.FindCmp{Set: true, N: 1025, Unit: 1}}},
		{"size +2M", proto.FindFilter{Size: proto.FindCmp{Set: true, Sign: 1, N: 2, Unit: 1 << 20}}},
		{"mtime +20", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, Sign: 1, N: 20, Unit: day}}},
		{"mtime -3", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, Sign: -1, N: 3, Unit: day}}},
		{"mtime 7", proto.FindFilter{Now: nowSec, Mtime: proto.FindCmp{Set: true, N: 7, Unit: day}}},
		{"stripe-count 2", proto.FindFilter{StripeCount: proto.FindCmp{Set: true, N: 2, Unit: 1}}},
		{"stripe-count -2", proto.FindFilter{StripeCount: proto.FindCmp{Set: true, Sign: -1, N: 2, Unit: 1}}},
		{"stripe-size +64k", proto.FindFilter{StripeSize: proto.FindCmp{Set: true, Sign: 1, N: 64, Unit: 1024}}},
		{"stripe-size 256k", proto.FindFilter{StripeSize: proto.FindCmp{Set: true, N: 256, Unit: 1024}}},
		{"ost 3", proto.FindFilter{OSTs: []uint32{3}}},
		{"ost 0,2", proto.FindFilter{OSTs: []uint32{0, 2}}},
		{"pool", proto.FindFilter{HasPool: true, Pool: "fast"}},
		{"layout raid0", proto.FindFilter{Layout: "raid0"}},
		{"layout released", proto.FindFilter{Layout: "released"}},
		{"maxdepth 2", proto.FindFilter{MaxDepth: 2, Type: proto.ModeDir}},
		{"maxdepth 0", proto.FindFilter{MaxDepth: 0}},
		{"combined", proto.FindFilter{Type: proto.ModeRegular, Name: "*.dat", Size: proto.FindCmp{Set: true, Sign: 1, N: 0, Unit: 1},
			Now: nowSec, Mtime: proto.FindCmp{Set: true, Sign: -1, N: 10, Unit: day}, StripeCount: proto.FindCmp{Set: true, N: 2, Unit: 1}}},
	}
	for _, c := range cases {
		f := c.f
		if f.MaxDepth == 0 && c.name != "maxdepth 0" {
			f.MaxDepth = -1
		}
		var want []string
		for _, w := range entries {
			if walkMatch(f, w, nowSec) {
				want = append(want, w.rel)
			}
		}
		slices.Sort(want)
		start := time.Now()
		got, requests := findThroughMount(t, dir, FindQuery{Filter: f, Name: "tree"})
		took := time.Since(start)
		if !slices.Equal(got, want) {
			t.Errorf("%s: find gave %d entries, the walk %d; first differences: %v", c.name, len(got), len(want), firstDiff(got, want))
		}
		// A page ends at FindPageLimit matches, or having looked at
		// thousands of entries (2,048 at least, 8,192 at most): the
		// request count follows pages, never entries one by one.
		if maxReq := len(got)/client.FindPageLimit + (files+111)/2048 + 2; requests > maxReq {
			t.Errorf("%s: %d MDS requests for %d matches over %d entries, want at most %d", c.name, requests, len(got), len(entries), maxReq)
		}
		if c.name == "size +1k" {
			t.Logf("strata find -size +1k: %v for %d entries (%d matches, %d MDS requests)", took.Round(time.Millisecond), len(entries), len(got), requests)
		}
		if c.name == "all" {
			t.Logf("find over %d entries: %v (%.0f entries/s, %d MDS requests); walk with lstat+getstripe through the mount: %v (%.0f entries/s)",
				len(entries), took.Round(time.Millisecond), float64(len(entries))/took.Seconds(), requests,
				walkTime.Round(time.Millisecond), float64(len(entries))/walkTime.Seconds())
		}
	}
	if err := exec.Command("find", dir, "-type", "f").Run(); err == nil { // warm the kernel's caches, as the walk did
		start := time.Now()
		out, _ := exec.Command("find", dir, "-size", "+1k").Output()
		t.Logf("find(1) -size +1k through the mount: %v for %d entries (%d lines)", time.Since(start).Round(time.Millisecond),
			len(entries), strings.Count(string(out), "\n"))
	}
}

// firstDiff lists a few paths in one list and not the other.
func firstDiff(got, want []string) []string {
	var out []string
	for _, p := range got {
		if _, ok := slices.BinarySearch(want, p); !ok && len(out) < 5 {
			out = append(out, "+"+p)
		}
	}
	for _, p := range want {
		if _, ok := slices.BinarySearch(got, p); !ok && len(out) < 10 {
			out = append(out, "-"+p)
		}
	}
	return out
}

// TestFindChannel: the find channel's pages, their order and the end of a
// search (the MDS tests cover what other users may see).
func TestFindChannel(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	top := filepath.Join(mnt, "p")
	for _, d := range []string{"p/open/a", "p/closed/b"} {
		if err := os.MkdirAll(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"p/open/a/x", "p/closed/b/y"} {
		if err := os.WriteFile(filepath.Join(mnt, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(top, "closed"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(FindQuery{Filter: proto.FindFilter{MaxDepth: -1}, Name: "p"})
	if err := unix.Setxattr(top, xattrFindPrefix+"root1", b, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(top, xattrFindPrefix+"root1.0", buf)
	if err != nil {
		t.Fatal(err)
	}
	var page FindPage
	if err := json.Unmarshal(buf[:n], &page); err != nil || !page.Done || len(page.Entries) != 7 {
		t.Fatalf("root's search: %+v (%v)", page, err)
	}
	if _, err := unix.Getxattr(top, xattrFindPrefix+"root1.5", buf); err != syscall.EINVAL {
		t.Fatalf("skipping pages: %v, want EINVAL", err)
	}
	if err := unix.Removexattr(top, xattrFindPrefix+"root1"); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(top, xattrFindPrefix+"root1.0", buf); err != syscall.ENODATA {
		t.Fatalf("ended search: %v, want ENODATA", err)
	}
}
