package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/rpc"
)

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serveAdmin serves Prometheus metrics and pprof on addr until ctx ends.
func serveAdmin(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin server stopped", "err", err)
		}
	}()
	log.Info("admin endpoint", "addr", ln.Addr().String())
	return nil
}

func newFormatCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "format --kv KV --fsname NAME [--stripe-count N] [--stripe-size S]",
		Short: "Create a new filesystem in a metadata store",
		Long: `Format writes the cluster record (filesystem name, default layout) and the root
directory into the metadata store. KV is embedded:DIR (a local badger store)
or tikv://PD1:2379[,PD2:2379...] (a TiKV cluster). It refuses a store that
already holds a filesystem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("format", "", err)
			}
			kvURL, fsname := v.GetString("kv"), v.GetString("fsname")
			if kvURL == "" || fsname == "" {
				return fail("format", "", errors.New("--kv and --fsname are required"))
			}
			size, err := layout.ParseSize(v.GetString("stripe-size"))
			if err != nil {
				return fail("format", "", fmt.Errorf("--stripe-size: %w", err))
			}
			err = mds.Format(cmd.Context(), kvURL, mds.FormatOptions{
				FSName:      fsname,
				StripeCount: v.GetInt32("stripe-count"),
				StripeSize:  size,
			})
			if err != nil {
				return fail("format", kvURL, err)
			}
			fmt.Printf("formatted %s in %s\n", fsname, kvURL)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML config file")
	f.String("kv", "", "metadata store: embedded:DIR or tikv://PD[,PD...]")
	f.String("fsname", "", "filesystem name")
	f.Int32("stripe-count", layout.DefaultStripeCount, "default stripe count (-1: all OSTs)")
	f.String("stripe-size", "1M", "default stripe size (multiple of 64k)")
	return cmd
}

func newMDSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mds [--config FILE] [--kv KV] [--listen ADDR...] [--mdt IDX...] [--standby]",
		Short: "Run a metadata server",
		Long: `Run a metadata server serving one or more MDTs (namespace shards) of a
