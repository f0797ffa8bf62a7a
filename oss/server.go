package oss

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// DefaultHeartbeat is how often an OSS reports to the MDS.
const DefaultHeartbeat = 2 * time.Second

// Config configures an object storage server.
type Config struct {
	MDS    []string // MDS addresses; registration and heartbeats go to the first that answers
	OSTs   []string // OST directories
	Listen string   // listen address, e.g. "0.0.0.0:7100" or "127.0.0.1:0"
	Secret []byte   // cluster secret: authenticates connections and signs capabilities
	Logger *slog.Logger
	// OnListen, if set, is called with the advertised address once the
	// server accepts requests, before registration with the MDS.
	OnListen func(addr string)
	// AdvertiseAddr is the address clients reach this OSS at. Empty means
	// the listen address; if that is a wildcard (0.0.0.0, [::]), the local
	// address this host uses to reach the MDS.
	AdvertiseAddr string
	// HeartbeatInterval is the period of OSSHeartbeat; 0 means
	// DefaultHeartbeat.
	HeartbeatInterval time.Duration
	// HandleCache bounds the open object files per OST; 0 means
	// DefaultHandleCache.
	HandleCache int
}

// Server is an object storage server: the OSTs it serves, the rpc server
// that exposes them and its registration with the MDS.
type Server struct {
	cfg    Config
	log    *slog.Logger
	osts   []*OST                          // in Config.OSTs order
	byIdx  atomic.Pointer[map[uint32]*OST] // OSTs with an index, by index
	client *rpc.Client                     // to the MDS
	rpc    *rpc.Server
	addr   atomic.Pointer[string] // advertised address, once serving
	stats  serverCounters
}

