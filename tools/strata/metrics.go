package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratafs/strata/mds"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/rpc"
)

// scraped is one metric read at scrape time (client_golang's CounterFunc
// or GaugeFunc).
type scraped struct {
	name, help string
	gauge      bool
	value      func() float64
}

// registerScraped registers metrics read at scrape time, with labels.
func registerScraped(labels prometheus.Labels, ms ...scraped) {
	for _, m := range ms {
		opts := prometheus.Opts{Name: m.name, Help: m.help, ConstLabels: labels}
		if m.gauge {
			prometheus.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts), m.value))
		} else {
			prometheus.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts(opts), m.value))
		}
	}
}

// registerRPCMetrics exports an rpc server's counters.
func registerRPCMetrics(proc string, stats func() rpc.ServerStats) {
	registerScraped(prometheus.Labels{"proc": proc},
		scraped{"strata_rpc_connections", "Connections open now.", true, func() float64 { return float64(stats().Conns) }},
		scraped{"strata_rpc_in_flight", "Requests running or queued now.", true, func() float64 { return float64(stats().InFlight) }},
		scraped{"strata_rpc_requests_total", "Requests handed to handlers.", false, func() float64 { return float64(stats().Requests) }},
		scraped{"strata_rpc_errors_total", "Requests answered with an error status.", false, func() float64 { return float64(stats().Errors) }},
		scraped{"strata_rpc_refused_total", "Connections refused (authentication, malformed frames).", false, func() float64 { return float64(stats().Refused) }})
}

// registerMDSMetrics exports an MDS's metadata lease and transaction
// counters: conflicts are attempts the store refused because another
// transaction wrote what they touched first, retried with backoff.
func registerMDSMetrics(s *mds.Service) {
	registerScraped(nil,
		scraped{"strata_mds_lease_grants_total", "Metadata lease grants.", false, func() float64 { return float64(s.LeaseStats().Grants) }},
		scraped{"strata_mds_lease_callbacks_total", "Metadata lease callbacks sent.", false, func() float64 { return float64(s.LeaseStats().Revokes) }},
		scraped{"strata_mds_lease_acks_total", "Metadata lease callbacks acknowledged.", false, func() float64 { return float64(s.LeaseStats().Acks) }},
		scraped{"strata_mds_lease_evictions_total", "Clients evicted for leaving a callback unanswered.", false, func() float64 { return float64(s.LeaseStats().Expired) }},
		scraped{"strata_mds_leased_inodes", "Inodes on which some client holds a lease.", true, func() float64 { return float64(s.LeaseStats().Holders) }},
		scraped{"strata_mds_txn_commits_total", "Metadata transactions committed.", false, func() float64 { return float64(s.TxnStats().Commits) }},
		scraped{"strata_mds_txn_conflicts_total", "Metadata transaction attempts that conflicted and were retried.", false, func() float64 { return float64(s.TxnStats().Conflicts) }})
}

// ossCollector exports an OSS's object counters.
type ossCollector struct {
	srv                                  *oss.Server
	bytes, ops, errs, capDenied, badReqs *prometheus.Desc
}

func newOSSCollector(srv *oss.Server) *ossCollector {
	return &ossCollector{
		srv:       srv,
		bytes:     prometheus.NewDesc("strata_oss_bytes_total", "Object bytes moved, by direction.", []string{"dir"}, nil),
		ops:       prometheus.NewDesc("strata_oss_ops_total", "Object operations, by type.", []string{"op"}, nil),
		errs:      prometheus.NewDesc("strata_oss_errors_total", "Object operations that failed.", nil, nil),
		capDenied: prometheus.NewDesc("strata_oss_capability_denied_total", "Requests with a bad or expired capability.", nil, nil),
		badReqs:   prometheus.NewDesc("strata_oss_bad_requests_total", "Undecodable requests and requests for OSTs not served here.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ossCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bytes, c.ops, c.errs, c.capDenied, c.badReqs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ossCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Stats()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.BytesRead), "read")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.BytesWritten), "write")
	for op, n := range map[string]uint64{
		"write": s.Ops.Write, "read": s.Ops.Read, "punch": s.Ops.Punch, "sync": s.Ops.Sync,
		"getattr": s.Ops.Getattr, "destroy": s.Ops.Destroy, "statfs": s.Ops.Statfs,
	} {
		ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(n), op)
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(s.Errors))
	ch <- prometheus.MustNewConstMetric(c.capDenied, prometheus.CounterValue, float64(s.CapDenied))
	ch <- prometheus.MustNewConstMetric(c.badReqs, prometheus.CounterValue, float64(s.BadRequests))
}