filesystem whose metadata lives in KV (embedded:DIR or tikv://PD,...).
Runs in the foreground until SIGINT or SIGTERM.

Each MDT is owned by one MDS under a lease kept in the store (--mdt-lease);
an MDS that stops renewing loses its MDTs to another (a --standby MDS owns
none until then), and clients follow without an error. Several MDSes share a
tikv:// store from any hosts. An embedded store belongs to one process: to
run N MDS servers on it, give --listen N times (server i serves the i-th
--mdt).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("mds", "", err)
			}
			secret, err := loadSecret(v)
			if err != nil {
				return fail("mds", "", err)
			}
			log := newLogger(v.GetString("log-level")).With("proc", "mds")
			ctx, stop := signalContext()
			defer stop()
			if err := serveAdmin(ctx, v.GetString("admin"), log); err != nil {
				return fail("mds", "", err)
			}
			var mdts []uint32
			for _, m := range v.GetIntSlice("mdt") {
				mdts = append(mdts, uint32(m))
			}
			listens := splitList(v.GetStringSlice("listen"))
			cfg := mds.Config{
				KV:       v.GetString("kv"),
				Secret:   secret,
				MDTs:     mdts,
				Standby:  v.GetBool("standby"),
				MDTLease: v.GetDuration("mdt-lease"),
				Logger:   log,
				Lease:    v.GetDuration("lease"),

				HsmTimeout: v.GetDuration("hsm-timeout"),
				MetaLease:  v.GetDuration("md-lease"),
				OnListen: func(addr string) {
					log.Info("serving", "addr", addr)
				},
			}
			if len(listens) <= 1 {
				cfg.Listen = "0.0.0.0:7000"
				if len(listens) == 1 {
					cfg.Listen = listens[0]
				}
				cfg.OnServe = func(srv *rpc.Server) {
					registerRPCMetrics("mds", srv.Stats)
				}
				cfg.OnService = func(s *mds.Service) {
					registerMDSMetrics(s)
				}
				err = mds.Run(ctx, cfg)
			} else {
				err = runSharedMDS(ctx, cfg, listens)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return fail("mds", "", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML config file")
	f.String("kv", "", "metadata store: embedded:DIR or tikv://PD[,PD...]")
	f.StringSlice("listen", []string{"0.0.0.0:7000"}, "address to serve on; several: that many servers in this process, sharing the store")
	f.IntSlice("mdt", []int{0}, "MDT indices to serve")
	f.Bool("standby", false, "own no MDT until another MDS's lease runs out")
	f.Duration("mdt-lease", mds.DefaultMDTLease, "MDT ownership lease: how long a dead MDS's MDTs wait for a takeover")
	f.Duration("lease", mds.DefaultLease, "client lease: a silent client's opens and locks are dropped after it")
	f.Duration("hsm-timeout", mds.DefaultHsmTimeout, "HSM action without progress reports for this long goes to another copytool")
	f.Duration("md-lease", mds.DefaultMetaLease, "metadata lease term: how long a client may cache metadata after its last callback poll, and how long a change waits for a client that does not answer one")
	f.String("admin", "", "address for /metrics and /debug/pprof (off if empty)")
	f.String("log-level", "info", "debug, info, warn or error")
	addSecretFlag(cmd)
	return cmd
}

func newOSSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oss [--config FILE] --mds ADDR[,ADDR] --ost DIR [--ost DIR...] [--listen ADDR]",
		Short: "Run an object storage server",
		Long: `Run an object storage server for one or more OSTs (directories on local
filesystems). New OST directories are registered with the MDS, which assigns
their indices; they keep them across restarts. Runs in the foreground.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("oss", "", err)
			}
			secret, err := loadSecret(v)
			if err != nil {
				return fail("oss", "", err)
			}
			mdsAddrs, osts := splitList(v.GetStringSlice("mds")), v.GetStringSlice("ost")
			if len(mdsAddrs) == 0 || len(osts) == 0 {
				return fail("oss", "", errors.New("--mds and at least one --ost are required"))
			}
			log := newLogger(v.GetString("log-level")).With("proc", "oss")
			ctx, stop := signalContext()
			defer stop()
			if err := serveAdmin(ctx, v.GetString("admin"), log); err != nil {
				return fail("oss", "", err)
			}
			srv, err := oss.NewServer(oss.Config{
				MDS:           mdsAddrs,
				OSTs:          osts,
				Listen:        v.GetString("listen"),
				AdvertiseAddr: v.GetString("advertise"),
				Secret:        secret,
				Logger:        log,
				OnListen: func(addr string) {
					log.Info("serving", "addr", addr)
				},
			})
			if err != nil {
				return fail("oss", "", err)
			}
			prometheus.MustRegister(newOSSCollector(srv))
			err = srv.Serve(ctx)
			if cerr := srv.Close(); err == nil {
				err = cerr
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return fail("oss", "", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML config file")
	f.StringSlice("mds", nil, "MDS addresses")
	f.StringArray("ost", nil, "OST directory (repeatable)")
	f.String("listen", "0.0.0.0:7100", "address to serve on")
	f.String("advertise", "", "address clients reach this OSS at (default: the listen address)")
	f.String("admin", "", "address for /metrics and /debug/pprof (off if empty)")
	f.String("log-level", "info", "debug, info, warn or error")
	addSecretFlag(cmd)
	return cmd
}

// runSharedMDS runs one MDS server per listen address over one store opened
// here (the way to run several MDSes on an embedded store, which belongs to
// one process): server i serves the i-th MDT of cfg.MDTs (none past them:
// a standby).
func runSharedMDS(ctx context.Context, cfg mds.Config, listens []string) error {
	db, err := kv.Open(ctx, cfg.KV, kv.Options{})
	if err != nil {
		return fmt.Errorf("mds: open store: %w", err)
	}
	defer db.Close()
	errs := make(chan error, len(listens))
	for i, addr := range listens {
		c := cfg
		c.Listen = addr
		c.MDTs, c.Standby = nil, true
		if i < len(cfg.MDTs) && !cfg.Standby {
			c.MDTs, c.Standby = []uint32{cfg.MDTs[i]}, false
		}
		go func() { errs <- mds.Serve(ctx, db, c) }()
	}
	var first error
	for range listens {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
