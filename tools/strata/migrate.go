package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

const migrateHelp = `Restripe files online, keeping their inode numbers (lfs migrate).

  strata migrate [-c COUNT] [-S SIZE] [-p POOL] [-v] [--json] FILE...

  -c, --stripe-count COUNT   objects to stripe over (-1: all OSTs)
  -S, --stripe-size SIZE     bytes per stripe, a multiple of 64k (suffixes k, M, G)
  -p, --pool POOL            allocate from this OST pool
  -v, --verbose              print each file's new layout generation
      --json                 print {"path", "layout_gen", "stripe_count", "stripe_size", "pool"} per file

Options left out keep the file's own (no option: the same layout on new
objects). The data is copied to new objects while the file stays in use; the
file is then frozen for a last copy of what changed, and the layout is swapped
in one step: readers and writers holding the old layout are told by the OSSes
(ESTALE) and continue on the new one. Progress is printed for files over 64
MiB. A file already being migrated, or whose layout changes meanwhile (a
release, a setstripe), fails with "Device or resource busy" and keeps its
layout.`

// migrateArgs is a parsed migrate command line.
type migrateArgs struct {
	comp    layout.ComponentSpec
	set     bool
	verbose bool
	asJSON  bool
	files   []string
}

// parseMigrate reads migrate's options in any order.
func parseMigrate(args []string) (*migrateArgs, error) {
	ma := &migrateArgs{comp: layout.ComponentSpec{StripeOffset: -1, End: layout.EOF}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			ma.files = append(ma.files, a)
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		if len(name) > 2 && !strings.HasPrefix(name, "--") {
			name, val, hasVal = name[:2], name[2:], true // -c4
		}
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		switch name {
		case "-h", "--help":
			return nil, errHelp
		case "-v", "--verbose":
			ma.verbose = true
		case "--json":
			ma.asJSON = true
		case "-c", "--stripe-count":
			v, err := value()
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < -1 {
				return nil, fmt.Errorf("invalid stripe count %q", v)
			}
			ma.comp.StripeCount, ma.set = int32(n), true
		case "-S", "--stripe-size":
			v, err := value()
			if err != nil {
				return nil, err
			}
			if ma.comp.StripeSize, err = layout.ParseSize(v); err != nil {
				return nil, fmt.Errorf("invalid stripe size %q: %w", v, err)
			}
			ma.set = true
		case "-p", "--pool":
			v, err := value()
			if err != nil {
				return nil, err
			}
			_, ma.comp.Pool = splitPoolName(v)
			ma.set = true
		default:
			return nil, fmt.Errorf("unknown option %s (see strata migrate --help)", a)
		}
	}
	if len(ma.files) == 0 {
		return nil, errors.New("no FILE given")
	}
	return ma, nil
}

// spec is the layout the command line asks for: empty keeps the file's.
func (ma *migrateArgs) spec() layout.Spec {
	if !ma.set {
		return layout.Spec{}
	}
	return layout.Spec{Components: []layout.ComponentSpec{ma.comp}}
}

// migrateRequest mirrors the mount's migrate request (client/fuse).
type migrateRequest struct {
	Spec layout.Spec `json:"spec"`
}

// migrateStatus mirrors the mount's progress report (client/fuse).
type migrateStatus struct {
	Phase string `json:"phase"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// progressThreshold is the size from which migrate prints progress.
const progressThreshold = 64 << 20

func newMigrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "migrate [-c COUNT] [-S SIZE] [-p POOL] FILE...",
		Short:              "Restripe files online, keeping their inode numbers",
		Long:               migrateHelp,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ma, err := parseMigrate(args)
			if errors.Is(err, errHelp) {
				fmt.Println(migrateHelp)
				return nil
			}
			if err != nil {
				return fail("migrate", "", err)
			}
			var docs []stripeJSON
			for _, p := range ma.files {
				fi, err := os.Lstat(p)
				if err != nil {
					return fail("migrate", p, err)
				}
				if !fi.Mode().IsRegular() {
					return fail("migrate", p, errors.New("not a regular file"))
				}
				if err := migrateFile(p, ma.spec(), fi.Size() >= progressThreshold); err != nil {
					return fail("migrate", p, err)
				}
				var resp proto.GetLayoutResp
				if err := getJSONXattr(p, xattrLayout, &resp); err != nil {
					return fail("migrate", p, err)
				}
				doc := toStripeJSON(p, &resp)
				if ma.asJSON {
					docs = append(docs, doc)
				} else if ma.verbose {
					fmt.Printf("%s: layout_gen %d, %d stripes of %d bytes\n", p, doc.LayoutGen,
						doc.Components[0].StripeCount, doc.Components[0].StripeSize)
				}
			}
			if ma.asJSON {
				enc := json.NewEncoder(os.Stdout)
				if len(docs) == 1 {
					return enc.Encode(docs[0])
				}
				return enc.Encode(docs)
			}
			return nil
		},
	}
}

// migrateFile migrates one file through its mount, printing progress to
// stderr if asked.
func migrateFile(path string, spec layout.Spec, showProgress bool) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	if showProgress {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				var st migrateStatus
				if err := getJSONXattr(path, xattrMigrate, &st); err != nil || st.Total == 0 {
					continue
				}
				fmt.Fprintf(os.Stderr, "strata: migrate: %s: %s %d%% (%s of %s)\n", path, st.Phase,
					st.Done*100/st.Total, humanSize(uint64(st.Done)), humanSize(uint64(st.Total)))
			}
		}()
	}
	err := setJSONXattr(path, xattrMigrate, migrateRequest{Spec: spec})
	close(done)
	wg.Wait()
	return err
}
