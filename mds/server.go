package mds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/mds/kv"
	// Link both kv engines: Run opens whatever store the URL names.
	_ "github.com/stratafs/strata/mds/kv/engines"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Config configures a metadata server.
type Config struct {
	// KV is the metadata store: "embedded:DIR" or "tikv://PD[,PD...]".
	KV string
	// Listen is the address to serve on, e.g. "0.0.0.0:7000" or "127.0.0.1:0".
	Listen string
	// Secret is the cluster secret: it authenticates connections and
	// signs capabilities.
	Secret []byte
	// MDTs lists the metadata targets served; empty means MDT 0.
	MDTs []uint32
	// Standby starts the MDS owning no MDT: it takes over the MDTs of
	// MDSes whose lease runs out.
	Standby bool
	// MDTLease is the MDT ownership lease; 0 means DefaultMDTLease.
	MDTLease time.Duration
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// OnListen, if set, is called with the address served once the
	// listener is up.
	OnListen func(addr string)
	// Lease is the client session lease; 0 means DefaultLease.
	Lease time.Duration
	// OnServe, if set, is called with the rpc server once it serves (to
	// export its counters as metrics).
	OnServe func(*rpc.Server)
	// HsmTimeout is how long an HSM action may go without a progress
	// report before another agent gets it; 0 means DefaultHsmTimeout.
	HsmTimeout time.Duration
	// MetaLease is the metadata lease term; 0 means DefaultMetaLease.
	MetaLease time.Duration
	// OnService, if set, is called with the service once it exists (to
	// export its lease counters as metrics).
	OnService func(*Service)
}

// Run serves the metadata service until ctx ends. It refuses a store
// that was never formatted.
func Run(ctx context.Context, cfg Config) error {
	db, err := kv.Open(ctx, cfg.KV, kv.Options{})
	if err != nil {
		return fmt.Errorf("mds: open store: %w", err)
	}
	defer db.Close()
	return Serve(ctx, db, cfg)
}

// Serve is Run over a store already open (cfg.KV only names it, for MDT
// usage): several MDS servers in one process share one store this way, as
// up --mds N and the multi-MDS tests run them.
func Serve(ctx context.Context, db *kv.DB, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	client := rpc.NewClient(rpc.ClientConfig{Secret: cfg.Secret, Logger: log})
	defer client.Close()
	svc, err := NewService(ctx, db, ServiceOptions{
		Secret:   cfg.Secret,
		MDTs:     cfg.MDTs,
		Standby:  cfg.Standby,
		MDTLease: cfg.MDTLease,
		Addr:     cfg.Listen,
		ObjectIO: &RPCObjectIO{Client: client},
		Peers:    client,
		Lease:    cfg.Lease,
		Logger:   log,
		KVDir:    embeddedDir(cfg.KV),

		HsmTimeout: cfg.HsmTimeout,
		MetaLease:  cfg.MetaLease,
	})
	if err != nil {
		return err
	}
	if cfg.OnService != nil {
		cfg.OnService(svc)
	}
	srv := rpc.NewServer(rpc.ServerConfig{Addr: cfg.Listen, Secret: cfg.Secret, Logger: log})
	svc.Register(srv)
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("mds: listen on %s: %w", cfg.Listen, err)
	}
	defer srv.Stop()
	addr := advertised(srv.Addr())
	if err := svc.setMDTAddr(ctx, addr); err != nil {
		return err
	}
	log.Info("mds: serving", "fsname", svc.FSName(), "addr", addr, "mdts", svc.ownedMDTs())
	if cfg.OnListen != nil {
		cfg.OnListen(srv.Addr())
	}
	if cfg.OnServe != nil {
		cfg.OnServe(srv)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		svc.Background(ctx)
	}()
	<-ctx.Done()
	srv.Stop()
	wg.Wait()
	return nil
}

// embeddedDir returns the directory of an embedded store URL, or "".
func embeddedDir(url string) string {
	rest, ok := strings.CutPrefix(url, "embedded:")
	if !ok {
		return ""
	}
	dir, _, _ := strings.Cut(rest, "?")
	return dir
}

// advertised turns a listen address into one other hosts can dial: an
// unspecified host (0.0.0.0, ::) becomes the hostname, if it resolves.
func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	name, err := os.Hostname()
	if err != nil {
		return addr
	}
	if _, err := net.LookupHost(name); err != nil {
		return addr
	}
	return net.JoinHostPort(name, port)
}

