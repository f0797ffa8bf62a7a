package mds

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Find (strata find, lfs find) runs in the MDS over its records: a
// depth-first walk of the subtree's entries, reading each entry's inode
// from the store, one bounded page per request (see proto.FindReq). The
// caller's permissions are checked as a walk through the namespace would
// check them: a directory is searched only if the caller may read and
// search it (else the page reports EACCES for it and the walk goes on),
// and an entry's attributes are seen only through a searchable directory.
//
// A page is one read-only snapshot; the walk as a whole is not (no more
// than find(1)'s walk through a live namespace is). Entries of a
// directory are visited in name order, and a subdirectory is searched
// when it is met, so the position of the walk is the stack of directories
// it is in with the last name done in each.

// Page bounds.
const (
	findMaxLimit   = 1000                   // matches one page reports at most
	findScanBudget = 8192                   // entries one page looks at, about
	findMinScan    = 2048                   // entries a page looks at before its time runs out
	findPageTime   = 250 * time.Millisecond // time one page takes, about
	findChunk      = 256                    // entries read from the store at a time
	findMaxStack   = 4096                   // depth of the walk, at most
)

// findFilter is a proto.FindFilter ready to test entries.
type findFilter struct {
	proto.FindFilter
	pattern    string // Name in Go's path.Match syntax
	needLayout bool   // whether a test reads file layouts
}

// compileFindFilter checks a filter and prepares it.
func compileFindFilter(f proto.FindFilter) (*findFilter, error) {
	ff := &findFilter{FindFilter: f}
	if f.Name != "" {
		ff.pattern = globToMatch(f.Name)
		if _, err := path.Match(ff.pattern, ""); err != nil {
			return nil, fmt.Errorf("mds: find -name %q: %v: %w", f.Name, err, syscall.EINVAL)
		}
	}
	switch f.Layout {
	case "", "raid0", "released":
	default:
		return nil, fmt.Errorf("mds: find --layout %q (want raid0 or released): %w", f.Layout, syscall.EINVAL)
	}
	ff.needLayout = f.StripeCount.Set || f.StripeSize.Set || len(f.OSTs) > 0 || f.HasPool || f.Layout != ""
	return ff, nil
}

// globToMatch turns a shell pattern (fnmatch: [!...] negates a class)
// into path.Match's syntax ([^...]).
func globToMatch(p string) string {
	if !strings.Contains(p, "[!") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		b.WriteByte(p[i])
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			b.WriteByte(p[i])
		case p[i] == '[' && i+1 < len(p) && p[i+1] == '!':
			b.WriteByte('^')
			i++
		}
	}
	return b.String()
}

// cmpRounded applies an lfs find test to v: rounded up to the unit for
// sizes and counts, then compared with the test's N.
func cmpRounded(c proto.FindCmp, v uint64) bool {
	if !c.Set {
		return true
	}
	unit := max(c.Unit, 1)
	r := v / unit
	if v%unit != 0 {
		r++
	}
	return cmpSign(c.Sign, r, c.N)
}

// cmpAge applies an lfs find time test to an age in seconds, rounded down
// to the unit (a day unless given), as find -mtime does.
func cmpAge(c proto.FindCmp, age int64) bool {
	if !c.Set {
		return true
	}
	unit := int64(max(c.Unit, 1))
	r := age / unit
	if age < 0 && age%unit != 0 {
		r-- // floor, for times in the future
	}
	if r < 0 {
		return c.Sign < 0
	}
	return cmpSign(c.Sign, uint64(r), c.N)
}

func cmpSign(sign int8, v, n uint64) bool {
	switch {
	case sign > 0:
		return v > n
	case sign < 0:
		return v < n
	}
	return v == n
}

// match reports whether the entry name with inode in satisfies the filter.
func (f *findFilter) match(name string, in *inode) bool {
	if f.Type != 0 && in.Mode&proto.ModeType != f.Type {
		return false
	}
	if f.pattern != "" {
		if ok, _ := path.Match(f.pattern, name); !ok {
			return false
		}
	}
	if f.HasUid && in.Uid != f.Uid {
		return false
	}
	if !cmpRounded(f.Size, in.Size) {
		return false
	}
	if f.Mtime.Set && !cmpAge(f.Mtime, f.Now-floorSeconds(in.Mtime)) {
		return false
	}
	if !f.needLayout {
		return true
	}
	switch {
	case in.isRegular() && in.Layout != nil:
		return f.matchLayout(in.Layout)
	case in.isDir() && in.DirLayout != nil && !in.DirLayout.IsZero():
		return f.matchDirDefault(in.DirLayout)
	}
	return false
}

// floorSeconds converts unix nanoseconds to whole seconds, as stat's
// st_mtime has them.
func floorSeconds(ns int64) int64 {
	s := ns / int64(time.Second)
	if ns < 0 && ns%int64(time.Second) != 0 {
		s--
	}
	return s
}

