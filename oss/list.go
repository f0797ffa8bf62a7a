package oss

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Listing. fsck (in the MDS) compares what the OSTs hold with what the
// layouts reference, so an OST lists its objects in pages: the fan-out
// directories in order, each directory's names in order. Object names are
// fixed-width hex of (inode, sequence), so name order is numeric order and a
// page ends at an object id from which the next page resumes. A listing is
// not a snapshot: objects created or destroyed while it runs may be missed
// or reported, and fsck looks again (Probe) at anything it would act on.

// List limits.
const (
	// DefaultListLimit is the page size of a List that names none.
	DefaultListLimit = 1024
	// MaxListLimit bounds a List page, so a reply stays small.
	MaxListLimit = 4096
	// fanoutDirs is the number of fan-out directories under O/.
	fanoutDirs = 256
)

// ObjectEntry is what an OST knows of one object (see proto.ObjInfo).
type ObjectEntry struct {
	ID        layout.ObjectID
	Stripe    uint32
	Owned     bool // the owner was recorded: Stripe is known
	Size      int64
	Mtime     time.Time
	Exists    bool // the object's file exists
	Destroyed bool // the OST remembers destroying the object
}

// listCache keeps the sorted names of the fan-out directory a listing is
// in, so that paging through a large directory reads it once rather than
// once a page. A listing that starts from the beginning reads afresh.
type listCache struct {
	mu    sync.Mutex
	dir   int      // fan-out directory the names are of
	names []string // nil until a directory is read
}

// List returns up to limit objects (DefaultListLimit if limit <= 0, at most
// MaxListLimit) that come after after in listing order, the zero id
// starting at the beginning, and whether more may follow.
func (o *OST) List(after layout.ObjectID, limit int) ([]ObjectEntry, bool, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	fresh := after == (layout.ObjectID{})
	afterName := objectName(after)
	var out []ObjectEntry
	for d := int(after.Ino & 0xff); d < fanoutDirs; d++ {
		names, err := o.fanoutNames(d, fresh)
		if err != nil {
			return nil, false, o.fail(fmt.Errorf("oss: list %s: %w", o, err))
		}
		fresh = true // directories after the first are read afresh
		i := 0
		if d == int(after.Ino&0xff) {
			i, _ = slices.BinarySearch(names, afterName)
			if i < len(names) && names[i] == afterName {
				i++
			}
		}
		for ; i < len(names); i++ {
			if len(out) == limit {
				return out, true, nil
			}
			id, ok := parseObjectName(names[i])
			if !ok {
				continue // not an object: a stray file
			}
			e, err := o.entry(id)
			if err != nil {
				return nil, false, o.fail(fmt.Errorf("oss: list %s: %w", o, err))
			}
			if e.Exists {
				out = append(out, e)
			}
		}
	}
	return out, false, nil
}

// Probe reports what the OST knows of each of ids, present or not.
func (o *OST) Probe(ids []layout.ObjectID) ([]ObjectEntry, error) {
	out := make([]ObjectEntry, 0, len(ids))
	for _, id := range ids {
		e, err := o.entry(id)
		if err != nil {
			return nil, o.fail(fmt.Errorf("oss: probe %s: %w", id, err))
		}
		out = append(out, e)
	}
	return out, nil
}

// entry stats one object's file and reads its owner.
func (o *OST) entry(id layout.ObjectID) (ObjectEntry, error) {
	e := ObjectEntry{ID: id, Destroyed: o.tomb.isDead(id)}
	path := filepath.Join(o.dir, ObjectPath(id))
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	e.Exists, e.Size, e.Mtime = true, fi.Size(), fi.ModTime()
	b, err := o.fs.Getxattr(path, OwnerXattr)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return ObjectEntry{ID: id, Destroyed: e.Destroyed}, nil // destroyed meanwhile
	case errors.Is(err, syscall.ENODATA), errors.Is(err, syscall.ENOTSUP):
		return e, nil
	case err != nil:
		return e, err
	}
	if owner, err := ParseOwner(string(b)); err == nil && owner.ID == id {
		e.Stripe, e.Owned = owner.Stripe, true
	}
	return e, nil
}

// fanoutNames returns the sorted names in fan-out directory d, from the
// cache unless fresh or the cache holds another directory.
func (o *OST) fanoutNames(d int, fresh bool) ([]string, error) {
	c := &o.listed
	c.mu.Lock()
	defer c.mu.Unlock()
	if !fresh && c.dir == d && c.names != nil {
		return c.names, nil
	}
	dir := filepath.Join(o.dir, objectsDir, fmt.Sprintf("%02x", d))
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		c.dir, c.names = d, []string{}
		return c.names, nil
	}
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	slices.Sort(names)
	c.dir, c.names = d, names
	return names, nil
}

// objectName is the file name of an object in its fan-out directory.
func objectName(id layout.ObjectID) string { return fmt.Sprintf("%016x.%08x", id.Ino, id.Seq) }

// parseObjectName is the inverse of objectName.
func parseObjectName(name string) (layout.ObjectID, bool) {
	ino, seq, ok := strings.Cut(name, ".")
	if !ok || len(ino) != 16 || len(seq) != 8 {
		return layout.ObjectID{}, false
	}
	i, err1 := strconv.ParseUint(ino, 16, 64)
	s, err2 := strconv.ParseUint(seq, 16, 32)
	if err1 != nil || err2 != nil {
		return layout.ObjectID{}, false
	}
	return layout.ObjectID{Ino: i, Seq: uint32(s)}, true
}

// objList serves OpOSTList: a page of an OST's objects, or the state of the
// objects named. It needs the MDS's listing capability (proto.FsckIno).
func (s *Server) objList(req *proto.OSTListReq, _ *rpc.Request) (*rpc.Reply, error) {
	ref := proto.ObjRef{OST: req.OST, ID: layout.ObjectID{Ino: proto.FsckIno}}
	o, err := s.authorize("list", &req.Cap, ref, proto.RightRead)
	if err != nil {
		return nil, err
	}
	var entries []ObjectEntry
	var more bool
	if len(req.IDs) > 0 {
		if len(req.IDs) > MaxListLimit {
			return nil, fmt.Errorf("oss: probe %d objects, more than %d: %w", len(req.IDs), MaxListLimit, syscall.EINVAL)
		}
		entries, err = o.Probe(req.IDs)
	} else {
		entries, more, err = o.List(req.After, req.Limit)
	}
	if err != nil {
		return nil, err
	}
	resp := &proto.OSTListResp{Objects: make([]proto.ObjInfo, len(entries)), More: more}
	for i, e := range entries {
		resp.Objects[i] = proto.ObjInfo{ID: e.ID, Stripe: e.Stripe, Owned: e.Owned, Size: e.Size,
			Exists: e.Exists, Destroyed: e.Destroyed}
		if e.Exists {
			resp.Objects[i].Mtime = e.Mtime.UnixNano()
		}
	}
	return &rpc.Reply{Body: resp}, nil
}