// Run serves the OSTs of cfg until ctx ends: it opens them, serves object
// requests, registers with the MDS and heartbeats. It returns nil once ctx
// has ended and everything is closed, or the error that stopped it.
func Run(ctx context.Context, cfg Config) error {
	s, err := NewServer(cfg)
	if err != nil {
		return err
	}
	err = s.Serve(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// NewServer opens the OSTs of cfg. Serve starts serving them; Close closes
// them.
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.OSTs) == 0 {
		return nil, errors.New("oss: no OST directories configured")
	}
	if len(cfg.MDS) == 0 {
		return nil, errors.New("oss: no MDS address configured")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("oss: no cluster secret configured")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeat
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log}
	for _, dir := range cfg.OSTs {
		o, err := OpenOST(dir, WithLogger(log), WithHandleCache(cfg.HandleCache))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.osts = append(s.osts, o)
	}
	if _, err := s.fsName(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.indexOSTs(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// fsName returns the filesystem the OSTs belong to ("" if none knows yet),
// refusing OSTs of different filesystems.
func (s *Server) fsName() (string, error) {
	name := ""
	for _, o := range s.osts {
		switch n := o.FSName(); {
		case n == "":
		case name == "":
			name = n
		case n != name:
			return "", fmt.Errorf("oss: %s belongs to %q but another OST to %q: %w", o.Dir(), n, name, ErrFSMismatch)
		}
	}
	return name, nil
}

// indexOSTs rebuilds the index of OSTs by their assigned index, refusing
// two OSTs with one index (a copied directory).
func (s *Server) indexOSTs() error {
	m := make(map[uint32]*OST, len(s.osts))
	uuids := make(map[string]string, len(s.osts))
	for _, o := range s.osts {
		id := o.Identity()
		if dir, dup := uuids[id.UUID]; dup {
			return fmt.Errorf("oss: %s and %s have the same OST UUID %s (copied directory?)", dir, o.Dir(), id.UUID)
		}
		uuids[id.UUID] = o.Dir()
		if id.Index < 0 {
			continue
		}
		if other := m[uint32(id.Index)]; other != nil {
			return fmt.Errorf("oss: %s and %s both claim OST index %d", other.Dir(), o.Dir(), id.Index)
		}
		m[uint32(id.Index)] = o
	}
	s.byIdx.Store(&m)
	return nil
}

// OSTs returns the OSTs the server serves, in configuration order.
func (s *Server) OSTs() []*OST { return s.osts }

// Addr returns the address the server advertises ("" before Serve has
// started listening).
func (s *Server) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Serve serves requests, registers with the MDS and heartbeats until ctx
// ends. It returns nil when ctx ends, or the error that stopped it: a
// listen failure, or the MDS refusing the registration.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.client = rpc.NewClient(rpc.ClientConfig{Secret: s.cfg.Secret, Logger: s.log})
	defer s.client.Close()

	s.rpc = rpc.NewServer(rpc.ServerConfig{Addr: s.cfg.Listen, Secret: s.cfg.Secret, MaxBulk: MaxRead, Logger: s.log})
	s.registerHandlers()
	if err := s.rpc.Start(ctx); err != nil {
		return fmt.Errorf("oss: %w", err)
	}
	defer s.rpc.Stop()
	addr := advertiseAddr(s.cfg.AdvertiseAddr, s.rpc.Addr(), s.cfg.MDS)
	s.addr.Store(&addr)
	s.log.Info("oss: serving", "addr", addr, "listen", s.rpc.Addr(), "osts", len(s.osts))
	if s.cfg.OnListen != nil {
		s.cfg.OnListen(addr)
	}

	mds, err := s.registerLoop(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.heartbeatLoop(ctx, mds)
	return nil
}

// Close closes the OSTs, flushing unsynced data; call it after Serve has
// returned.
func (s *Server) Close() error {
	var errs []error
	for _, o := range s.osts {
		if err := o.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats returns the server's counters, totalled over its OSTs.
func (s *Server) Stats() Stats {
	st := Stats{
		CapDenied:   s.stats.capDenied.Load(),
		BadRequests: s.stats.badRequests.Load(),
	}
	for _, o := range s.osts {
		ost := o.Stats()
		st.BytesRead += ost.BytesRead
		st.BytesWritten += ost.BytesWritten
		st.Ops.add(ost.Ops)
		st.Errors += ost.Errors
		st.OSTs = append(st.OSTs, ost)
	}
	return st
}

// registerHandlers installs a handler for every OSS opcode.
func (s *Server) registerHandlers() {
	route(s, proto.OpObjWrite, s.objWrite)
	route(s, proto.OpObjRead, s.objRead)
	route(s, proto.OpObjPunch, s.objPunch)
	route(s, proto.OpObjSync, s.objSync)
	route(s, proto.OpObjGetattr, s.objGetattr)
	route(s, proto.OpObjDestroy, s.objDestroy)
	route(s, proto.OpObjDestroyMany, s.objDestroyMany)
	route(s, proto.OpOSTStatfs, s.ostStatfs)
	route(s, proto.OpObjFalloc, s.objFallocate)
	route(s, proto.OpObjCopy, s.objCopy)
	route(s, proto.OpObjFence, s.objFence)
	route(s, proto.OpOSTList, s.objList)
}

// route registers fn for op, decoding the request body into a Req first.
func route[Req any](s *Server, op uint16, fn func(*Req, *rpc.Request) (*rpc.Reply, error)) {
	s.rpc.Handle(op, func(_ context.Context, r *rpc.Request) (*rpc.Reply, error) {
		var req Req
		if err := r.Decode(&req); err != nil {
			s.stats.badRequests.Add(1)
			return nil, err
		}
		return fn(&req, r)
	})
}

// rightEither asks authorize for a capability granting read or write.
const rightEither uint8 = 0

// authorize checks that c grants want on the object's file and returns the
// OST holding the object. A bad capability is EACCES, an expired one
// EKEYEXPIRED (the client refreshes it with OpGetCap and retries), an OST
// this server does not serve ENODEV.
func (s *Server) authorize(op string, c *proto.Capability, obj proto.ObjRef, want uint8) (*OST, error) {
	if err := s.checkCap(op, c, obj, want); err != nil {
		return nil, err
	}
	o := (*s.byIdx.Load())[obj.OST]
	if o == nil {
		s.stats.badRequests.Add(1)
		return nil, fmt.Errorf("oss: %s %s: OST%04x is not served here: %w", op, obj.ID, obj.OST, syscall.ENODEV)
	}
	return o, nil
}

func (s *Server) checkCap(op string, c *proto.Capability, obj proto.ObjRef, want uint8) error {
	err := c.Verify(s.cfg.Secret, obj.ID.Ino, want, time.Now())
	if err == nil && want == rightEither && c.Rights&(proto.RightRead|proto.RightWrite) == 0 {
		err = proto.ErrCapRights
	}
	if err == nil {
		return nil
	}
	s.stats.capDenied.Add(1)
	errno := syscall.EACCES
	if errors.Is(err, proto.ErrCapExpired) {
		errno = syscall.EKEYEXPIRED
	}
	return fmt.Errorf("oss: %s %s: %w: %w", op, obj.ID, err, errno)
}

func objectOf(ref proto.ObjRef) Object { return Object{ID: ref.ID, Stripe: ref.Stripe} }

// accessOf is what a capability says its holder knows of the file.
func accessOf(c *proto.Capability) Access { return Access{Gen: c.Gen, Epoch: c.Epoch} }

func (s *Server) objWrite(req *proto.ObjWriteReq, r *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("write", &req.Cap, req.Obj, proto.RightWrite)
	if err != nil {
		return nil, err
	}
	size, err := o.Write(objectOf(req.Obj), req.Offset, r.Bulk, req.Sync, accessOf(&req.Cap))
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjWriteResp{Size: size, Verifier: o.Verifier()}}, nil
}

func (s *Server) objFallocate(req *proto.ObjFallocateReq, _ *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("fallocate", &req.Cap, req.Obj, proto.RightWrite)
	if err != nil {
		return nil, err
	}
	size, err := o.Fallocate(objectOf(req.Obj), req.Mode, req.Offset, req.Length, accessOf(&req.Cap))
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjWriteResp{Size: size, Verifier: o.Verifier()}}, nil
}

// objCopy copies between two objects of one OST: the source needs a
// capability to read its file, the destination one to write its own.
func (s *Server) objCopy(req *proto.ObjCopyReq, _ *rpc.Request) (*rpc.Reply, error) {
	if req.Src.OST != req.Dst.OST {
		s.stats.badRequests.Add(1)
		return nil, fmt.Errorf("oss: copy %s to %s across OSTs: %w", req.Src.ID, req.Dst.ID, syscall.EXDEV)
	}
	if err := s.checkCap("copy", &req.SrcCap, req.Src, proto.RightRead); err != nil {
		return nil, err
	}
	o, err := s.authorize("copy", &req.Cap, req.Dst, proto.RightWrite)
	if err != nil {
		return nil, err
	}
	n, _, err := o.Copy(objectOf(req.Src), req.SrcOffset, accessOf(&req.SrcCap), objectOf(req.Dst), req.DstOffset, req.Length, accessOf(&req.Cap))
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjCopyResp{Copied: n, Verifier: o.Verifier()}}, nil
}

// objRead reads into the reply's own bulk buffer (rpc.Request.BulkBuffer):
// pooled on TCP, and on RDMA the registered memory the reply is sent from,
// so the data is not copied on its way out.
func (s *Server) objRead(req *proto.ObjReadReq, r *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("read", &req.Cap, req.Obj, proto.RightRead)
	if err != nil {
		return nil, err
	}
	if req.Length < 0 || req.Length > MaxRead {
		return nil, fmt.Errorf("oss: read %s: length %d: %w", req.Obj.ID, req.Length, syscall.EINVAL)
	}
	buf := r.BulkBuffer(int(req.Length))
	n, size, err := o.Read(req.Obj.ID, req.Offset, buf, accessOf(&req.Cap))
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjReadResp{Size: size}, Bulk: buf[:n]}, nil
}

func (s *Server) objPunch(req *proto.ObjPunchReq, _ *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("punch", &req.Cap, req.Obj, proto.RightWrite)
	if err != nil {
		return nil, err
	}
	return nil, o.Punch(objectOf(req.Obj), req.Size, accessOf(&req.Cap))
}

func (s *Server) objSync(req *proto.ObjSyncReq, _ *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("sync", &req.Cap, req.Obj, rightEither)
	if err != nil {
		return nil, err
	}
	if err := o.Sync(req.Obj.ID); err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjSyncResp{Verifier: o.Verifier()}}, nil
}

