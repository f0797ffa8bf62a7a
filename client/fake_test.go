package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// fakeCluster is an in-process MDS and a set of OSSes (one per OST) served
// by real rpc.Servers, small enough to reason about and with hooks to
// inject faults and count requests. It keeps the namespace flat enough for
// the client's tests: directories, regular files and symlinks.
type fakeCluster struct {
	t      testing.TB
	secret []byte
	mds    *rpc.Server
	osses  []*rpc.Server
	spec   layout.Spec // the filesystem default layout

	mu       sync.Mutex
	nextIno  uint64
	inodes   map[uint64]*fakeInode
	objects  map[layout.Object][]byte
	handles  map[uint64]uint64 // handle -> ino
	nextH    uint64
	sessions map[uint64]bool
	alloc    layout.Allocator
	lease    time.Duration
	capTTL   time.Duration

	// Fault injection and accounting, guarded by mu.
	failWrite    func(ost uint32) error // error for an object write, or nil
	writeDelay   time.Duration
	revokeBefore time.Time // capabilities issued earlier are refused as expired
	ops          map[uint16]int
	writeSizes   []int
	inflightW    int64 // bytes of object writes being served
	maxInflightW int64
	syncs        map[layout.Object]int
	verifiers    map[uint32]uint64      // write verifier per OST
	stale        map[layout.Object]bool // objects the OSSes answer ESTALE for

	locks     []fakeLock    // granted locks
	lockSlice time.Duration // how long a waiting lock request is held
	umasks    []uint32      // the umask of every create, mkdir and mknod
}

type fakeInode struct {
	attr    proto.Attr
	lay     layout.Layout
	entries map[string]uint64
	target  string
	issued  map[uint64]time.Time // capabilities by handle
}

const fakeRoot = 1

// newFakeCluster starts an MDS and osts OSSes with the default layout
// stripeCount x stripeSize.
func newFakeCluster(t testing.TB, osts int, stripeCount int32, stripeSize int64) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{
		t:         t,
		secret:    []byte("fake-secret"),
		spec:      layout.DefaultSpec(stripeCount, stripeSize),
		nextIno:   fakeRoot + 1,
		inodes:    map[uint64]*fakeInode{},
		objects:   map[layout.Object][]byte{},
		handles:   map[uint64]uint64{},
		sessions:  map[uint64]bool{},
		lease:     10 * time.Second,
		capTTL:    time.Hour,
		lockSlice: 200 * time.Millisecond,
		ops:       map[uint16]int{},
		syncs:     map[layout.Object]int{},
		verifiers: map[uint32]uint64{},
		stale:     map[layout.Object]bool{},
	}
	now := time.Now().UnixNano()
	fc.inodes[fakeRoot] = &fakeInode{
		attr:    proto.Attr{Ino: fakeRoot, Mode: proto.ModeDir | 0o777, Nlink: 2, Mtime: now, Ctime: now},
		entries: map[string]uint64{},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mdsHandlers := fc.mdsHandlers()
	maps.Copy(mdsHandlers, fc.moreMDSHandlers())
	fc.mds = fc.start(log, mdsHandlers)
	for i := range osts {
		fc.osses = append(fc.osses, fc.start(log, fc.ossHandlers(uint32(i))))
	}
	return fc
}

func (fc *fakeCluster) start(log *slog.Logger, hs map[uint16]func(*rpc.Request) (any, error)) *rpc.Server {
	s := rpc.NewServer(rpc.ServerConfig{Addr: "127.0.0.1:0", Secret: fc.secret, Logger: log})
	for op, h := range hs {
		s.Handle(op, func(ctx context.Context, req *rpc.Request) (*rpc.Reply, error) {
			fc.mu.Lock()
			fc.ops[op]++
			fc.mu.Unlock()
			body, err := h(req)
			if err != nil {
				return nil, err
			}
			if r, ok := body.(*rpc.Reply); ok {
				return r, nil
			}
			return &rpc.Reply{Body: body}, nil
		})
	}
	if err := s.Start(context.Background()); err != nil {
		fc.t.Fatalf("start fake server: %v", err)
	}
	fc.t.Cleanup(s.Stop)
	return s
}

// client connects a client to the fake cluster.
func (fc *fakeCluster) client(cfg Config) *Client {
	fc.t.Helper()
	cfg.MDS = []string{fc.mds.Addr()}
	cfg.Secret = fc.secret
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		fc.t.Fatalf("client.New: %v", err)
	}
	fc.t.Cleanup(func() { c.Close() })
	return c
}

func (fc *fakeCluster) opCount(op uint16) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.ops[op]
}

