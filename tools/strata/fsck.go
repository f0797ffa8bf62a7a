package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Exit statuses of strata fsck (CLI.md).
const (
	fsckClean    = 0 // nothing found
	fsckFound    = 1 // problems found and not (all) repaired
	fsckRepaired = 2 // problems found and all repaired
	fsckFailed   = 3 // the check itself failed
)

// fsckCallTimeout bounds one page request; the MDS keeps each page short.
const fsckCallTimeout = 2 * time.Minute

// exitStatus is an error that makes main exit with code, printing err
// first if there is one.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitStatus) Unwrap() error { return e.err }

// fsckFindingJSON is one finding in fsck --json.
type fsckFindingJSON struct {
	Class    string  `json:"class"`
	Ino      uint64  `json:"ino,omitempty"`
	OST      *uint32 `json:"ost,omitempty"`
	ObjectID string  `json:"object_id,omitempty"`
	Problem  string  `json:"problem"`
	Repaired bool    `json:"repaired"`
	Action   string  `json:"action,omitempty"`
}

// fsckSummary is the summary that ends fsck --json (CLI.md): items checked
// per class, problems found and repaired, whether the filesystem is clean,
// and whether everything could be checked.
type fsckSummary struct {
	Checked  map[string]uint64 `json:"checked"`
	Found    int               `json:"found"`
	Repaired int               `json:"repaired"`
	Clean    bool              `json:"clean"`
	Complete bool              `json:"complete"`
}

// fsckDoc is fsck --json's document; the summary comes last.
type fsckDoc struct {
	Repair   bool              `json:"repair"`
	Findings []fsckFindingJSON `json:"findings"`
	Notes    []string          `json:"notes,omitempty"`
	Summary  fsckSummary       `json:"summary"`
}

func newFsckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fsck [--repair] [--json] [--config FILE | --mds ADDR --secret-file F] [--check CLASS]... [MNT]",
		Short: "Check the filesystem's consistency, online, and repair it (Lustre's LFSCK)",
		Long: `Check the consistency of a mounted, in-use filesystem, as Lustre's LFSCK does:
objects no file references (orphan-objects), written objects gone from their
OST (missing-objects), wrong link counts (link-counts), entries pointing at
nothing (dangling-entries), directories cut off from the root
(directories), and leaked orphan-list and destroy-queue entries. The MDS runs
the check in short pages; progress goes to stderr.

Without --repair nothing changes. With it, orphan objects are destroyed,
link counts set, dangling entries removed, lost inodes and directories moved
to /lost+found, leaked list entries dropped, and lost objects reported and
forgotten (their data cannot be recovered; the range reads as zeros).

The cluster is the one mounted at MNT (its MDS and secret are those of the
client serving the mount), or the one --config FILE (DIR/client.yaml of
strata up) or --mds ADDR with --secret-file names; without any, that of
~/.strata/client.yaml, or of the only Strata mount. Exit status: 0 clean,
1 problems found (and not all repaired), 2 all problems repaired, 3 the
check failed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mdsAddrs, secret, err := fsckCluster(cmd, args)
			if err != nil {
				path := ""
				if len(args) > 0 {
					path = args[0]
				}
				return &exitStatus{code: fsckFailed, err: fail("fsck", path, err)}
			}
			ctx, stop := signalContext()
			defer stop()
			f := cmd.Flags()
			repair, _ := f.GetBool("repair")
			asJSON, _ := f.GetBool("json")
			checks, _ := f.GetStringSlice("check")
			opts := fsckOptions{repair: repair, asJSON: asJSON, checks: splitList(checks)}
			code, err := runFsck(ctx, mdsAddrs, secret, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return &exitStatus{code: fsckFailed, err: fail("fsck", "", err)}
			}
			if code != fsckClean {
				return &exitStatus{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Bool("repair", false, "repair what is found (default: report only)")
	f.Bool("json", false, "print one JSON document, ending with the summary")
	f.String("config", "", "client config file (DIR/client.yaml of strata up)")
	f.StringSlice("mds", nil, "MDS address (instead of --config)")
	f.StringSlice("check", nil, "run only these classes (repeatable)")
	addSecretFlag(cmd)
	return cmd
}

// fsckCluster returns the MDS addresses and the secret fsck uses: those
// --config, --mds and --secret-file (or STRATA_MDS, STRATA_SECRET...) give;
// else those of the client serving the mount holding MNT; else those of
// ~/.strata/client.yaml (strata up's default), or of the one Strata mount.
func fsckCluster(cmd *cobra.Command, args []string) ([]string, []byte, error) {
	f := cmd.Flags()
	named := f.Changed("config") || f.Changed("mds") || os.Getenv("STRATA_MDS") != ""
	if p := os.Getenv("STRATA_CONFIG"); p != "" && !named {
		if err := f.Set("config", p); err != nil {
			return nil, nil, err
		}
		named = true
	}
	mnt := ""
	if len(args) > 0 {
		var err error
		if mnt, err = mountFor(args[0]); err != nil {
			return nil, nil, err
		}
	} else if !named {
		home, _ := os.UserHomeDir()
		if path := filepath.Join(home, ".strata", "client.yaml"); home != "" && fileExists(path) {
			if err := f.Set("config", path); err != nil {
				return nil, nil, err
			}
		} else if mounts, err := strataMounts(); err == nil && len(mounts) == 1 {
			mnt = mounts[0].point
		}
	}
	v, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	addrs := splitList(v.GetStringSlice("mds"))
	secret, serr := loadSecret(v)
	if mnt != "" && (len(addrs) == 0 || serr != nil) {
		mAddrs, mSecret, err := mountCluster(mnt)
		if err != nil {
			return nil, nil, err
		}
		if len(addrs) == 0 {
			addrs = mAddrs
		}
		if serr != nil {
			secret, serr = mSecret, nil
		}
	}
	if len(addrs) == 0 {
		return nil, nil, errors.New("no MDS: pass MNT, --config FILE or --mds ADDR")
	}
	return addrs, secret, serr
}

// fileExists reports whether path names something.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// fsckOptions are what a run of strata fsck asks for.
type fsckOptions struct {
	repair bool
	asJSON bool
	checks []string
}

// runFsck drives one check page by page against the first MDS of addrs
// that answers, printing findings (or, with JSON, the document at the end)
// on out and progress on progress, and returns the exit status.
func runFsck(ctx context.Context, addrs []string, secret []byte, opts fsckOptions, out, progress io.Writer) (int, error) {
	rc := rpc.NewClient(rpc.ClientConfig{Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer rc.Close()
	doc := fsckDoc{Repair: opts.repair, Findings: []fsckFindingJSON{}}
	req := proto.FsckReq{Repair: opts.repair, Checkers: opts.checks}
	addr := ""
	var resp *proto.FsckResp
	var err error
	for _, a := range addrs {
		if resp, err = fsckCall(ctx, rc, a, &req); err == nil {
			addr = a
			break
		}
	}
	if err != nil {
		return fsckFailed, err
	}
	verb := "checking"
	if opts.repair {
		verb = "checking and repairing"
	}
	order := resp.Checkers
	fmt.Fprintf(progress, "fsck: %s %s (run %d on %s)\n", verb, strings.Join(order, ", "), resp.Run, addr)
	var checked map[string]uint64
	lastProgress := time.Now()
	found := map[string]int{}
	class := ""
	finished := func(class string) {
		fmt.Fprintf(progress, "fsck: %s: done, %d checked, %d found\n", class, checked[class], found[class])
	}
	for page := uint64(1); ; page++ {
		// A page works for one checker; a new one means the last is done.
		checked = resp.Checked
		if class != "" && resp.Checker != class {
			finished(class)
			lastProgress = time.Now()
		}
		class = resp.Checker
		for _, f := range resp.Findings {
			j := findingJSON(f)
			doc.Findings = append(doc.Findings, j)
			found[f.Class]++
			if !opts.asJSON {
				fmt.Fprintln(out, formatFinding(j))
			}
		}
		for _, n := range resp.Notes {
			doc.Notes = append(doc.Notes, n)
			fmt.Fprintf(progress, "fsck: note: %s\n", n)
		}
		if resp.Done {
			finished(class)
			break
		}
		if time.Since(lastProgress) >= time.Second {
			fmt.Fprintf(progress, "fsck: %s: %d checked so far, %d found\n", class, checked[class], found[class])
			lastProgress = time.Now()
		}
		req = proto.FsckReq{Run: resp.Run, Page: page}
		if resp, err = fsckCall(ctx, rc, addr, &req); err != nil {
			return fsckFailed, err
		}
	}
	sum := fsckSummary{Checked: checked, Found: len(doc.Findings), Complete: len(doc.Notes) == 0}
	if sum.Checked == nil {
		sum.Checked = map[string]uint64{}
	}
	for _, f := range doc.Findings {
		if f.Repaired {
			sum.Repaired++
		}
	}
	sum.Clean = sum.Found == 0
	doc.Summary = sum
	if opts.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return fsckFailed, err
		}
	} else {
		printFsckSummary(out, sum, order)
	}
	switch {
	case sum.Found == 0:
		return fsckClean, nil
	case sum.Repaired == sum.Found:
		return fsckRepaired, nil
	}
	return fsckFound, nil
}

// fsckCall sends one page request, resending it (with the same page
// number, so a lost reply is answered again rather than skipped) while the
// failure is on the way rather than at the MDS.
func fsckCall(ctx context.Context, rc *rpc.Client, addr string, req *proto.FsckReq) (*proto.FsckResp, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, fsckCallTimeout)
		var resp proto.FsckResp
		err = rc.Call(cctx, addr, proto.OpFsck, req, &resp)
		cancel()
		if err == nil {
			return &resp, nil
		}
		var re *rpc.Error
		if ctx.Err() != nil || !errors.As(err, &re) || errors.Unwrap(re) == nil {
			break // answered by the MDS, or given up
		}
	}
	return nil, fmt.Errorf("MDS %s: %w", addr, err)
}

// findingJSON converts a finding for output.
func findingJSON(f proto.FsckFinding) fsckFindingJSON {
	j := fsckFindingJSON{Class: f.Class, Ino: f.Ino, Problem: f.Problem, Repaired: f.Repaired, Action: f.Action}
	if f.Object != nil {
		ost := f.Object.OST
		j.OST, j.ObjectID = &ost, f.Object.ID.String()
	}
	return j
}

// formatFinding is a finding's line in the text report.
func formatFinding(j fsckFindingJSON) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: inode %#x", j.Class, j.Ino)
	if j.OST != nil {
		fmt.Fprintf(&b, ", object %s on OST %d", j.ObjectID, *j.OST)
	}
	fmt.Fprintf(&b, ": %s", j.Problem)
	switch {
	case j.Repaired:
		fmt.Fprintf(&b, ": repaired: %s", j.Action)
	case j.Action != "":
		fmt.Fprintf(&b, ": not repaired: %s", j.Action)
	}
	return b.String()
}

// printFsckSummary ends the text report, listing the classes in the order
// they ran.
func printFsckSummary(w io.Writer, s fsckSummary, order []string) {
	var parts []string
	for _, class := range order {
		parts = append(parts, fmt.Sprintf("%s %d", class, s.Checked[class]))
	}
	fmt.Fprintf(w, "checked: %s\n", strings.Join(parts, ", "))
	state := "clean"
	switch {
	case s.Found > 0 && s.Repaired == s.Found:
		state = "repaired"
	case s.Found > 0:
		state = "problems found"
	}
	if !s.Complete {
		state += " (incomplete: see the notes)"
	}
	fmt.Fprintf(w, "found %d, repaired %d: %s\n", s.Found, s.Repaired, state)
}
