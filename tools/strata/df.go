package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/proto"
)

// dfTarget is one target in df --json (CLI.md).
type dfTarget struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Index uint32 `json:"index"`
	Total uint64 `json:"total"`
	Used  uint64 `json:"used"`
	Avail uint64 `json:"avail"`
	Files uint64 `json:"files"`
	FFree uint64 `json:"ffree"`
}

// dfDoc is df --json's document for one mount.
type dfDoc struct {
	Mount   string     `json:"mount"`
	FSName  string     `json:"fsname"`
	Targets []dfTarget `json:"targets"`
	Total   uint64     `json:"total"`
	Used    uint64     `json:"used"`
	Avail   uint64     `json:"avail"`
	Files   uint64     `json:"files"`
	FFree   uint64     `json:"ffree"`
}

func targetName(fsname, kind string, index uint32) string {
	if kind == "mdt" {
		return fmt.Sprintf("%s-MDT%04x", fsname, index)
	}
	return fmt.Sprintf("%s-OST%04x", fsname, index)
}

func buildDf(mnt string, t *proto.TargetsResp, pool string) dfDoc {
	d := dfDoc{Mount: mnt, FSName: t.FSName, Targets: []dfTarget{}}
	_, pool = splitPoolName(pool)
	for _, m := range t.MDTs {
		d.Targets = append(d.Targets, dfTarget{Name: targetName(t.FSName, "mdt", m.Index), Kind: "mdt", Index: m.Index,
			Total: m.Total, Used: m.Used, Avail: m.Avail, Files: m.Files, FFree: m.FFree})
		d.Files += m.Files
		d.FFree += m.FFree
	}
	for _, o := range t.OSTs {
		if pool != "" && !slices.Contains(o.Pools, pool) {
			continue
		}
		d.Targets = append(d.Targets, dfTarget{Name: targetName(t.FSName, "ost", o.Index), Kind: "ost", Index: o.Index,
			Total: o.Total, Used: o.Used, Avail: o.Avail, Files: o.Files, FFree: o.FFree})
		d.Total += o.Total
		d.Used += o.Used
		d.Avail += o.Avail
	}
	return d
}

// mountedTargets is the target table of one mount.
type mountedTargets struct {
	mnt     string
	targets proto.TargetsResp
}