func (fc *fakeCluster) osts() []proto.OST {
	var out []proto.OST
	for i, s := range fc.osses {
		out = append(out, proto.OST{Index: uint32(i), Addr: s.Addr(), Active: true, Total: 1 << 40, Avail: 1 << 40})
	}
	return out
}

// object returns a copy of an object's bytes.
func (fc *fakeCluster) object(o layout.Object) []byte {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]byte(nil), fc.objects[o]...)
}

// inode returns a copy of an inode's attributes.
func (fc *fakeCluster) attr(ino uint64) proto.Attr {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.inodes[ino].attr
}

func decode[T any](req *rpc.Request) (*T, error) {
	v := new(T)
	return v, req.Decode(v)
}

func (fc *fakeCluster) mdsHandlers() map[uint16]func(*rpc.Request) (any, error) {
	return map[uint16]func(*rpc.Request) (any, error){
		proto.OpConnect: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ConnectReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if req.Session != 0 && !fc.sessions[req.Session] {
				return nil, fmt.Errorf("fake: session %d evicted: %w", req.Session, syscall.ENOTCONN)
			}
			id := uint64(len(fc.sessions) + 100)
			fc.sessions[id] = true
			return &proto.ConnectResp{Session: id, LeaseMillis: fc.lease.Milliseconds(), FSName: "fake", Root: fakeRoot,
				MDTs: []proto.MDT{{Index: 0, Addr: fc.mds.Addr()}}, OSTs: fc.osts(), Defaults: fc.spec}, nil
		},
		proto.OpMDTTable: func(r *rpc.Request) (any, error) {
			return &proto.MDTTableResp{MDTs: []proto.MDT{{Index: 0, Addr: fc.mds.Addr(), Epoch: 1}}}, nil
		},
		proto.OpRenew: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.RenewReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if !fc.sessions[req.Session] {
				return nil, fmt.Errorf("fake: session %d: %w", req.Session, syscall.ENOTCONN)
			}
			return &proto.RenewResp{OSTs: fc.osts()}, nil
		},
		proto.OpDisconnect: func(r *rpc.Request) (any, error) { return &proto.Empty{}, nil },
		proto.OpTargets: func(r *rpc.Request) (any, error) {
			return &proto.TargetsResp{FSName: "fake", OSTs: fc.osts()}, nil
		},
		proto.OpLookup: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.LookupReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Parent]
			if dir == nil || dir.entries == nil {
				return nil, syscall.ENOTDIR
			}
			ino, ok := dir.entries[req.Name]
			if !ok {
				return nil, fmt.Errorf("fake: lookup %q: %w", req.Name, syscall.ENOENT)
			}
			return &proto.EntryResp{Attr: fc.inodes[ino].attr}, nil
		},
		proto.OpGetattr: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.GetattrReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			if in == nil {
				return nil, syscall.ENOENT
			}
			return &proto.AttrResp{Attr: in.attr}, nil
		},
		proto.OpSetattr: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.SetattrReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			if in == nil {
				return nil, syscall.ENOENT
			}
			if req.Valid&proto.SetSize != 0 {
				for _, tp := range in.lay.TruncatePoints(int64(req.Size), nil) {
					b := fc.objects[tp.Object]
					if int64(len(b)) > tp.Size {
						fc.objects[tp.Object] = b[:tp.Size]
					}
				}
				in.attr.Size = req.Size
				in.attr.DataVersion++
			}
			if req.Valid&proto.SetMode != 0 {
				in.attr.Mode = in.attr.Mode&proto.ModeType | req.Mode&0o7777
			}
			if req.Valid&proto.SetMtime != 0 {
				in.attr.Mtime = req.Mtime
			}
			return &proto.AttrResp{Attr: in.attr}, nil
		},
		proto.OpCreate: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.CreateReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Parent]
			if _, ok := dir.entries[req.Name]; ok {
				return nil, fmt.Errorf("fake: create %q: %w", req.Name, syscall.EEXIST)
			}
			ino := fc.nextIno
			fc.nextIno++
			spec := req.Layout.Resolve(fc.spec)
			var targets []layout.Target
			for _, o := range fc.osts() {
				targets = append(targets, layout.Target{Index: o.Index, Total: o.Total, Avail: o.Avail, Active: true})
			}
			lay, _, err := fc.alloc.Instantiate(spec, ino, 1, targets)
			if err != nil {
				return nil, err
			}
			lay.Gen = 1
			now := time.Now().UnixNano()
			in := &fakeInode{attr: proto.Attr{Ino: ino, Mode: proto.ModeRegular | req.Mode&^req.Umask, Nlink: 1, Mtime: now, Ctime: now,
				Flags: dir.attr.Flags & proto.AttrFlagStrict}, lay: lay, issued: map[uint64]time.Time{}}
			fc.umasks = append(fc.umasks, req.Umask)
			fc.inodes[ino] = in
			dir.entries[req.Name] = ino
			return fc.openLocked(in, req.Flags), nil
		},
		proto.OpOpen: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.OpenReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			if in == nil {
				return nil, syscall.ENOENT
			}
			if req.Flags&syscall.O_TRUNC != 0 {
				for _, o := range fc.layoutObjects(in) {
					delete(fc.objects, o)
				}
				in.attr.Size = 0
				in.attr.DataVersion++
			}
			return fc.openLocked(in, req.Flags), nil
		},
		proto.OpClose: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.CloseReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			if _, ok := fc.handles[req.Handle]; !ok || in == nil {
				return nil, syscall.EBADF
			}
			delete(fc.handles, req.Handle)
			if req.Wrote {
				in.attr.Size = max(in.attr.Size, req.Size)
				in.attr.Mtime = req.Mtime
				in.attr.DataVersion++
			}
			return &proto.AttrResp{Attr: in.attr}, nil
		},
		proto.OpSetSize: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.SetSizeReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			in := fc.inodes[req.Ino]
			in.attr.Size = max(in.attr.Size, req.Size)
			in.attr.Mtime = req.Mtime
			in.attr.DataVersion++
			return &proto.AttrResp{Attr: in.attr}, nil
		},
		proto.OpGetCap: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.GetCapReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if fc.handles[req.Handle] != req.Ino {
				return nil, syscall.EBADF
			}
			in := fc.inodes[req.Ino]
			return &proto.GetCapResp{Cap: fc.capLocked(req.Ino), Attr: in.attr, Layout: in.lay}, nil
		},
		proto.OpMkdir: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.MkdirReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Parent]
			if _, ok := dir.entries[req.Name]; ok {
				return nil, syscall.EEXIST
			}
			ino := fc.nextIno
			fc.nextIno++
			in := &fakeInode{attr: proto.Attr{Ino: ino, Mode: proto.ModeDir | req.Mode&^req.Umask, Nlink: 2,
				Flags: dir.attr.Flags}, entries: map[string]uint64{}}
			fc.umasks = append(fc.umasks, req.Umask)
			fc.inodes[ino] = in
			dir.entries[req.Name] = ino
			return &proto.EntryResp{Attr: in.attr}, nil
		},
		proto.OpSymlink: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.SymlinkReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			ino := fc.nextIno
			fc.nextIno++
			in := &fakeInode{attr: proto.Attr{Ino: ino, Mode: proto.ModeSymlink | 0o777, Nlink: 1, Size: uint64(len(req.Target))}, target: req.Target}
			fc.inodes[ino] = in
			fc.inodes[req.Parent].entries[req.Name] = ino
			return &proto.EntryResp{Attr: in.attr}, nil
		},
		proto.OpReadlink: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ReadlinkReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			return &proto.ReadlinkResp{Target: fc.inodes[req.Ino].target}, nil
		},
		proto.OpUnlink: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.UnlinkReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Parent]
			ino, ok := dir.entries[req.Name]
			if !ok {
				return nil, syscall.ENOENT
			}
			if fc.inodes[ino].entries != nil {
				return nil, syscall.EISDIR
			}
			delete(dir.entries, req.Name)
			return &proto.Empty{}, nil
		},
		proto.OpRmdir: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.RmdirReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Parent]
			ino, ok := dir.entries[req.Name]
			switch {
			case !ok:
				return nil, syscall.ENOENT
			case fc.inodes[ino].entries == nil:
				return nil, syscall.ENOTDIR
			case len(fc.inodes[ino].entries) > 0:
				return nil, syscall.ENOTEMPTY
			}
			delete(dir.entries, req.Name)
			return &proto.Empty{}, nil
		},
		proto.OpReaddir: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ReaddirReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			dir := fc.inodes[req.Ino]
			var names []string
			for n := range dir.entries {
				if n > req.After {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			resp := &proto.ReaddirResp{}
			if len(names) > req.Max {
				names, resp.More = names[:req.Max], true
			}
			for _, n := range names {
				a := fc.inodes[dir.entries[n]].attr
				d := proto.Dirent{Name: n, Ino: a.Ino, Mode: a.Mode}
				if req.Plus {
					d.Attr = &a
				}
				resp.Entries = append(resp.Entries, d)
			}
			return resp, nil
		},
	}
}

