package fuse

import (
	"strings"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
)

// TestMetricsShowTransports: the mount's /metrics counts connections and
// calls per transport; without an RDMA device every call goes over TCP.
func TestMetricsShowTransports(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{OSSes: 1, OSTsPerOSS: 1})
	c := cl.Client(t, client.Config{})
	var b strings.Builder
	writeMetrics(&b, c)
	out := b.String()
	for _, want := range []string{`strata_client_connections{transport="tcp"} `, `strata_client_calls_total{transport="rdma"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `strata_client_calls_total{transport="tcp"} 0`+"\n") {
		t.Errorf("no TCP calls counted after connecting:\n%s", out)
	}
}
