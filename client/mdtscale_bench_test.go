package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/client/internal/testcluster"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// BenchmarkCreatesPerMDT measures creates per second with 1, 2 and 4 MDTs,
// each served by its own MDS server (all over one embedded store in this
// process, as strata up --mds N runs them): 8 workers create files, spread
// over one directory per MDT. Report it with -benchtime and compare the
// creates/s metric across the sub-benchmarks; on one small machine every
// server shares the same cores, so it shows the cost of the routing more
// than the scaling a cluster of hosts gets.
func BenchmarkCreatesPerMDT(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("mdts=%d", n), func(b *testing.B) {
			servers := make([][]uint32, n)
			for i := range servers {
				servers[i] = []uint32{uint32(i)}
			}
			cl := testcluster.Start(b, testcluster.Options{OSSes: 1, OSTsPerOSS: 2, MDSes: servers})
			c := cl.Client(b, client.Config{})
			ctx := context.Background()
			dirs := make([]uint64, n)
			for i := range dirs {
				a, err := c.Mkdir(ctx, proto.Cred{}, c.Root(), fmt.Sprintf("d%d", i), 0o755, 0, int32(i))
				if err != nil {
					b.Fatal(err)
				}
				dirs[i] = a.Ino
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						f, err := c.Create(ctx, proto.Cred{}, dirs[int(i)%n], fmt.Sprintf("f%d-%d", w, i), 0o644, 0,
							syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, layout.Spec{})
						if err == nil {
							err = f.Close()
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
