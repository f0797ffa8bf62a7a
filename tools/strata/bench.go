package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/layout"
)

// benchResult is one line of strata bench's table.
type benchResult struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Seconds float64 `json:"seconds"`
	Count   int64   `json:"count"` // bytes, files or operations
}

// benchOptions are strata bench's flags.
type benchOptions struct {
	bigSize    int64
	blockSize  int64
	recordSize int64
	smallSize  int64
	smallCount int
	metaCount  int
	threads    int
}

func newBenchCmd() *cobra.Command {
	var (
		asJSON                              bool
		bigSize, blockSz, smallSz, recordSz string
		smallCount, meta, nthreads          int
	)
	cmd := &cobra.Command{
		Use:   "bench [--json] [--big-file-size S] [--record-size S] [--small-file-size S] [--small-files N] [--meta-ops N] [--threads N] PATH",
		Short: "Measure a mounted filesystem: big and small file I/O and metadata operations",
		Long: `Bench runs a quick benchmark in a new directory under PATH (any mounted
directory; Strata's or another filesystem, to compare) and removes it
afterwards, as juicefs bench does: sequential write and read of one big file
per thread (fsync at the end of the write); write and read of small files;
create, stat, readdir and unlink of empty files, each thread in its own
directory. Then the shared stages: strided write and read of one file all
threads share, in records of --record-size (thread t of N takes records t,
t+N, t+2N, ..., as MPI-IO ranks do; as many bytes per thread as a big file),
and create and unlink with every thread in one directory. Progress goes to stderr; a
table (or with --json one document) goes to stdout. Reads are of data just
written: on a filesystem with a page cache they may be served from it
(Strata mounts bypass it by default).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := benchOptions{smallCount: smallCount, metaCount: meta, threads: max(1, nthreads)}
			for _, s := range []struct {
				flag string
				val  string
				dst  *int64
			}{{"big-file-size", bigSize, &opts.bigSize}, {"block-size", blockSz, &opts.blockSize},
				{"small-file-size", smallSz, &opts.smallSize}, {"record-size", recordSz, &opts.recordSize}} {
				n, err := layout.ParseSize(s.val)
				if err != nil || n <= 0 {
					return fail("bench", args[0], fmt.Errorf("--%s %q: want a size such as 1G", s.flag, s.val))
				}
				*s.dst = n
			}
			results, err := runBench(args[0], opts, os.Stderr)
			if err != nil {
				return fail("bench", args[0], err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"path": args[0], "threads": opts.threads, "results": results})
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "ITEM\tVALUE\tUNIT\tSECONDS\t")
			for _, r := range results {
				fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.2f\t\n", r.Name, r.Value, r.Unit, r.Seconds)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON document")
	f.StringVar(&bigSize, "big-file-size", "1G", "size of each big file")
	f.StringVar(&blockSz, "block-size", "1M", "I/O size of big-file writes and reads")
	f.StringVar(&recordSz, "record-size", "47008", "record size of the strided shared-file writes and reads")
	f.StringVar(&smallSz, "small-file-size", "128K", "size of each small file")
	f.IntVar(&smallCount, "small-files", 100, "small files per thread")
	f.IntVar(&meta, "meta-ops", 1000, "files per thread for create, stat, readdir and unlink")
	f.IntVar(&nthreads, "threads", 1, "concurrent workers, each in its own directory (and all in one for the shared stages)")
	return cmd
}

// runBench runs every stage in a fresh directory under path.
func runBench(path string, o benchOptions, progress io.Writer) ([]benchResult, error) {
	dir, err := os.MkdirTemp(path, "strata-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	workDirs := make([]string, o.threads)
	for i := range workDirs {
		workDirs[i] = filepath.Join(dir, fmt.Sprintf("t%d", i))
		if err := os.Mkdir(workDirs[i], 0o755); err != nil {
			return nil, err
		}
	}
	var results []benchResult
	stage := func(name, unit string, per int64, perUnit float64, fn func(w int, done *atomic.Int64) error) error {
		total := per * int64(o.threads)
		var done atomic.Int64
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					fmt.Fprintf(progress, "%s: %d/%d\n", name, done.Load(), total)
				}
			}
		}()
		start := time.Now()
		errs := make([]error, o.threads)
		var wg sync.WaitGroup
		for w := range o.threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = fn(w, &done)
			}()
		}
		wg.Wait()
		close(stop)
		secs := time.Since(start).Seconds()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		r := benchResult{Name: name, Unit: unit, Seconds: secs, Count: total, Value: float64(total) / perUnit / secs}
		fmt.Fprintf(progress, "%s: %.1f %s\n", name, r.Value, unit)
		results = append(results, r)
		return nil
	}
	big := func(w int) string { return filepath.Join(workDirs[w], "big") }
	shared := filepath.Join(dir, "shared")
	records := max(1, o.bigSize/o.recordSize) // per thread
	sharedDir := filepath.Join(dir, "shared-dir")
	sharedMeta := func(w, i int) string { return filepath.Join(sharedDir, fmt.Sprintf("s-%d-%d", w, i)) }
	small := func(w, i int) string { return filepath.Join(workDirs[w], fmt.Sprintf("small-%d", i)) }
	meta := func(w, i int) string { return filepath.Join(workDirs[w], "meta", fmt.Sprintf("m-%d", i)) }
	// createEach and removeEach make and remove thread w's metaCount empty
	// files, named by path.
	createEach := func(path func(w, i int) string) func(int, *atomic.Int64) error {
		return func(w int, done *atomic.Int64) error {
			for i := range o.metaCount {
				f, err := os.OpenFile(path(w, i), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err != nil {
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				done.Add(1)
			}
			return nil
		}
	}
	removeEach := func(path func(w, i int) string) func(int, *atomic.Int64) error {
		return func(w int, done *atomic.Int64) error {
			for i := range o.metaCount {
				if err := os.Remove(path(w, i)); err != nil {
					return err
				}
				done.Add(1)
			}
			return nil
		}
	}
	block := make([]byte, o.blockSize)
	for i := range block {
		block[i] = byte(i * 7)
	}
	steps := []func() error{
		func() error {
			return stage("big file write", "MiB/s", o.bigSize, 1<<20, func(w int, done *atomic.Int64) error {
				return writeFile(big(w), o.bigSize, block, done, true)
			})
		},
		func() error {
			return stage("big file read", "MiB/s", o.bigSize, 1<<20, func(w int, done *atomic.Int64) error {
				return readFile(big(w), make([]byte, o.blockSize), done)
			})
		},
		func() error {
			return stage("small file write", "files/s", int64(o.smallCount), 1, func(w int, done *atomic.Int64) error {
				buf := block[:min(int64(len(block)), o.smallSize)]
				for i := range o.smallCount {
					if err := writeFile(small(w, i), o.smallSize, buf, nil, false); err != nil {
						return err
					}
					done.Add(1)
				}
				return nil
			})
		},
		func() error {
			return stage("small file read", "files/s", int64(o.smallCount), 1, func(w int, done *atomic.Int64) error {
				buf := make([]byte, o.smallSize)
				for i := range o.smallCount {
					if err := readFile(small(w, i), buf, nil); err != nil {
						return err
					}
					done.Add(1)
				}
				return nil
			})
		},
		func() error {
			for w := range o.threads {
				if err := os.Mkdir(filepath.Join(workDirs[w], "meta"), 0o755); err != nil {
					return err
				}
			}
			return stage("create", "ops/s", int64(o.metaCount), 1, createEach(meta))
		},
		func() error {
			return stage("stat", "ops/s", int64(o.metaCount), 1, func(w int, done *atomic.Int64) error {
				for i := range o.metaCount {
					if _, err := os.Stat(meta(w, i)); err != nil {
						return err
					}
					done.Add(1)
				}
				return nil
			})
		},
		func() error {
			return stage("readdir", "entries/s", int64(o.metaCount), 1, func(w int, done *atomic.Int64) error {
				ents, err := os.ReadDir(filepath.Join(workDirs[w], "meta"))
				if err != nil {
					return err
				}
				if len(ents) != o.metaCount {
					return fmt.Errorf("listed %d entries, created %d", len(ents), o.metaCount)
				}
				done.Add(int64(len(ents)))
				return nil
			})
		},
		func() error {
			return stage("unlink", "ops/s", int64(o.metaCount), 1, removeEach(meta))
		},
		func() error {
			f, err := os.Create(shared)
			if err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return stage("shared file write", "MiB/s", records*o.recordSize, 1<<20, func(w int, done *atomic.Int64) error {
				return strided(shared, os.O_WRONLY, w, o.threads, records, make([]byte, o.recordSize), done)
			})
		},
		func() error {
			return stage("shared file read", "MiB/s", records*o.recordSize, 1<<20, func(w int, done *atomic.Int64) error {
				return strided(shared, os.O_RDONLY, w, o.threads, records, make([]byte, o.recordSize), done)
			})
		},
		func() error {
			if err := os.Mkdir(sharedDir, 0o755); err != nil {
				return err
			}
			return stage("shared dir create", "ops/s", int64(o.metaCount), 1, createEach(sharedMeta))
		},
		func() error {
			return stage("shared dir unlink", "ops/s", int64(o.metaCount), 1, removeEach(sharedMeta))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// writeFile writes size bytes to a new file path in blocks of buf, counting
// bytes into done (if set), and fsyncs it if sync.
func writeFile(path string, size int64, buf []byte, done *atomic.Int64, sync bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		off += n
		if done != nil {
			done.Add(n)
		}
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// strided writes (flag O_WRONLY, then fsync) or reads (O_RDONLY) thread w's
// share of a file the threads stripe in records of len(buf): records w,
// w+threads, w+2*threads, ..., records of them, counting bytes into done.
// A short read is an error: every record was written.
func strided(path string, flag, w, threads int, records int64, buf []byte, done *atomic.Int64) error {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	rec := int64(len(buf))
	for k := range records {
		off := (k*int64(threads) + int64(w)) * rec
		var n int
		if flag == os.O_WRONLY {
			buf[0], buf[rec-1] = byte(k), byte(w)
			n, err = f.WriteAt(buf, off)
		} else {
			n, err = f.ReadAt(buf, off)
			if err == nil && (buf[0] != byte(k) || buf[rec-1] != byte(w)) {
				err = fmt.Errorf("record %d of thread %d at %d reads back another's bytes", k, w, off)
			}
		}
		if err != nil {
			return err
		}
		done.Add(int64(n))
	}
	if flag == os.O_WRONLY {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return f.Close()
}

// readFile reads path to its end in reads of len(buf), counting bytes into
// done (if set).
func readFile(path string, buf []byte, done *atomic.Int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		n, err := f.Read(buf)
		if done != nil {
			done.Add(int64(n))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
