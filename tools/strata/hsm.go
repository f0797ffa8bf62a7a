package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/client/fuse"
	"github.com/stratafs/strata/proto"
)

// HSM verbs on mounted paths, through the mount's virtual xattrs (as lfs
// uses ioctls): the MDS checks the caller's permissions.
const (
	xattrHsm       = "user.strata.hsm"
	xattrHsmImport = "user.strata.hsm.import"
	xattrHsmList   = "user.strata.hsm.list"
)

func newHsmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm archive|release|restore|remove|cancel|state|action|set|clear|import|list|policy ...",
		Short: "Hierarchical storage management: move file data to an archive and back",
		Long: `Lustre's HSM: archive copies a file's data to an archive (a copytool carries it
out), release frees its OST objects once it is archived and clean, and reading,
writing or truncating a released file restores it first (transparently);
restore does it ahead of time. On a directory, archive and restore recurse;
with --wait they return when every file is done, printing progress.`,
	}
	cmd.AddCommand(
		newHsmActionCmd("archive", proto.HsmArchive, true),
		newHsmActionCmd("release", proto.HsmRelease, false),
		newHsmActionCmd("restore", proto.HsmRestore, true),
		newHsmActionCmd("remove", proto.HsmRemove, false),
		newHsmActionCmd("cancel", proto.HsmCancel, false),
		newHsmStateCmd(), newHsmShowActionCmd(),
		newHsmFlagsCmd("set"), newHsmFlagsCmd("clear"),
		newHsmImportCmd(), newHsmListCmd(), newHsmPolicyCmd(),
	)
	return cmd
}

// hsmFiles lists the regular files of paths, recursing into directories
// when recurse.
func hsmFiles(paths []string, recurse bool) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		if !recurse {
			return nil, fmt.Errorf("%s: is a directory", p)
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hsmSummary is the --json document of archive, restore and the other
// action verbs.
type hsmSummary struct {
	Action  string         `json:"action"`
	Files   int            `json:"files"`
	Failed  int            `json:"failed"`
	Bytes   int64          `json:"bytes"`
	Seconds float64        `json:"seconds"`
	Errors  []hsmFileError `json:"errors,omitempty"`
}

type hsmFileError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// hsmWaitParallel is how many files --wait waits for at once.
const hsmWaitParallel = 16

func newHsmActionCmd(verb string, action uint8, recurse bool) *cobra.Command {
	var archive uint32
	var wait, asJSON bool
	use := "hsm " + verb + " FILE..."
	if recurse {
		use = "hsm " + verb + " [--wait] [--json] FILE|DIR..."
	}
	cmd := &cobra.Command{
		Use: strings.TrimPrefix(use, "hsm "),
		Short: map[string]string{"archive": "Copy files to the archive (queued; --wait waits)", "release": "Free the OST space of archived, clean files",
			"restore": "Bring released files back (queued; --wait waits)", "remove": "Delete the archive copies of files",
			"cancel": "Cancel the actions queued for files"}[verb],
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := hsmFiles(args, recurse)
			if err != nil {
				return fail("hsm "+verb, "", err)
			}
			return runHsmAction(verb, action, archive, files, wait && recurse, asJSON, cmd.ErrOrStderr())
		},
	}
	if verb == "archive" {
		cmd.Flags().Uint32Var(&archive, "archive", 0, "archive id (default: the file's, or 1)")
		cmd.Flags().Uint32VarP(&archive, "archive-id", "a", 0, "archive id (Lustre spelling)")
	}
	if recurse {
		cmd.Flags().BoolVar(&wait, "wait", false, "wait until every file is done, printing progress")
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary")
	return cmd
}

// runHsmAction queues (or, for release, does) action on every file and,
// with wait, waits for them all, printing progress to progress.
func runHsmAction(verb string, action uint8, archive uint32, files []string, wait, asJSON bool, progress io.Writer) error {
	began := time.Now()
	sum := hsmSummary{Action: verb, Files: len(files)}
	var mu sync.Mutex
	sizes := map[string]int64{}
	failed := func(p string, err error) {
		mu.Lock()
		defer mu.Unlock()
		sum.Failed++
		sum.Errors = append(sum.Errors, hsmFileError{Path: p, Error: plainError(err).Error()})
		if !asJSON {
			fmt.Fprintln(os.Stderr, fail("hsm "+verb, p, err))
		}
	}
	var queued []string
	for _, p := range files {
		if st, err := os.Stat(p); err == nil {
			sizes[p] = st.Size()
		}
		if err := setJSONXattr(p, xattrHsm, fuse.HsmRequest{Action: action, ArchiveID: archive}); err != nil {
			failed(p, err)
			continue
		}
		queued = append(queued, p)
	}
	if wait {
		var done, bytes int64
		stop := make(chan struct{})
		var tick sync.WaitGroup
		tick.Add(1)
		go func() {
			defer tick.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				mu.Lock()
				fmt.Fprintf(progress, "hsm %s: %d/%d files, %s, %s/s\n", verb, done, len(queued), humanSize(uint64(bytes)),
					humanSize(uint64(float64(bytes)/time.Since(began).Seconds())))
				mu.Unlock()
			}
		}()
		work := make(chan string)
		var wg sync.WaitGroup
		for range hsmWaitParallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range work {
					err := hsmWaitFile(p, action)
					mu.Lock()
					done++
					if err == nil {
						bytes += sizes[p]
					}
					mu.Unlock()
					if err != nil {
						failed(p, err)
					}
				}
			}()
		}
		for _, p := range queued {
			work <- p
		}
		close(work)
		wg.Wait()
		close(stop)
		tick.Wait()
		sum.Bytes = bytes
	} else {
		for _, p := range queued {
			sum.Bytes += sizes[p]
		}
	}
	sum.Seconds = time.Since(began).Seconds()
	if asJSON {
		if err := json.NewEncoder(os.Stdout).Encode(sum); err != nil {
			return err
		}
	} else if wait || len(files) > 1 {
		rate := float64(sum.Bytes) / max(sum.Seconds, 1e-9)
		fmt.Fprintf(progress, "hsm %s: %d files (%d failed), %s in %.1f s, %s/s\n", verb, sum.Files, sum.Failed,
			humanSize(uint64(sum.Bytes)), sum.Seconds, humanSize(uint64(rate)))
	}
	if sum.Failed > 0 {
		return &exitStatus{code: 1}
	}
	return nil
}

