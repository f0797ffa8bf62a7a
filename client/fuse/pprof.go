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
	metric(w, "strata_client_connections", "gauge", "Connections open now, by transport.",
		`{transport="tcp"}`, st.TCPConns, `{transport="rdma"}`, st.RDMAConns)
	metric(w, "strata_client_calls_total", "counter", "Calls sent, by transport.",
		`{transport="tcp"}`, st.TCPCalls, `{transport="rdma"}`, st.RDMACalls)
	metric(w, "strata_client_rdma_fallbacks_total", "counter", "Connections that tried RDMA and use TCP.", "", st.RDMAFallbacks)
	metric(w, "strata_client_rdma_registered_bytes", "gauge", "Memory registered for RDMA now.", "", st.RDMAMemory)
	wb := c.WriteBehindStats()
	metric(w, "strata_client_dirty_bytes", "gauge", "Written bytes buffered or in flight to the OSSes, over all files.", "", wb.Dirty)
	metric(w, "strata_client_dirty_bytes_peak", "gauge", "The most bytes buffered or in flight at once.", "", wb.Peak)
	metric(w, "strata_client_dirty_bytes_limit", "gauge", "The write-behind budget over all files.", "", wb.Limit)
	ls := c.LeaseStats()
	metric(w, "strata_client_lease_hits_total", "counter", "Lookups and getattrs answered under a metadata lease.", "", ls.Hits)
	metric(w, "strata_client_lease_misses_total", "counter", "Lookups and getattrs sent to the MDS.", "", ls.Misses)
	metric(w, "strata_client_lease_callbacks_total", "counter", "Metadata lease callbacks received.", "", ls.Revokes)
	metric(w, "strata_client_leased_inodes", "gauge", "Inodes whose attributes are cached under leases.", "", ls.Cached)
}

// metric writes one metric: its help and type lines, then a sample per
// (labels, value) pair in samples.
func metric(w io.Writer, name, typ, help string, samples ...any) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	for i := 0; i+1 < len(samples); i += 2 {
		fmt.Fprintf(w, "%s%s %d\n", name, samples[i], samples[i+1])
	}
}
