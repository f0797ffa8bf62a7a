package fuse

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/stratafs/strata/client"
)

// pprofEnv names the environment variable that, set to a listen address
// (e.g. "127.0.0.1:6061"), makes Mount serve the mount process's
// /debug/pprof (CPU profile, execution trace, goroutines) there, for
// finding where FUSE request time goes, and /metrics (Prometheus text:
// connections and calls per transport). Unset, nothing listens.
const pprofEnv = "STRATA_PPROF"

// servePprof starts the profiling and metrics endpoint if STRATA_PPROF asks
// for one.
func servePprof(log *slog.Logger, c *client.Client) {
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
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { writeMetrics(w, c) })
	log.Info("fuse: serving pprof", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
}

// writeMetrics writes the client's counters in Prometheus text format.
func writeMetrics(w io.Writer, c *client.Client) {
	st := c.TransportStats()
	fmt.Fprintln(w, "# HELP strata_client_connections Connections open now, by transport.")
	fmt.Fprintln(w, "# TYPE strata_client_connections gauge")
	fmt.Fprintf(w, "strata_client_connections{transport=\"tcp\"} %d\n", st.TCPConns)
	fmt.Fprintf(w, "strata_client_connections{transport=\"rdma\"} %d\n", st.RDMAConns)
	fmt.Fprintln(w, "# HELP strata_client_calls_total Calls sent, by transport.")
	fmt.Fprintln(w, "# TYPE strata_client_calls_total counter")
	fmt.Fprintf(w, "strata_client_calls_total{transport=\"tcp\"} %d\n", st.TCPCalls)
	fmt.Fprintf(w, "strata_client_calls_total{transport=\"rdma\"} %d\n", st.RDMACalls)
	fmt.Fprintln(w, "# HELP strata_client_rdma_fallbacks_total Connections that tried RDMA and use TCP.")
	fmt.Fprintln(w, "# TYPE strata_client_rdma_fallbacks_total counter")
	fmt.Fprintf(w, "strata_client_rdma_fallbacks_total %d\n", st.RDMAFallbacks)
	fmt.Fprintln(w, "# HELP strata_client_rdma_registered_bytes Memory registered for RDMA now.")
	fmt.Fprintln(w, "# TYPE strata_client_rdma_registered_bytes gauge")
	fmt.Fprintf(w, "strata_client_rdma_registered_bytes %d\n", st.RDMAMemory)
	wb := c.WriteBehindStats()
	fmt.Fprintln(w, "# HELP strata_client_dirty_bytes Written bytes buffered or in flight to the OSSes, over all files.")
	fmt.Fprintln(w, "# TYPE strata_client_dirty_bytes gauge")
	fmt.Fprintf(w, "strata_client_dirty_bytes %d\n", wb.Dirty)
	fmt.Fprintln(w, "# HELP strata_client_dirty_bytes_peak The most bytes buffered or in flight at once.")
	fmt.Fprintln(w, "# TYPE strata_client_dirty_bytes_peak gauge")
	fmt.Fprintf(w, "strata_client_dirty_bytes_peak %d\n", wb.Peak)
	fmt.Fprintln(w, "# HELP strata_client_dirty_bytes_limit The write-behind budget over all files.")
	fmt.Fprintln(w, "# TYPE strata_client_dirty_bytes_limit gauge")
	fmt.Fprintf(w, "strata_client_dirty_bytes_limit %d\n", wb.Limit)
	ls := c.LeaseStats()
	fmt.Fprintln(w, "# HELP strata_client_lease_hits_total Lookups and getattrs answered under a metadata lease.")
	fmt.Fprintln(w, "# TYPE strata_client_lease_hits_total counter")
	fmt.Fprintf(w, "strata_client_lease_hits_total %d\n", ls.Hits)
	fmt.Fprintln(w, "# HELP strata_client_lease_misses_total Lookups and getattrs sent to the MDS.")
	fmt.Fprintln(w, "# TYPE strata_client_lease_misses_total counter")
	fmt.Fprintf(w, "strata_client_lease_misses_total %d\n", ls.Misses)
	fmt.Fprintln(w, "# HELP strata_client_lease_callbacks_total Metadata lease callbacks received.")
	fmt.Fprintln(w, "# TYPE strata_client_lease_callbacks_total counter")
	fmt.Fprintf(w, "strata_client_lease_callbacks_total %d\n", ls.Revokes)
	fmt.Fprintln(w, "# HELP strata_client_leased_inodes Inodes whose attributes are cached under leases.")
	fmt.Fprintln(w, "# TYPE strata_client_leased_inodes gauge")
	fmt.Fprintf(w, "strata_client_leased_inodes %d\n", ls.Cached)
}