// matchLayout applies the layout tests to a file's layout: each test must
// hold for some component (lfs find over a composite layout).
func (f *findFilter) matchLayout(l *layout.Layout) bool {
	released := l.Released
	switch {
	case f.Layout == "released" && !released:
		return false
	case f.Layout == "raid0" && released:
		return false
	}
	comps := l.Components
	if f.StripeCount.Set && !slices.ContainsFunc(comps, func(c layout.Component) bool {
		return cmpRounded(f.StripeCount, uint64(c.StripeCount))
	}) {
		return false
	}
	if f.StripeSize.Set && !slices.ContainsFunc(comps, func(c layout.Component) bool {
		return cmpRounded(f.StripeSize, uint64(c.StripeSize))
	}) {
		return false
	}
	if f.HasPool && !slices.ContainsFunc(comps, func(c layout.Component) bool { return c.Pool == f.Pool }) {
		return false
	}
	if len(f.OSTs) > 0 && !slices.ContainsFunc(comps, func(c layout.Component) bool {
		return slices.ContainsFunc(c.Objects, func(o layout.Object) bool { return slices.Contains(f.OSTs, o.OST) })
	}) {
		return false
	}
	return true
}

// matchDirDefault applies the layout tests to a directory's default
// layout as stored (unset fields are inherited, and never match a test of
// them). A default lists objects on no OST and is never released.
func (f *findFilter) matchDirDefault(s *layout.Spec) bool {
	if len(f.OSTs) > 0 || f.Layout == "released" {
		return false
	}
	comps := s.Components
	if f.StripeCount.Set && !slices.ContainsFunc(comps, func(c layout.ComponentSpec) bool {
		return c.StripeCount > 0 && cmpRounded(f.StripeCount, uint64(c.StripeCount))
	}) {
		return false
	}
	if f.StripeSize.Set && !slices.ContainsFunc(comps, func(c layout.ComponentSpec) bool {
		return c.StripeSize > 0 && cmpRounded(f.StripeSize, uint64(c.StripeSize))
	}) {
		return false
	}
	if f.HasPool && !slices.ContainsFunc(comps, func(c layout.ComponentSpec) bool { return c.Pool == f.Pool }) {
		return false
	}
	return true
}

// findPage is the state of one page of a walk.
type findPage struct {
	s      *Service
	t      *mtx
	req    *proto.FindReq
	f      *findFilter
	limit  int
	resp   proto.FindResp
	stack  []proto.FindFrame
	inodes map[uint64]*inode // read this page
	until  time.Time
}

// Find serves one page of strata find.
func (s *Service) Find(ctx context.Context, req *proto.FindReq) (*proto.FindResp, error) {
	f, err := compileFindFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	if len(req.Stack) > findMaxStack {
		return nil, fmt.Errorf("mds: find: walk %d directories deep: %w", len(req.Stack), syscall.ELOOP)
	}
	limit := req.Limit
	if limit <= 0 || limit > findMaxLimit {
		limit = findMaxLimit
	}
	p := &findPage{s: s, req: req, f: f, limit: limit}
	err = s.view(ctx, func(t *mtx) error {
		p.t, p.resp, p.inodes = t, proto.FindResp{}, map[uint64]*inode{}
		p.stack = slices.Clone(req.Stack)
		p.until = time.Now().Add(findPageTime)
		return p.run()
	})
	if err != nil {
		return nil, err
	}
	p.resp.Stack = p.stack
	return &p.resp, nil
}

// full reports whether the page has done its share: a page of matches,
// or the entries it may look at, or its time once it has looked at a
// minimum (so a slow MDS still answers in pages of thousands of entries).
func (p *findPage) full() bool {
	return len(p.resp.Entries) >= p.limit || p.resp.Scanned >= findScanBudget ||
		p.resp.Scanned >= findMinScan && time.Now().After(p.until)
}

// run walks until the page is full or the walk (of this MDS's part) is
// done.
func (p *findPage) run() error {
	if len(p.stack) == 0 {
		if err := p.visitStart(); err != nil {
			return err
		}
	}
	for len(p.stack) > 0 && !p.full() {
		top := &p.stack[len(p.stack)-1]
		if !p.s.owns(inoMDT(top.Dir)) {
			return fmt.Errorf("mds: find in %#x: MDT%04x is not served here: %w: %w", top.Dir, inoMDT(top.Dir), ErrNotOwner, syscall.EREMOTE)
		}
		done, err := p.step(top)
		if err != nil {
			return err
		}
		if done {
			p.stack = p.stack[:len(p.stack)-1]
		}
	}
	return nil
}

// visitStart tests the start of the walk and enters it if it is a
// directory.
func (p *findPage) visitStart() error {
	in, err := p.inode(p.req.Start)
	if err != nil {
		return err
	}
	p.resp.Scanned++
	name := p.req.StartName
	if p.f.match(name, in) {
		p.resp.Entries = append(p.resp.Entries, proto.FindEntry{Path: "", Attr: in.attr()})
	}
	if in.isDir() && (p.f.MaxDepth < 0 || p.f.MaxDepth > 0) {
		p.stack = append(p.stack, proto.FindFrame{Dir: in.Ino, Depth: 1})
	}
	return nil
}

