package mds

import (
	"fmt"
	"os"
	"testing"

	"github.com/stratafs/strata/proto"
)

// BenchmarkDirScale measures creates, lookups, readdir pages and unlinks in
// a directory that already holds n entries, for n of 10,000 and (with
// STRATA_BENCH_BIGDIR=1, some minutes to fill) 1,000,000: no operation's
// cost should grow with the directory (issue 9: within 2x).
func BenchmarkDirScale(b *testing.B) {
	sizes := []int{10_000}
	if os.Getenv("STRATA_BENCH_BIGDIR") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			e := newBenchEnv(b)
			for i := range n {
				e.create(b, fmt.Sprintf("base%07d", i))
				if i%10_000 == 0 {
					if err := e.beat(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run("create", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					e.create(b, fmt.Sprintf("new%09d", i))
				}
			})
			b.Run("lookup", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					req := &proto.LookupReq{Cred: alice, Parent: e.dir, Name: fmt.Sprintf("base%07d", i%n)}
					if _, err := e.s.Lookup(e.ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("readdir-page", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					req := &proto.ReaddirReq{Cred: alice, Ino: e.dir, Max: 256, Plus: true,
						After: fmt.Sprintf("base%07d", (i*256)%n)}
					if _, err := e.s.Readdir(e.ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