// openLocked opens a handle on in. Call with mu held.
func (fc *fakeCluster) openLocked(in *fakeInode, flags uint32) *proto.OpenResp {
	fc.nextH++
	fc.handles[fc.nextH] = in.attr.Ino
	return &proto.OpenResp{Handle: fc.nextH, Attr: in.attr, Layout: in.lay, Cap: fc.capLocked(in.attr.Ino)}
}

func (fc *fakeCluster) capLocked(ino uint64) proto.Capability {
	return proto.SignCapability(fc.secret, ino, proto.RightRead|proto.RightWrite, time.Now().Add(fc.capTTL))
}

func (fc *fakeCluster) layoutObjects(in *fakeInode) []layout.Object {
	var out []layout.Object
	for _, c := range in.lay.Components {
		out = append(out, c.Objects...)
	}
	return out
}

// checkCap verifies a capability as an OSS does. Call with mu held.
func (fc *fakeCluster) checkCapLocked(c *proto.Capability, ino uint64, want uint8) error {
	err := c.Verify(fc.secret, ino, want, time.Now())
	switch {
	case err == proto.ErrCapExpired:
		return fmt.Errorf("fake oss: %v: %w", err, syscall.EKEYEXPIRED)
	case err != nil:
		return fmt.Errorf("fake oss: %v: %w", err, syscall.EACCES)
	}
	issued := time.Unix(0, c.Expiry).Add(-fc.capTTL)
	if issued.Before(fc.revokeBefore) {
		return fmt.Errorf("fake oss: revoked: %w", syscall.EKEYEXPIRED)
	}
	return nil
}

