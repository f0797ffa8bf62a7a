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
}

// Run serves the metadata service until ctx ends. It refuses a store
// that was never formatted.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	db, err := kv.Open(ctx, cfg.KV, kv.Options{})
	if err != nil {
		return fmt.Errorf("mds: open store: %w", err)
	}
	defer db.Close()
	client := rpc.NewClient(rpc.ClientConfig{Secret: cfg.Secret, Logger: log})
	defer client.Close()
	svc, err := NewService(ctx, db, ServiceOptions{
		Secret:   cfg.Secret,
		MDTs:     cfg.MDTs,
		ObjectIO: &RPCObjectIO{Client: client},
		Lease:    cfg.Lease,
		Logger:   log,
		KVDir:    embeddedDir(cfg.KV),
	})
	if err != nil {
		return err
	}
	srv := rpc.NewServer(rpc.ServerConfig{Addr: cfg.Listen, Secret: cfg.Secret, Logger: log})
	svc.Register(srv)
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("mds: listen on %s: %w", cfg.Listen, err)
	}
	defer srv.Stop()
	addr := advertised(srv.Addr())
	if err := svc.setMDTAddr(ctx, svc.served, addr); err != nil {
		return err
	}
	log.Info("mds: serving", "fsname", svc.FSName(), "addr", addr, "mdts", svc.served)
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
	serve(srv, proto.OpConnect, s.Connect)
	serve(srv, proto.OpRenew, s.Renew)
	serveEmpty(srv, proto.OpDisconnect, s.Disconnect)
	serve(srv, proto.OpStatfs, s.Statfs)
	serve(srv, proto.OpTargets, s.Targets)

	serve(srv, proto.OpLookup, s.Lookup)
	serve(srv, proto.OpGetattr, s.Getattr)
	serve(srv, proto.OpSetattr, s.Setattr)
	serve(srv, proto.OpCreate, s.Create)
	serve(srv, proto.OpMkdir, s.Mkdir)
	serve(srv, proto.OpMknod, s.Mknod)
	serve(srv, proto.OpSymlink, s.Symlink)
	serve(srv, proto.OpReadlink, s.Readlink)
	serve(srv, proto.OpLink, s.Link)
	serveEmpty(srv, proto.OpUnlink, s.Unlink)
	serveEmpty(srv, proto.OpRmdir, s.Rmdir)
	serveEmpty(srv, proto.OpRename, s.Rename)
	serve(srv, proto.OpReaddir, s.Readdir)
	serveEmpty(srv, proto.OpAccess, s.Access)

	serve(srv, proto.OpOpen, s.Open)
	serve(srv, proto.OpClose, s.Close)
	serve(srv, proto.OpSetSize, s.SetSize)
	serve(srv, proto.OpGetCap, s.GetCap)
	serve(srv, proto.OpAppend, s.Append)
	serveEmpty(srv, proto.OpSync, s.Sync)
	serveEmpty(srv, proto.OpRecovered, s.Recovered)

	serve(srv, proto.OpGetxattr, s.Getxattr)
	serveEmpty(srv, proto.OpSetxattr, s.Setxattr)
	serve(srv, proto.OpListxattr, s.Listxattr)
	serveEmpty(srv, proto.OpRemovexattr, s.Removexattr)

	serve(srv, proto.OpGetLayout, s.GetLayout)
	serve(srv, proto.OpSetLayout, s.SetLayout)
	serveEmpty(srv, proto.OpSetConsistency, s.SetConsistency)

	serve(srv, proto.OpLock, s.Lock)
	serveEmpty(srv, proto.OpUnlock, s.Unlock)
	serve(srv, proto.OpGetLk, s.GetLk)

	serve(srv, proto.OpRegisterOSS, s.RegisterOSS)
	serveEmpty(srv, proto.OpOSSHeartbeat, s.OSSHeartbeat)

	serve(srv, proto.OpFsck, s.Fsck)
}

// serve registers a method answering a request with a reply body.
func serve[Req, Resp any](srv *rpc.Server, op uint16, fn func(context.Context, *Req) (*Resp, error)) {
	srv.Handle(op, func(ctx context.Context, r *rpc.Request) (*rpc.Reply, error) {
		req := new(Req)
		if err := decodeRequest(r, req); err != nil {
			return nil, err
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		return &rpc.Reply{Body: resp}, nil
	})
}

// serveEmpty registers a method whose reply is proto.Empty.
func serveEmpty[Req any](srv *rpc.Server, op uint16, fn func(context.Context, *Req) error) {
	srv.Handle(op, func(ctx context.Context, r *rpc.Request) (*rpc.Reply, error) {
		req := new(Req)
		if err := decodeRequest(r, req); err != nil {
			return nil, err
		}
		if err := fn(ctx, req); err != nil {
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
