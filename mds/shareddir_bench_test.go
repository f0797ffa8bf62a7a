package mds

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

// BenchmarkSharedDirCreates creates files from 8 goroutines, all in one
// directory ("shared") or each in its own ("own"), and reports the
// conflict retries per create: with the directory's changes spread over
// its shards, the shared case should stay near the own one.
func BenchmarkSharedDirCreates(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "shared", false: "own"}[shared]
		b.Run(name, func(b *testing.B) {
			e := newBenchEnv(b)
			dirs := make([]uint64, 8)
			for i := range dirs {
				dirs[i] = e.dir
				if !shared {
					d, err := e.s.Mkdir(e.ctx, &proto.MkdirReq{Cred: alice, Parent: e.dir, Name: fmt.Sprintf("d%d", i), Mode: 0o755, MDT: -1})
					if err != nil {
						b.Fatal(err)
					}
					dirs[i] = d.Attr.Ino
				}
			}
			var next atomic.Int64
			before := e.s.TxnStats()
			b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // about 8 goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					d := dirs[i%int64(len(dirs))]
					e.createIn(b, d, fmt.Sprintf("f%08d", i))
				}
			})
			after := e.s.TxnStats()
			b.ReportMetric(float64(after.Conflicts-before.Conflicts)/float64(b.N), "conflicts/op")
		})
	}
}

// createIn is create in directory dir.
func (e *benchEnv) createIn(b *testing.B, dir uint64, name string) {
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: dir, Name: name,
		Mode: 0o644, Umask: 0o022, Flags: syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL})
	if err != nil {
		b.Error(err)
		return
	}
	if _, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: r.Attr.Ino, Handle: r.Handle}); err != nil {
		b.Error(err)
	}
}

// BenchmarkSharedFileCloses: 64 ranks close one shared file at once, each
// reporting its own size (MPI_File_close is collective): ns per close, and
// the conflict retries per close that the store saw.
func BenchmarkSharedFileCloses(b *testing.B) {
	const ranks = 64
	e := newBenchEnv(b)
	r, err := e.s.Create(e.ctx, &proto.CreateReq{Cred: alice, Session: e.session, Parent: e.dir, Name: "shared",
		Mode: 0o644, Umask: 0o022, Flags: syscall.O_RDWR | syscall.O_CREAT})
	if err != nil {
		b.Fatal(err)
	}
	ino := r.Attr.Ino
	before := e.s.TxnStats()
	b.ResetTimer()
	for n := 0; n < b.N; n += ranks {
		b.StopTimer()
		handles := make([]uint64, ranks)
		for i := range handles {
			o, err := e.s.Open(e.ctx, &proto.OpenReq{Cred: alice, Session: e.session, Ino: ino, Flags: syscall.O_WRONLY})
			if err != nil {
				b.Fatal(err)
			}
			handles[i] = o.Handle
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for i, h := range handles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.s.Close(e.ctx, &proto.CloseReq{Session: e.session, Ino: ino, Handle: h, Wrote: true,
					Size: uint64(n*ranks+i) * 47008})
				if err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	after := e.s.TxnStats()
	b.ReportMetric(float64(after.Conflicts-before.Conflicts)/float64(b.N), "conflicts/op")
}
