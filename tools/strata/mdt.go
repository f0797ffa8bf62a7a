package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
)

// xattrMkdir asks the mount to create a directory on a chosen MDT.
const xattrMkdir = "user.strata.mkdir"

// mdtOfIno returns the MDT an inode number lives on (its high 16 bits).
func mdtOfIno(ino uint64) uint32 { return uint32(ino >> 48) }

func newMkdirCmd() *cobra.Command {
	var mdt, count int
	var mode string
	cmd := &cobra.Command{
		Use:   "mkdir [-i MDT_IDX] [-c MDT_COUNT] [-m MODE] PATH...",
		Short: "Create directories, optionally on a chosen MDT",
		Long: `Create directories as mkdir(1) does. With -i the directory (and so every entry
in it) is served by MDT MDT_IDX, as lfs mkdir -i places it; -1 lets the MDS
choose. Striped directories (-c greater than 1) are not supported yet.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			perm, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || perm > 0o7777 {
				return fail("mkdir", "", fmt.Errorf("invalid mode %q", mode))
			}
			if count > 1 {
				return fail("mkdir", "", errors.New("striped directories (-c > 1) are not supported yet"))
			}
			for _, p := range args {
				if err := mkdirOn(p, uint32(perm), mdt); err != nil {
					return fail("mkdir", p, err)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&mdt, "mdt-index", "i", -1, "MDT to create the directory on (-1: the MDS chooses)")
	cmd.Flags().IntVarP(&count, "mdt-count", "c", 1, "MDTs to stripe the directory over (only 1 for now)")
	cmd.Flags().StringVarP(&mode, "mode", "m", "0777", "permission bits (octal; the umask applies)")
	return cmd
}

// mkdirOn creates path on MDT mdt through the mount's virtual attribute, or
// with mkdir(2) when the MDS may choose.
func mkdirOn(path string, perm uint32, mdt int) error {
	if mdt < 0 {
		return os.Mkdir(path, os.FileMode(perm))
	}
	parent, name := filepath.Dir(path), filepath.Base(path)
	if _, err := mountFor(parent); err != nil {
		return err
	}
	if _, ok := statOK(path); ok {
		return os.ErrExist
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	return setJSONXattr(parent, xattrMkdir, map[string]any{
		"name": name, "mode": perm, "umask": umask, "mdt": mdt,
	})
}

// dirStripeJSON is getdirstripe --json's document.
type dirStripeJSON struct {
	Path        string `json:"path"`
	MDTIndex    uint32 `json:"mdt_index"`
	StripeCount int    `json:"stripe_count"`
	HashType    string `json:"hash_type"`
}

func newGetdirstripeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "getdirstripe [--json] PATH...",
		Short: "Show which MDT serves a directory",
		Long: `Show the MDT that serves a directory (lmv_stripe_offset) in lfs getdirstripe's
format. Directories are not striped over several MDTs yet, so the stripe count
is always 0 (a plain directory) and the hash type none.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []dirStripeJSON
			for _, p := range args {
				if _, err := mountFor(p); err != nil {
					return fail("getdirstripe", p, err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(p, &st); err != nil {
					return fail("getdirstripe", p, err)
				}
				if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
					return fail("getdirstripe", p, syscall.ENOTDIR)
				}
				d := dirStripeJSON{Path: p, MDTIndex: mdtOfIno(st.Ino), HashType: "none"}
				if asJSON {
					docs = append(docs, d)
					continue
				}
				fmt.Printf("%s\nlmv_stripe_count: 0 lmv_stripe_offset: %d lmv_hash_type: none\n", p, d.MDTIndex)
			}
			if asJSON {
				if len(docs) == 1 {
					return json.NewEncoder(os.Stdout).Encode(docs[0])
				}
				return json.NewEncoder(os.Stdout).Encode(docs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