// Register installs a handler for every MDS opcode the service serves.
func (s *Service) Register(srv *rpc.Server) {
	serve(s, srv, proto.OpConnect, s.Connect)
	serve(s, srv, proto.OpRenew, s.Renew)
	serveEmpty(s, srv, proto.OpDisconnect, s.Disconnect)
	serve(s, srv, proto.OpStatfs, s.Statfs)
	serve(s, srv, proto.OpTargets, s.Targets)
	s.serveLeaseWait(srv)
	serveEmpty(s, srv, proto.OpLeaseBreak, s.LeaseBreak)

	serve(s, srv, proto.OpLookup, s.Lookup)
	serve(s, srv, proto.OpGetattr, s.Getattr)
	serve(s, srv, proto.OpSetattr, s.Setattr)
	serve(s, srv, proto.OpCreate, s.Create)
	serve(s, srv, proto.OpMkdir, s.Mkdir)
	serve(s, srv, proto.OpMknod, s.Mknod)
	serve(s, srv, proto.OpSymlink, s.Symlink)
	serve(s, srv, proto.OpReadlink, s.Readlink)
	serve(s, srv, proto.OpLink, s.Link)
	serveChange(s, srv, proto.OpUnlink, s.Unlink)
	serveChange(s, srv, proto.OpRmdir, s.Rmdir)
	serveChange(s, srv, proto.OpRename, s.Rename)
	serve(s, srv, proto.OpReaddir, s.Readdir)
	serveEmpty(s, srv, proto.OpAccess, s.Access)

	serve(s, srv, proto.OpOpen, s.Open)
	serve(s, srv, proto.OpClose, s.Close)
	serveEmpty(s, srv, proto.OpCloseMany, s.CloseMany)
	serve(s, srv, proto.OpSetSize, s.SetSize)
	serve(s, srv, proto.OpGetCap, s.GetCap)
	serve(s, srv, proto.OpAppend, s.Append)
	serveEmpty(s, srv, proto.OpSync, s.Sync)
	serveEmpty(s, srv, proto.OpRecovered, s.Recovered)
	serve(s, srv, proto.OpMDTTable, s.MDTTable)
	serveEmpty(s, srv, proto.OpHandOff, s.HandOff)
	serve(s, srv, proto.OpEvict, s.Evict)
	serveEmpty(s, srv, proto.OpAbortRecovery, s.AbortRecovery)

	serve(s, srv, proto.OpGetxattr, s.Getxattr)
	serveEmpty(s, srv, proto.OpSetxattr, s.Setxattr)
	serve(s, srv, proto.OpListxattr, s.Listxattr)
	serveEmpty(s, srv, proto.OpRemovexattr, s.Removexattr)

	serve(s, srv, proto.OpGetLayout, s.GetLayout)
	serve(s, srv, proto.OpSetLayout, s.SetLayout)
	serveEmpty(s, srv, proto.OpSetConsistency, s.SetConsistency)

	serve(s, srv, proto.OpLock, s.Lock)
	serveEmpty(s, srv, proto.OpUnlock, s.Unlock)
	serve(s, srv, proto.OpGetLk, s.GetLk)

	serve(s, srv, proto.OpRegisterOSS, s.RegisterOSS)
	serveEmpty(s, srv, proto.OpOSSHeartbeat, s.OSSHeartbeat)

	serve(s, srv, proto.OpFsck, s.Fsck)

	serve(s, srv, proto.OpHsmState, s.HsmState)
	serve(s, srv, proto.OpHsmRequest, s.HsmRequest)
	serve(s, srv, proto.OpHsmImport, s.HsmImport)
	serve(s, srv, proto.OpHsmScan, s.HsmScan)
	serve(s, srv, proto.OpHsmRegister, s.HsmRegister)
	serve(s, srv, proto.OpHsmClaim, s.HsmClaim)
	serve(s, srv, proto.OpHsmStart, s.HsmStart)
	serve(s, srv, proto.OpHsmProgress, s.HsmProgress)
	serveEmpty(s, srv, proto.OpHsmComplete, s.HsmComplete)
	serve(s, srv, proto.OpHsmList, s.HsmList)
	serve(s, srv, proto.OpPool, s.Pool)
	serve(s, srv, proto.OpFind, s.Find)
	serve(s, srv, proto.OpMigrate, s.Migrate)
	serve(s, srv, proto.OpChangelog, s.Changelog)
	serve(s, srv, proto.OpChangelogUser, s.ChangelogUser)
	serve(s, srv, proto.OpSetQuota, s.SetQuota)
	serve(s, srv, proto.OpQuota, s.Quota)
	serve(s, srv, proto.OpProject, s.Project)
	serve(s, srv, proto.OpQuotaGrant, s.QuotaGrant)
}

// serve registers a method answering a request with a reply body. Requests
// for an MDT this MDS does not serve are refused (EREMOTE), and sessions it
// does not know yet are loaded from the store (Service.admit).
func serve[Req, Resp any](s *Service, srv *rpc.Server, op uint16, fn func(context.Context, *Req) (*Resp, error)) {
	srv.Handle(op, func(ctx context.Context, r *rpc.Request) (*rpc.Reply, error) {
		req := new(Req)
		if err := decodeRequest(r, req); err != nil {
			return nil, err
		}
		if err := s.admit(ctx, req); err != nil {
			return nil, err
		}
		ctx = withCaller(ctx, req)
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		fillReply(ctx, resp)
		return &rpc.Reply{Body: resp}, nil
	})
}

// serveChange registers a change of directory entries whose reply is
// proto.ChangeResp (see serve, whose fillReply sets its ParentTime).
func serveChange[Req any](s *Service, srv *rpc.Server, op uint16, fn func(context.Context, *Req) error) {
	serve(s, srv, op, func(ctx context.Context, req *Req) (*proto.ChangeResp, error) {
		if err := fn(ctx, req); err != nil {
			return nil, err
		}
		return &proto.ChangeResp{}, nil
	})
}

// serveEmpty registers a method whose reply is proto.Empty (see serve).
func serveEmpty[Req any](s *Service, srv *rpc.Server, op uint16, fn func(context.Context, *Req) error) {
	srv.Handle(op, func(ctx context.Context, r *rpc.Request) (*rpc.Reply, error) {
		req := new(Req)
		if err := decodeRequest(r, req); err != nil {
			return nil, err
		}
		if err := s.admit(ctx, req); err != nil {
			return nil, err
		}
		if err := fn(withCaller(ctx, req), req); err != nil {
			return nil, err
		}
		return &rpc.Reply{Body: &proto.Empty{}}, nil
	})
}

// decodeRequest decodes a request body, mapping garbage to EINVAL.
func decodeRequest(r *rpc.Request, v any) error {
	if err := r.Decode(v); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return err
		}
		return fmt.Errorf("mds: op %d from %s: bad request body: %v: %w", r.Op, r.Peer, err, syscall.EINVAL)
	}
	return nil
}
