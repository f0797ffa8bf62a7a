package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratafs/strata/mds"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/oss"
	"github.com/stratafs/strata/rpc"
)

// rpcCollector exports an rpc server's counters.
type rpcCollector struct {
	stats                               func() rpc.ServerStats
	conns, inFlight, reqs, errs, refuse *prometheus.Desc
}

func newRPCCollector(proc string, stats func() rpc.ServerStats) *rpcCollector {
	l := prometheus.Labels{"proc": proc}
	return &rpcCollector{
		stats:    stats,
		conns:    prometheus.NewDesc("strata_rpc_connections", "Connections open now.", nil, l),
		inFlight: prometheus.NewDesc("strata_rpc_in_flight", "Requests running or queued now.", nil, l),
		reqs:     prometheus.NewDesc("strata_rpc_requests_total", "Requests handed to handlers.", nil, l),
		errs:     prometheus.NewDesc("strata_rpc_errors_total", "Requests answered with an error status.", nil, l),
		refuse:   prometheus.NewDesc("strata_rpc_refused_total", "Connections refused (authentication, malformed frames).", nil, l),
	}
}

// Describe implements prometheus.Collector.
func (c *rpcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.inFlight, c.reqs, c.errs, c.refuse} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *rpcCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.Conns))
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(c.reqs, prometheus.CounterValue, float64(s.Requests))
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(s.Errors))
	ch <- prometheus.MustNewConstMetric(c.refuse, prometheus.CounterValue, float64(s.Refused))
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

// leaseCollector exports an MDS's metadata lease counters.
type leaseCollector struct {
	stats                                   func() mds.LeaseStats
	grants, revokes, acks, expired, holders *prometheus.Desc
}

func newLeaseCollector(stats func() mds.LeaseStats) *leaseCollector {
	return &leaseCollector{
		stats:   stats,
		grants:  prometheus.NewDesc("strata_mds_lease_grants_total", "Metadata lease grants.", nil, nil),
		revokes: prometheus.NewDesc("strata_mds_lease_callbacks_total", "Metadata lease callbacks sent.", nil, nil),
		acks:    prometheus.NewDesc("strata_mds_lease_acks_total", "Metadata lease callbacks acknowledged.", nil, nil),
		expired: prometheus.NewDesc("strata_mds_lease_evictions_total", "Clients evicted for leaving a callback unanswered.", nil, nil),
		holders: prometheus.NewDesc("strata_mds_leased_inodes", "Inodes on which some client holds a lease.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.grants, c.revokes, c.acks, c.expired, c.holders} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.grants, prometheus.CounterValue, float64(s.Grants))
	ch <- prometheus.MustNewConstMetric(c.revokes, prometheus.CounterValue, float64(s.Revokes))
	ch <- prometheus.MustNewConstMetric(c.acks, prometheus.CounterValue, float64(s.Acks))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(s.Expired))
	ch <- prometheus.MustNewConstMetric(c.holders, prometheus.GaugeValue, float64(s.Holders))
}

// txnCollector exports an MDS's metadata transaction counts: conflicts
// are attempts the store refused because another transaction wrote what
// they touched first, retried with backoff.
type txnCollector struct {
	stats              func() kv.Stats
	commits, conflicts *prometheus.Desc
}

func newTxnCollector(stats func() kv.Stats) *txnCollector {
	return &txnCollector{
		stats:     stats,
		commits:   prometheus.NewDesc("strata_mds_txn_commits_total", "Metadata transactions committed.", nil, nil),
		conflicts: prometheus.NewDesc("strata_mds_txn_conflicts_total", "Metadata transaction attempts that conflicted and were retried.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *txnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.commits
	ch <- c.conflicts
}

// Collect implements prometheus.Collector.
func (c *txnCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(s.Commits))
	ch <- prometheus.MustNewConstMetric(c.conflicts, prometheus.CounterValue, float64(s.Conflicts))
}