func (fc *fakeCluster) ossHandlers(ost uint32) map[uint16]func(*rpc.Request) (any, error) {
	return map[uint16]func(*rpc.Request) (any, error){
		proto.OpObjWrite: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ObjWriteReq](r)
			if err != nil {
				return nil, err
			}
			n := int64(len(r.Bulk))
			fc.mu.Lock()
			if err := fc.checkCapLocked(&req.Cap, req.Obj.ID.Ino, proto.RightWrite); err != nil {
				fc.mu.Unlock()
				return nil, err
			}
			if fc.failWrite != nil {
				if err := fc.failWrite(ost); err != nil {
					fc.mu.Unlock()
					return nil, err
				}
			}
			fc.inflightW += n
			fc.maxInflightW = max(fc.maxInflightW, fc.inflightW)
			delay := fc.writeDelay
			fc.mu.Unlock()
			time.Sleep(delay)
			fc.mu.Lock()
			defer fc.mu.Unlock()
			fc.inflightW -= n
			if req.Obj.OST != ost {
				return nil, fmt.Errorf("fake oss %d: object of OST %d: %w", ost, req.Obj.OST, syscall.EINVAL)
			}
			o := layout.Object{OST: ost, ID: req.Obj.ID}
			if fc.stale[o] {
				return nil, fmt.Errorf("fake oss: %s destroyed: %w", o.ID, syscall.ESTALE)
			}
			b := fc.objects[o]
			if end := req.Offset + n; int64(len(b)) < end {
				b = append(b, make([]byte, end-int64(len(b)))...)
			}
			copy(b[req.Offset:], r.Bulk)
			fc.objects[o] = b
			fc.writeSizes = append(fc.writeSizes, int(n))
			if req.Sync {
				fc.syncs[o]++
			}
			return &proto.ObjWriteResp{Size: int64(len(b)), Verifier: fc.verifiers[ost]}, nil
		},
		proto.OpObjRead: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ObjReadReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if err := fc.checkCapLocked(&req.Cap, req.Obj.ID.Ino, proto.RightRead); err != nil {
				return nil, err
			}
			if fc.stale[layout.Object{OST: ost, ID: req.Obj.ID}] {
				return nil, fmt.Errorf("fake oss: %s destroyed: %w", req.Obj.ID, syscall.ESTALE)
			}
			b := fc.objects[layout.Object{OST: ost, ID: req.Obj.ID}]
			var out []byte
			if req.Offset < int64(len(b)) {
				out = append(out, b[req.Offset:min(int64(len(b)), req.Offset+req.Length)]...)
			}
			return &rpc.Reply{Body: &proto.ObjReadResp{Size: int64(len(b))}, Bulk: out}, nil
		},
		proto.OpObjSync: func(r *rpc.Request) (any, error) {
			req, err := decode[proto.ObjSyncReq](r)
			if err != nil {
				return nil, err
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if err := fc.checkCapLocked(&req.Cap, req.Obj.ID.Ino, 0); err != nil {
				return nil, err
			}
			fc.syncs[layout.Object{OST: ost, ID: req.Obj.ID}]++
			return &proto.ObjSyncResp{Verifier: fc.verifiers[ost]}, nil
		},
	}
}