// mountTargets reads the target tables of the mounts holding paths, or of
// every Strata mount when paths is empty.
func mountTargets(verb string, paths []string) ([]mountedTargets, error) {
	all := len(paths) == 0
	if all {
		var err error
		if paths, err = defaultMounts(); err != nil {
			return nil, fail(verb, "", err)
		}
	}
	var out []mountedTargets
	for _, p := range paths {
		mnt, err := mountFor(p)
		if err != nil {
			return nil, fail(verb, p, err)
		}
		m := mountedTargets{mnt: mnt}
		if err := getJSONXattr(mnt, xattrTargets, &m.targets); err != nil {
			if all {
				// One dead mount (its client was killed) must not hide the
				// others: say so and go on.
				fmt.Fprintln(os.Stderr, fail(verb, p, err))
				continue
			}
			return nil, fail(verb, p, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fail(verb, "", errors.New("no Strata mount answered"))
	}
	return out, nil
}

func newDfCmd() *cobra.Command {
	var human, inodes, asJSON bool
	var pool string
	cmd := &cobra.Command{
		Use:   "df [-h] [-i] [--json] [MNT]",
		Short: "Show space or inode usage per MDT and OST",
		Long: `Show the usage of every MDT and OST of the Strata filesystems mounted here (or of
the one at MNT), then the filesystem summary, as lfs df does.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := mountTargets("df", args)
			if err != nil {
				return err
			}
			var docs []dfDoc
			for _, m := range all {
				if pool != "" && !hasPool(&m.targets, pool) {
					return fail("df", m.mnt, fmt.Errorf("no pool %q", pool))
				}
				docs = append(docs, buildDf(m.mnt, &m.targets, pool))
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if len(docs) == 1 {
					return enc.Encode(docs[0])
				}
				return enc.Encode(docs)
			}
			for _, d := range docs {
				printDf(os.Stdout, d, human, inodes)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&human, "human-readable", "h", false, "print sizes in powers of 1024 (K, M, G)")
	cmd.Flags().BoolVarP(&inodes, "inodes", "i", false, "show inode usage")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVarP(&pool, "pool", "p", "", "show only the OSTs of pool [FSNAME.]POOL (and the MDTs)")
	cmd.Flags().Bool("help", false, "help for df")
	return cmd
}

// hasPool reports whether the filesystem has pool [FSNAME.]POOL.
func hasPool(t *proto.TargetsResp, pool string) bool {
	_, name := splitPoolName(pool)
	return slices.ContainsFunc(t.Pools, func(p proto.Pool) bool { return p.Name == name })
}

func printDf(w io.Writer, d dfDoc, human, inodes bool) {
	num := func(bytes uint64) string {
		if human {
			return humanSize(bytes)
		}
		return fmt.Sprint(bytes / 1024)
	}
	pct := func(used, total uint64) string {
		if total == 0 {
			return "-"
		}
		return fmt.Sprintf("%d%%", (used*100+total-1)/total)
	}
	if inodes {
		fmt.Fprintf(w, "%-24s %12s %12s %12s %5s %s\n", "UUID", "Inodes", "IUsed", "IFree", "IUse%", "Mounted on")
	} else {
		size := "1K-blocks"
		if human {
			size = "bytes"
		}
		fmt.Fprintf(w, "%-24s %12s %12s %12s %5s %s\n", "UUID", size, "Used", "Available", "Use%", "Mounted on")
	}
	for _, t := range d.Targets {
		where := fmt.Sprintf("%s[%s:%d]", d.Mount, map[string]string{"mdt": "MDT", "ost": "OST"}[t.Kind], t.Index)
		if inodes {
			used := t.Files - t.FFree
			fmt.Fprintf(w, "%-24s %12d %12d %12d %5s %s\n", t.Name+"_UUID", t.Files, used, t.FFree, pct(used, t.Files), where)
			continue
		}
		fmt.Fprintf(w, "%-24s %12s %12s %12s %5s %s\n", t.Name+"_UUID", num(t.Total), num(t.Used), num(t.Avail), pct(t.Used, t.Total), where)
	}
	fmt.Fprintln(w)
	if inodes {
		used := d.Files - d.FFree
		fmt.Fprintf(w, "%-24s %12d %12d %12d %5s %s\n\n", "filesystem_summary:", d.Files, used, d.FFree, pct(used, d.Files), d.Mount)
		return
	}
	fmt.Fprintf(w, "%-24s %12s %12s %12s %5s %s\n\n", "filesystem_summary:", num(d.Total), num(d.Used), num(d.Avail), pct(d.Used, d.Total), d.Mount)
}

// humanSize formats bytes with a power-of-1024 suffix, as lfs df -h.
func humanSize(b uint64) string {
	const units = "KMGTPE"
	if b < 1024 {
		return fmt.Sprintf("%dB", b)
	}
	v := float64(b) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%c", v, units[i])
}

// targetJSON is one target in osts --json and mdts --json.
type targetJSON struct {
	Index  uint32 `json:"index"`
	Name   string `json:"name"`
	UUID   string `json:"uuid,omitempty"`
	Addr   string `json:"addr,omitempty"`
	Active bool   `json:"active"`
	// OSTs: how this client reaches the OSS (tcp, rdma; "" before use).
	Transport string `json:"transport,omitempty"`
	// MDTs: the owning MDS (its address), the owner epoch, the lease left
	// and the state: serving, recovering or down.
	Owner       string `json:"owner,omitempty"`
	Epoch       uint64 `json:"epoch,omitempty"`
	LeaseMillis int64  `json:"lease_ms,omitempty"`
	State       string `json:"state,omitempty"`
}

func newOstsCmd() *cobra.Command { return newTargetListCmd("ost") }

func newMdtsCmd() *cobra.Command { return newTargetListCmd("mdt") }

// newTargetListCmd builds "osts" or "mdts" (kind "ost" or "mdt"): the
// targets of the mounted filesystems, in lfs osts/mdts format or as JSON.
func newTargetListCmd(kind string) *cobra.Command {
	verb, title := kind+"s", map[string]string{"ost": "OBDS", "mdt": "MDTS"}[kind]
	var asJSON bool
	cmd := &cobra.Command{
		Use:   verb + " [--json] [MNT]",
		Short: "List the " + strings.ToUpper(kind) + "s of mounted Strata filesystems",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mounts, err := mountTargets(verb, args)
			if err != nil {
				return err
			}
			all := []targetJSON{}
			for _, m := range mounts {
				t := &m.targets
				var list []targetJSON
				if kind == "ost" {
					for _, o := range t.OSTs {
						list = append(list, targetJSON{Index: o.Index, UUID: o.UUID, Addr: o.Addr, Active: o.Active, Transport: o.Transport})
					}
				} else {
					for _, d := range t.MDTs {
						o := d.Owner
						list = append(list, targetJSON{Index: d.Index, Active: o.State != "down", Owner: o.Addr,
							Epoch: o.Epoch, LeaseMillis: o.LeaseMillis, State: o.State})
					}
				}
				if !asJSON {
					fmt.Printf("%s: (%s)\n", title, m.mnt)
				}
				for _, j := range list {
					j.Name = targetName(t.FSName, kind, j.Index)
					all = append(all, j)
					if !asJSON {
						state := "ACTIVE"
						if !j.Active {
							state = "INACTIVE"
						}
						if kind == "mdt" {
							fmt.Printf("%d: %s_UUID %s %s epoch %d owner %s\n", j.Index, j.Name, state, j.State, j.Epoch, j.Owner)
							continue
						}
						fmt.Printf("%d: %s_UUID %s\n", j.Index, j.Name, state)
					}
				}
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{verb: all})
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
