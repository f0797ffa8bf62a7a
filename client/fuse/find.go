package fuse

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// strata find through the mount. The search runs at the MDSes (see
// client.Find); the tool reaches it through virtual xattrs of the
// directory (or file) it starts at, as the caller, so the MDS checks the
// caller's permissions:
//
//   - setxattr user.strata.find.ID = JSON of FindQuery starts search ID
//     (ID: 1 to 32 letters and digits, chosen by the tool);
//   - getxattr user.strata.find.ID.SEQ reads page SEQ (0, 1, ...) as the
//     JSON of FindPage, each at most findPageBytes: asking for page SEQ+1
//     forgets page SEQ, and asking for SEQ again (a size probe, a retry)
//     gets the same page;
//   - removexattr user.strata.find.ID ends the search early.
//
// Only the user who started a search may read it. A search nobody asked
// for a page of in findIdle is dropped.
const (
	xattrFindPrefix = "user.strata.find."
	findPageBytes   = 48 << 10
	findIdle        = 5 * time.Minute
	findMaxSearches = 1024
)

// findName matches ID or ID.SEQ after xattrFindPrefix.
var findName = regexp.MustCompile(`^([0-9A-Za-z]{1,32})(?:\.([0-9]{1,9}))?$`)

// FindQuery starts a search: the filter and the start's own name.
type FindQuery struct {
	Filter proto.FindFilter `json:"filter"`
	Name   string           `json:"name"`
}

// FindPage is one page of results: paths relative to the start ("" is the
// start itself), the directories that could not be searched, and whether
// the search is over.
type FindPage struct {
	Entries  []FindResult      `json:"entries"`
	Errors   []proto.FindError `json:"errors,omitempty"`
	Done     bool              `json:"done"`
	Requests int               `json:"requests"` // MDS requests so far
}

// FindResult is one match with the attributes find's output may show.
type FindResult struct {
	Path  string `json:"p"`
	Ino   uint64 `json:"i"`
	Mode  uint32 `json:"m"`
	Uid   uint32 `json:"u"`
	Gid   uint32 `json:"g"`
	Size  uint64 `json:"s"`
	Mtime int64  `json:"t"` // unix nanoseconds
}

// findSearches are the searches of a mount.
type findSearches struct {
	mu sync.Mutex
	m  map[string]*findSearch
}

// findSearch is one search in progress.
type findSearch struct {
	mu      sync.Mutex
	uid     uint32
	f       *client.Find
	seq     int // the page held in page
	page    []byte
	pending []FindResult      // matches not handed out yet
	errs    []proto.FindError // the same for errors
	done    bool              // the MDSes have nothing more
	used    time.Time
}

// start registers a search, dropping idle ones.
func (fs *findSearches) start(id string, s *findSearch) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		fs.m = map[string]*findSearch{}
	}
	now := time.Now()
	for k, old := range fs.m {
		old.mu.Lock()
		idle := now.Sub(old.used) > findIdle
		old.mu.Unlock()
		if idle {
			delete(fs.m, k)
		}
	}
	if len(fs.m) >= findMaxSearches {
		return syscall.EBUSY
	}
	fs.m[id] = s
	return nil
}

func (fs *findSearches) get(id string) *findSearch {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.m[id]
}

func (fs *findSearches) drop(id string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.m, id)
}

// isFindXattr reports whether name belongs to the find channel.
func isFindXattr(name string) bool { return strings.HasPrefix(name, xattrFindPrefix) }

// setFindXattr starts a search at ino.
func (fs *fileSystem) setFindXattr(h *gofuse.InHeader, ino uint64, name string, data []byte) gofuse.Status {
	m := findName.FindStringSubmatch(strings.TrimPrefix(name, xattrFindPrefix))
	if m == nil || m[2] != "" {
		return gofuse.EINVAL
	}
	var q FindQuery
	if err := json.Unmarshal(data, &q); err != nil {
		return gofuse.EINVAL
	}
	cred := fs.cred(h)
	s := &findSearch{uid: cred.Uid, f: fs.c.NewFind(cred, ino, q.Name, q.Filter), seq: -1, used: time.Now()}
	if err := fs.finds.start(m[1], s); err != nil {
		return fs.status("find", err)
	}
	return gofuse.OK
}

// getFindXattr reads a page of a search.
func (fs *fileSystem) getFindXattr(cancel <-chan struct{}, h *gofuse.InHeader, name string) ([]byte, error) {
	m := findName.FindStringSubmatch(strings.TrimPrefix(name, xattrFindPrefix))
	if m == nil || m[2] == "" {
		return nil, syscall.ENODATA
	}
	s := fs.finds.get(m[1])
	if s == nil {
		return nil, syscall.ENODATA
	}
	seq, _ := strconv.Atoi(m[2])
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.Uid != s.uid && h.Uid != 0 {
		return nil, syscall.EACCES
	}
	s.used = time.Now()
	switch {
	case seq == s.seq:
		return s.page, nil
	case seq != s.seq+1:
		return nil, syscall.EINVAL
	}
	page, err := s.fill(fs.ctx(cancel))
	if err != nil {
		return nil, err
	}
	s.seq, s.page = seq, page
	return page, nil
}

// fill makes the next page: it asks the MDSes for pages until it has a
// match or an error to hand out or the search is over, and takes as many
// as fit.
func (s *findSearch) fill(ctx context.Context) ([]byte, error) {
	for len(s.pending) == 0 && len(s.errs) == 0 && !s.done {
		resp, err := s.f.Next(ctx)
		if err != nil {
			return nil, err
		}
		s.done = s.f.Done()
		if resp == nil {
			break
		}
		for _, e := range resp.Entries {
			a := &e.Attr
			s.pending = append(s.pending, FindResult{Path: e.Path, Ino: a.Ino, Mode: a.Mode, Uid: a.Uid, Gid: a.Gid,
				Size: a.Size, Mtime: a.Mtime})
		}
		s.errs = append(s.errs, resp.Errors...)
	}
	page := FindPage{Entries: []FindResult{}, Errors: s.errs, Requests: s.f.Requests()}
	s.errs = nil
	size := 128
	for _, e := range page.Errors {
		size += len(e.Path) + 32
	}
	n := 0
	for n < len(s.pending) {
		// An entry's JSON is its path (escaped: at most 6 bytes a
		// byte) and about 160 bytes of keys and numbers.
		need := len(s.pending[n].Path)*6 + 160
		if n > 0 && size+need > findPageBytes {
			break
		}
		size += need
		n++
	}
	page.Entries = append(page.Entries, s.pending[:n]...)
	s.pending = s.pending[n:]
	page.Done = s.done && len(s.pending) == 0
	return json.Marshal(&page)
}
