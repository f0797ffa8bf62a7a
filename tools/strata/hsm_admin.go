package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/hsm"
	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// importParallel is how many stubs an import creates at once.
const importParallel = 16

func newHsmImportCmd() *cobra.Command {
	var archive uint32
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import --archive ID SOURCE_PREFIX DIR",
		Short: "Create released stubs in DIR for every object under an archive prefix (bucket link)",
		Long: `Import a dataset already in object storage: every object under SOURCE_PREFIX
(s3://BUCKET/PREFIX, or posix:DIR) becomes a released file in DIR (subdirectories
for the slashes of its key) with the object's size and mtime, restored from the
object on first access by the copytool of archive ID (for S3, one whose backend
is that bucket). A restore refuses an object that changed since the import; hsm
remove of an imported file never deletes its object. Needs root.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("hsm import", args[0], err)
			}
			ctx, stop := signalContext()
			defer stop()
			src, dir := args[0], args[1]
			began := time.Now()
			var n, failed atomic.Int64
			var bytes atomic.Int64
			var mu sync.Mutex
			var firstErr error
			made := map[string]bool{}
			work := make(chan [2]any)
			var wg sync.WaitGroup
			for range importParallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for item := range work {
						rel, info := item[0].(string), item[1].(hsm.ObjectInfo)
						if err := importOne(dir, rel, info, archive, made, &mu); err != nil {
							failed.Add(1)
							mu.Lock()
							if firstErr == nil {
								firstErr = err
							}
							mu.Unlock()
							fmt.Fprintln(os.Stderr, fail("hsm import", filepath.Join(dir, rel), err))
							continue
						}
						if c := n.Add(1); c%1000 == 0 {
							fmt.Fprintf(os.Stderr, "hsm import: %d objects\n", c)
						}
						bytes.Add(info.Size)
					}
				}()
			}
			lerr := hsm.ListSource(ctx, src, s3Config(v), func(rel string, info hsm.ObjectInfo) bool {
				select {
				case work <- [2]any{rel, info}:
					return true
				case <-ctx.Done():
					return false
				}
			})
			close(work)
			wg.Wait()
			if lerr != nil {
				return fail("hsm import", src, lerr)
			}
			secs := time.Since(began).Seconds()
			if asJSON {
				if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"source": src, "dir": dir, "files": n.Load(),
					"failed": failed.Load(), "bytes": bytes.Load(), "seconds": secs}); err != nil {
					return err
				}
			} else {
				fmt.Printf("imported %d objects (%s) from %s into %s in %.1f s", n.Load(), humanSize(uint64(bytes.Load())), src, dir, secs)
				if f := failed.Load(); f > 0 {
					fmt.Printf(", %d failed", f)
				}
				fmt.Println()
			}
			if failed.Load() > 0 {
				return &exitStatus{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().Uint32Var(&archive, "archive", 1, "archive id of the copytool serving the source")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary")
	cmd.Flags().String("config", "", "config file (S3 settings)")
	addS3Flags(cmd)
	return cmd
}

// importOne creates the stub of one object at dir/rel, and the directories
// above it.
func importOne(dir, rel string, info hsm.ObjectInfo, archive uint32, made map[string]bool, mu *sync.Mutex) error {
	path := filepath.Join(dir, filepath.FromSlash(rel))
	parent := filepath.Dir(path)
	mu.Lock()
	ok := made[parent]
	mu.Unlock()
	if !ok {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		mu.Lock()
		made[parent] = true
		mu.Unlock()
	}
	req := proto.HsmImportReq{Name: filepath.Base(path), Mode: 0o644, Size: uint64(info.Size), Mtime: info.Mtime.UnixNano(),
		ArchiveID: archive, Key: info.Key, ETag: info.ETag}
	return setJSONXattr(parent, xattrHsmImport, req)
}

func newHsmPolicyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "policy [--dry-run] [--json] [--config FILE | --mds ADDR --secret-file F] [rules]",
		Short: "Archive and release files by rules: age, size, OST fullness (least recently used first)",
		Long: `Run the HSM policies once: archive files not modified for --archive-older-than
or larger than --archive-larger-than, and release archived, clean files from
every OST more used than --release-above (a fraction) until it is at
--release-to, least recently used first. Candidates come from the MDSes' inode
records, not a walk of the mount. The rules may also be in the config file
under hsm-policy (archive-older-than, archive-larger-than, archive-id,
release-above, release-to). --dry-run prints what it would do, in the same
form as the run prints what it does.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("hsm policy", "", err)
			}
			p, err := policyOf(cmd)
			if err != nil {
				return fail("hsm policy", "", err)
			}
			if p.ArchiveOlderThan == 0 && p.ArchiveLargerThan == 0 && p.ReleaseAbove == 0 {
				if err := v.UnmarshalKey("hsm-policy", &p); err != nil {
					return fail("hsm policy", "", fmt.Errorf("hsm-policy in the config: %w", err))
				}
			}
			asJSON, _ := cmd.Flags().GetBool("json")
			ctx, stop := signalContext()
			defer stop()
			addrs, secret, err := fsckCluster(cmd, args)
			if err != nil {
				return fail("hsm policy", "", err)
			}
			c, err := client.New(ctx, client.Config{MDS: addrs, Secret: secret, Logger: newLogger("warn")})
			if err != nil {
				return fail("hsm policy", "", err)
			}
			defer c.Close()
			ds, err := p.Plan(ctx, c, time.Now())
			if err != nil {
				return fail("hsm policy", "", err)
			}
			var errs []error
			if !dryRun {
				errs = p.Apply(ctx, c, ds)
			}
			type doc struct {
				hsm.Decision
				Error string `json:"error,omitempty"`
			}
			var docs []doc
			failed := 0
			for i, d := range ds {
				line := d.String()
				dd := doc{Decision: d}
				if i < len(errs) && errs[i] != nil {
					failed++
					dd.Error = errs[i].Error()
					fmt.Fprintln(os.Stderr, fail("hsm policy", fmt.Sprintf("[0x%x]", d.Ino), errs[i]))
				}
				docs = append(docs, dd)
				if !asJSON {
					fmt.Println(line)
				}
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"dry_run": dryRun, "decisions": docs, "failed": failed})
			}
			if failed > 0 {
				return &exitStatus{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print what the policy would do, change nothing")
	f.Duration("archive-older-than", 0, "archive files not modified for this long")
	f.String("archive-larger-than", "", "archive files larger than this (k, M, G, T)")
	f.Uint32("archive-id", 0, "archive id of new copies (default 1)")
	f.Float64("release-above", 0, "release from OSTs more used than this fraction")
	f.Float64("release-to", 0, "release until the OST is at this fraction")
	addAdminFlags(cmd)
	return cmd
}

// policyOf reads the rules given as flags.
func policyOf(cmd *cobra.Command) (hsm.Policy, error) {
	f := cmd.Flags()
	var p hsm.Policy
	p.ArchiveOlderThan, _ = f.GetDuration("archive-older-than")
	if s, _ := f.GetString("archive-larger-than"); strings.TrimSpace(s) != "" {
		n, err := layout.ParseSize(s)
		if err != nil {
			return p, fmt.Errorf("--archive-larger-than: %w", err)
		}
		p.ArchiveLargerThan = n
	}
	p.ArchiveID, _ = f.GetUint32("archive-id")
	p.ReleaseAbove, _ = f.GetFloat64("release-above")
	p.ReleaseTo, _ = f.GetFloat64("release-to")
	return p, nil
}