func (s *Server) objGetattr(req *proto.ObjGetattrReq, _ *rpc.Request) (*rpc.Reply, error) {
	o, err := s.authorize("getattr", &req.Cap, req.Obj, proto.RightRead)
	if err != nil {
		return nil, err
	}
	attr, err := o.Getattr(req.Obj.ID)
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.ObjGetattrResp{Exists: attr.Exists, Size: attr.Size, Blocks: attr.Blocks}}, nil
}

// objDestroy checks every object against the capability and the served
// OSTs before deleting any, so a bad request deletes nothing.
func (s *Server) objDestroy(req *proto.ObjDestroyReq, r *rpc.Request) (*rpc.Reply, error) {
	return s.objDestroyMany(&proto.ObjDestroyManyReq{Files: []proto.ObjDestroyReq{*req}}, r)
}

// objDestroyMany deletes the objects of many files with one Destroy (one
// tombstone-log sync, one sync per fan-out directory) per OST, after
// checking every file's capability.
func (s *Server) objDestroyMany(req *proto.ObjDestroyManyReq, _ *rpc.Request) (*rpc.Reply, error) {
	perOST := make(map[*OST][]layout.ObjectID)
	var order []*OST
	for i := range req.Files {
		f := &req.Files[i]
		for _, ref := range f.Objs {
			o, err := s.authorize("destroy", &f.Cap, ref, proto.RightWrite)
			if err != nil {
				return nil, err
			}
			if perOST[o] == nil {
				order = append(order, o)
			}
			perOST[o] = append(perOST[o], ref.ID)
		}
	}
	var errs []error
	for _, o := range order {
		if err := o.Destroy(perOST[o]...); err != nil {
			errs = append(errs, err)
		}
	}
	return nil, errors.Join(errs...)
}

func (s *Server) ostStatfs(req *proto.OSTStatfsReq, _ *rpc.Request) (*rpc.Reply, error) {
	o := (*s.byIdx.Load())[req.OST]
	if o == nil {
		s.stats.badRequests.Add(1)
		return nil, fmt.Errorf("oss: statfs: OST%04x is not served here: %w", req.OST, syscall.ENODEV)
	}
	ann, err := announce(o)
	if err != nil {
		return nil, err
	}
	return &rpc.Reply{Body: &proto.OSTStatfsResp{Stat: ann}}, nil
}

// announce describes an OST and its usage for the MDS.
func announce(o *OST) (proto.OSTAnnounce, error) {
	u, err := o.Statfs()
	if err != nil {
		return proto.OSTAnnounce{}, err
	}
	id := o.Identity()
	return proto.OSTAnnounce{
		Index: id.Index, UUID: id.UUID,
		Total: u.Total, Used: u.Used, Avail: u.Avail, Files: u.Files, FFree: u.FFree,
	}, nil
}