// step visits the next entries of the directory at the top of the stack,
// up to the first subdirectory entered. It reports whether the directory
// is done.
func (p *findPage) step(top *proto.FindFrame) (bool, error) {
	if top.After == "" {
		dir, err := p.t.dirAttrs(top.Dir)
		if isErrno(err, syscall.ENOENT) || isErrno(err, syscall.ENOTDIR) {
			return true, nil // removed or replaced since the page that met it
		}
		if err != nil {
			return false, err
		}
		if !permits(&p.req.Cred, dir, mayRead|mayExec) {
			p.resp.Errors = append(p.resp.Errors, proto.FindError{Path: top.Path, Errno: int32(syscall.EACCES)})
			return true, nil
		}
	}
	names, dents, err := p.entries(top.Dir, top.After, findChunk)
	if err != nil {
		return false, err
	}
	if err := p.prefetch(dents); err != nil {
		return false, err
	}
	frame := *top
	for i, name := range names {
		in, err := p.inode(dents[i].Ino)
		top.After = name
		if isErrno(err, syscall.ENOENT) {
			continue // unlinked between the entry and its inode: gone
		}
		if err != nil {
			return false, err
		}
		p.resp.Scanned++
		rel := name
		if frame.Path != "" {
			rel = frame.Path + "/" + name
		}
		if p.f.match(name, in) {
			p.resp.Entries = append(p.resp.Entries, proto.FindEntry{Path: rel, Attr: in.attr()})
		}
		if in.isDir() && (p.f.MaxDepth < 0 || frame.Depth < p.f.MaxDepth) {
			sub := proto.FindFrame{Dir: in.Ino, Path: rel, Depth: frame.Depth + 1}
			if !p.s.owns(inoMDT(in.Ino)) {
				p.resp.Remote = append(p.resp.Remote, sub)
			} else {
				if len(p.stack) >= findMaxStack {
					return false, fmt.Errorf("mds: find: %s is %d directories deep: %w", rel, len(p.stack), syscall.ELOOP)
				}
				p.stack = append(p.stack, sub)
				return false, nil
			}
		}
		if p.full() {
			return i == len(names)-1 && len(names) < findChunk, nil
		}
	}
	return len(names) < findChunk, nil
}

// inode returns ino's record as the page read it, reading it now if
// prefetch did not: with the layout if a test needs it.
func (p *findPage) inode(ino uint64) (*inode, error) {
	if in, ok := p.inodes[ino]; ok {
		return in, nil
	}
	b, err := p.t.kv.Get(p.t.ctx, p.t.k.inode(ino))
	if err != nil {
		return nil, fmt.Errorf("mds: find: read inode %#x: %w", ino, err)
	}
	if b == nil {
		return nil, fmt.Errorf("mds: find: inode %#x: %w", ino, syscall.ENOENT)
	}
	in, err := p.decode(ino, b)
	if err != nil {
		return nil, err
	}
	if in, err = p.t.folded(in); err != nil { // a directory's times and links
		return nil, err
	}
	p.inodes[ino] = in
	return in, nil
}

// decode decodes inode ino's record, with its layout only if the
// expression needs it.
func (p *findPage) decode(ino uint64, b []byte) (*inode, error) {
	in := &inode{}
	var err error
	if p.f.needLayout {
		err = decode(b, in)
	} else {
		err = decodeInodeAttrs(b, in)
	}
	in.Ino = ino
	return in, err
}

// prefetch reads the inodes of entries not read yet, in one batch.
func (p *findPage) prefetch(dents []dentry) error {
	var inos []uint64
	var keys [][]byte
	for _, d := range dents {
		if _, ok := p.inodes[d.Ino]; !ok && !slices.Contains(inos, d.Ino) {
			inos = append(inos, d.Ino)
			keys = append(keys, p.t.k.inode(d.Ino))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	vals, err := p.t.kv.BatchGet(p.t.ctx, keys)
	if err != nil {
		return fmt.Errorf("mds: find: read %d inodes: %w", len(keys), err)
	}
	got := make([]*inode, 0, len(vals))
	for i, b := range vals {
		if b == nil {
			continue // unlinked since its entry was read: inode says ENOENT
		}
		in, err := p.decode(inos[i], b)
		if err != nil {
			return err
		}
		got = append(got, in)
	}
	got, err = p.t.foldedAll(got) // directories' times and links
	if err != nil {
		return err
	}
	for _, in := range got {
		p.inodes[in.Ino] = in
	}
	return nil
}

// entries reads up to n entries of dir after the name after.
func (p *findPage) entries(dir uint64, after string, n int) ([]string, []dentry, error) {
	var names []string
	var dents []dentry
	var derr error
	start, end := p.t.k.dentryRange(dir, after)
	err := p.t.kv.Scan(p.t.ctx, start, end, n, func(k, v []byte) bool {
		name, err := p.t.k.dentryName(k)
		if err != nil {
			derr = err
			return false
		}
		var d dentry
		if derr = decode(v, &d); derr != nil {
			return false
		}
		names, dents = append(names, name), append(dents, d)
		return true
	})
	if err = firstErr(err, derr); err != nil {
		return nil, nil, fmt.Errorf("mds: find: scan directory %#x: %w", dir, err)
	}
	return names, dents, nil
}
