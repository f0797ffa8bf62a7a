// Command mdbench measures metadata rates on a directory: it creates N empty
// files, stats them, and unlinks them, each phase with P parallel workers,
// and prints ops/s per phase (one line each, or JSON with -json).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

type result struct {
	Phase string  `json:"phase"`
	Files int     `json:"files"`
	Secs  float64 `json:"seconds"`
	Rate  float64 `json:"ops_per_sec"`
}

func main() {
	dir := flag.String("dir", "", "directory to work in (created)")
	n := flag.Int("n", 10000, "number of files")
	par := flag.Int("p", 1, "parallel workers")
	asJSON := flag.Bool("json", false, "print JSON")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "mdbench: -dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mdbench:", err)
		os.Exit(1)
	}
	phases := []struct {
		name string
		op   func(string) error
	}{
		{"create", func(p string) error {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"stat", func(p string) error { _, err := os.Stat(p); return err }},
		{"unlink", os.Remove},
	}
	var results []result
	for _, ph := range phases {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, *par)
		for w := 0; w < *par; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < *n; i += *par {
					if err := ph.op(filepath.Join(*dir, fmt.Sprintf("f%07d", i))); err != nil {
						errs <- fmt.Errorf("%s: %w", ph.name, err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "mdbench:", err)
			os.Exit(1)
		}
		secs := time.Since(start).Seconds()
		results = append(results, result{Phase: ph.name, Files: *n, Secs: secs, Rate: float64(*n) / secs})
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(results)
		return
	}
	for _, r := range results {
		fmt.Printf("%-7s %8d files %8.2fs %10.0f ops/s\n", r.Phase, r.Files, r.Secs, r.Rate)
	}
}
