package fuse

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the environment variable that, set to a listen address
// (e.g. "127.0.0.1:6061"), makes Mount serve the mount process's
// /debug/pprof (CPU profile, execution trace, goroutines) there, for
// finding where FUSE request time goes. Unset, nothing listens.
const pprofEnv = "STRATA_PPROF"

// servePprof starts the profiling endpoint if STRATA_PPROF asks for one.
func servePprof(log *slog.Logger) {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("fuse: pprof listen", "addr", addr, "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("fuse: serving pprof", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
}