// hsmWaitFile waits for the action queued on p and checks its outcome.
func hsmWaitFile(p string, action uint8) error {
	var st proto.HsmState
	if err := getJSONXattr(p, xattrHsm, &st); err != nil {
		return err
	}
	if st.Action.Status == proto.HsmWaiting || st.Action.Status == proto.HsmRunning {
		if err := setJSONXattr(p, xattrHsm, fuse.HsmRequest{Action: proto.HsmWait, Seq: st.Action.Seq, Wait: true}); err != nil {
			return err
		}
		if err := getJSONXattr(p, xattrHsm, &st); err != nil {
			return err
		}
	}
	switch {
	case action == proto.HsmRestore && st.Flags&proto.HsmReleased != 0,
		action == proto.HsmArchive && st.Flags&proto.HsmArchived == 0:
		why := st.Action.Error
		if why == "" {
			why = "not done"
		}
		return fmt.Errorf("%s %s: %s", proto.HsmActionName(action), proto.HsmStatusName(st.Action.Status), why)
	}
	return nil
}

// hsmStateJSON is hsm state --json's document (CLI.md).
type hsmStateJSON struct {
	Path      string   `json:"path"`
	Flags     []string `json:"flags"`
	ArchiveID uint32   `json:"archive_id"`
}

func newHsmStateCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "state [--json] FILE...",
		Short: "Show the HSM state of files (never restores)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []hsmStateJSON
			for _, p := range args {
				var st proto.HsmState
				if err := getJSONXattr(p, xattrHsm, &st); err != nil {
					return fail("hsm state", p, err)
				}
				if asJSON {
					docs = append(docs, hsmStateJSON{Path: p, Flags: proto.HsmFlagNames(st.Flags), ArchiveID: st.ArchiveID})
					continue
				}
				fmt.Println(formatHsmState(p, st))
			}
			if asJSON {
				return encodeDocs(docs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// formatHsmState prints a state as lfs hsm_state does:
// "PATH: (0x00000009) exists archived, archive_id:1".
func formatHsmState(p string, st proto.HsmState) string {
	s := fmt.Sprintf("%s: (0x%08x)", p, st.Flags)
	if names := proto.HsmFlagNames(st.Flags); len(names) > 0 {
		s += " " + strings.Join(names, " ")
	}
	if st.Flags != 0 {
		s += fmt.Sprintf(", archive_id:%d", st.ArchiveID)
	}
	return s
}

// encodeDocs prints one document, or an array of several.
func encodeDocs[T any](docs []T) error {
	enc := json.NewEncoder(os.Stdout)
	if len(docs) == 1 {
		return enc.Encode(docs[0])
	}
	return enc.Encode(docs)
}

// hsmActionJSON is hsm action --json's document (CLI.md).
type hsmActionJSON struct {
	Path       string `json:"path"`
	Action     string `json:"action"`
	Status     string `json:"status"`
	BytesMoved uint64 `json:"bytes_moved"`
	Error      string `json:"error,omitempty"`
}

func newHsmShowActionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "action [--json] FILE...",
		Short: "Show the HSM action queued or running for files (or the last one, with --json)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []hsmActionJSON
			for _, p := range args {
				var st proto.HsmState
				if err := getJSONXattr(p, xattrHsm, &st); err != nil {
					return fail("hsm action", p, err)
				}
				a := st.Action
				if asJSON {
					docs = append(docs, hsmActionJSON{Path: p, Action: proto.HsmActionName(a.Kind), Status: proto.HsmStatusName(a.Status),
						BytesMoved: a.Bytes, Error: a.Error})
					continue
				}
				if a.Status == proto.HsmWaiting || a.Status == proto.HsmRunning {
					fmt.Printf("%s: %s %s (%d bytes moved)\n", p, proto.HsmActionName(a.Kind), strings.ToUpper(proto.HsmStatusName(a.Status)), a.Bytes)
				} else {
					fmt.Printf("%s: NOOP\n", p)
				}
			}
			if asJSON {
				return encodeDocs(docs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// hsmFlagOptions are the flags of hsm set and hsm clear, Lustre's spellings.
var hsmFlagOptions = []struct {
	name string
	flag uint32
}{
	{"norelease", proto.HsmNoRelease}, {"noarchive", proto.HsmNoArchive}, {"dirty", proto.HsmDirty},
	{"lost", proto.HsmLost}, {"exists", proto.HsmExists}, {"archived", proto.HsmArchived},
}

func newHsmFlagsCmd(verb string) *cobra.Command {
	chosen := map[string]*bool{}
	var archive uint32
	cmd := &cobra.Command{
		Use:   verb + " --norelease|--noarchive|--dirty|--lost|--exists|--archived FILE...",
		Short: map[string]string{"set": "Set HSM flags of files", "clear": "Clear HSM flags of files"}[verb],
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var flags uint32
			for _, o := range hsmFlagOptions {
				if *chosen[o.name] {
					flags |= o.flag
				}
			}
			if flags == 0 {
				return fail("hsm "+verb, "", errors.New("no flag given"))
			}
			req := fuse.HsmRequest{Action: proto.HsmSetFlags, ArchiveID: archive}
			if verb == "set" {
				req.Set = flags
			} else {
				req.Clear = flags
			}
			for _, p := range args {
				if err := setJSONXattr(p, xattrHsm, req); err != nil {
					return fail("hsm "+verb, p, err)
				}
			}
			return nil
		},
	}
	for _, o := range hsmFlagOptions {
		chosen[o.name] = cmd.Flags().Bool(o.name, false, o.name)
	}
	cmd.Flags().Uint32Var(&archive, "archive", 0, "archive id")
	return cmd
}

func newHsmListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json] [PATH]",
		Short: "List the coordinator's queue and the registered copytools",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "."
			if len(args) > 0 {
				p = args[0]
			}
			var l proto.HsmListResp
			if err := getJSONXattr(p, xattrHsmList, &l); err != nil {
				return fail("hsm list", p, err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(l)
			}
			for _, a := range l.Agents {
				fmt.Printf("agent %#x %s archives %v\n", a.ID, a.Name, a.Archives)
			}
			for _, a := range l.Actions {
				fmt.Printf("[0x%x] %s %s archive %d (%d bytes moved)\n", a.Ino, proto.HsmActionName(a.Kind),
					strings.ToUpper(proto.HsmStatusName(a.Status)), a.ArchiveID, a.Bytes)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
