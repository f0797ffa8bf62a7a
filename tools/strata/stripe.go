package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

const setstripeHelp = `Set the layout of a new file or the default layout of a directory.

  strata setstripe [-c COUNT] [-S SIZE] [-i OST_IDX] [-o OST_LIST] [-p POOL] PATH
  strata setstripe -E END [-c ..] [-S ..] [-p ..] -E END ... PATH   (composite, PFL)
  strata setstripe -d DIR                                           (remove a directory default)

  -c, --stripe-count COUNT   objects to stripe over (-1: all OSTs, 0: default)
  -S, --stripe-size SIZE     bytes per stripe, a multiple of 64k (suffixes k, M, G)
  -i, --stripe-index IDX     first OST (-1: the MDS chooses)
  -o, --ost LIST             exact OSTs, e.g. 0,2,4-6
  -p, --pool POOL            allocate from this OST pool
  -E, --component-end END    end of a component (-1 or eof: to the end of file)
  -d, --delete               remove the default layout of a directory

On a directory the layout becomes the default for files created below it. On a
path that does not exist it creates an empty file with that layout. A file
that already holds data keeps its layout (use migrate).`

func newSetstripeCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "setstripe [OPTIONS] PATH...",
		Short:              "Set the layout of a new file or a directory's default",
		Long:               setstripeHelp,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, del, paths, err := parseSetstripe(args)
			if errors.Is(err, errHelp) {
				fmt.Println(setstripeHelp)
				return nil
			}
			if err != nil {
				return fail("setstripe", "", err)
			}
			for _, p := range paths {
				if err := setstripe(p, spec, del); err != nil {
					return fail("setstripe", p, err)
				}
			}
			return nil
		},
	}
}

var errHelp = errors.New("help")

// parseSetstripe parses lfs setstripe's options in order, since -E opens a
// new component and the options after it describe that component.
func parseSetstripe(args []string) (spec layout.Spec, del bool, paths []string, err error) {
	cur := layout.ComponentSpec{StripeOffset: -1, End: layout.EOF}
	composite := false
	have := false
	flush := func() {
		spec.Components = append(spec.Components, cur)
		cur = layout.ComponentSpec{StripeOffset: -1, End: layout.EOF}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "-") || a == "-" {
			paths = append(paths, a)
			continue
		}
		needVal := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if len(name) > 2 && !strings.HasPrefix(name, "--") {
				return name[2:], nil // -c4
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		short := name
		if len(name) > 2 && !strings.HasPrefix(name, "--") {
			short = name[:2]
		}
		switch short {
		case "-h", "--help":
			return spec, false, nil, errHelp
		case "-d", "--delete":
			del = true
		case "-E", "--component-end":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			if composite {
				flush()
			}
			composite, have = true, true
			if v == "-1" || strings.EqualFold(v, "eof") {
				cur.End = layout.EOF
			} else if cur.End, err = layout.ParseSize(v); err != nil {
				return spec, false, nil, fmt.Errorf("-E %s: %w", v, err)
			}
		case "-c", "--stripe-count":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < -1 {
				return spec, false, nil, fmt.Errorf("invalid stripe count %q", v)
			}
			cur.StripeCount, have = int32(n), true
		case "-S", "--stripe-size":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			if cur.StripeSize, err = layout.ParseSize(v); err != nil {
				return spec, false, nil, fmt.Errorf("invalid stripe size %q: %w", v, err)
			}
			have = true
		case "-i", "--stripe-index", "--stripe-offset":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < -1 {
				return spec, false, nil, fmt.Errorf("invalid stripe index %q", v)
			}
			cur.StripeOffset, have = int32(n), true
		case "-o", "--ost":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			if cur.OSTs, err = parseOSTList(v); err != nil {
				return spec, false, nil, err
			}
			have = true
		case "-p", "--pool":
			v, err := needVal()
			if err != nil {
				return spec, false, nil, err
			}
			cur.Pool, have = v, true
		default:
			return spec, false, nil, fmt.Errorf("unknown option %s (see strata setstripe --help)", name)
		}
	}
	if len(paths) == 0 {
		return spec, false, nil, errors.New("no PATH given")
	}
	if del {
		return layout.Spec{}, true, paths, nil
	}
	if !have {
		return spec, false, nil, errors.New("no layout option given (see strata setstripe --help)")
	}
	flush()
	if err := spec.Validate(); err != nil {
		return spec, false, nil, err
	}
	return spec, false, paths, nil
}

// parseOSTList parses "0,2,4-6".
func parseOSTList(s string) ([]uint32, error) {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid OST list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("invalid OST range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, uint32(i))
		}
	}
	return out, nil
}

func setstripe(path string, spec layout.Spec, del bool) error {
	fi, exists := statOK(path)
	if del {
		if !exists || !fi.IsDir() {
			return errors.New("-d applies to an existing directory")
		}
		return setJSONXattr(path, xattrLayout, layout.Spec{})
	}
	if !exists {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return setJSONXattr(path, xattrLayout, spec)
}

func newGetstripeCmd() *cobra.Command {
	var verbose, asJSON bool
	cmd := &cobra.Command{
		Use:   "getstripe [-v] [--json] PATH...",
		Short: "Show the layout of files or the default layout of directories",
		Long: `Show where a file's data lives: its components, stripe count and size, and the
OST and object id of every stripe, in Lustre's format, or as JSON with --json.
On a directory it shows the default layout new files inherit.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []stripeJSON
			for _, p := range args {
				var resp proto.GetLayoutResp
				if err := getJSONXattr(p, xattrLayout, &resp); err != nil {
					return fail("getstripe", p, err)
				}
				if asJSON {
					docs = append(docs, toStripeJSON(p, &resp))
					continue
				}
				printLustreStripe(os.Stdout, p, &resp, verbose)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if len(docs) == 1 {
					return enc.Encode(docs[0])
				}
				return enc.Encode(docs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print magic and fid")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// stripeJSON is getstripe --json's document (CLI.md).
type stripeJSON struct {
	Path       string          `json:"path"`
	IsDir      bool            `json:"is_dir,omitempty"`
	LayoutGen  uint32          `json:"layout_gen"`
	Components []componentJSON `json:"components"`
}

type componentJSON struct {
	Start       int64        `json:"start"`
	End         int64        `json:"end"`
	StripeCount int64        `json:"stripe_count"`
	StripeSize  int64        `json:"stripe_size"`
	StripeIndex int64        `json:"stripe_offset"`
	Pattern     string       `json:"pattern"`
	Pool        string       `json:"pool"`
	Objects     []objectJSON `json:"objects"`
}

type objectJSON struct {
	OST      uint32 `json:"ost"`
	ObjectID string `json:"object_id"`
}

func jsonEnd(end int64) int64 {
	if end == layout.EOF {
		return -1
	}
	return end
}

func toStripeJSON(path string, r *proto.GetLayoutResp) stripeJSON {
	doc := stripeJSON{Path: path, IsDir: r.IsDir, Components: []componentJSON{}}
	if r.IsDir {
		start := int64(0)
		for _, c := range r.Spec.Components {
			end := c.End
			if end == 0 {
				end = layout.EOF
			}
			doc.Components = append(doc.Components, componentJSON{
				Start: start, End: jsonEnd(end), StripeCount: int64(c.StripeCount),
				StripeSize: c.StripeSize, StripeIndex: int64(c.StripeOffset),
				Pattern: string(layout.PatternRAID0), Pool: c.Pool, Objects: []objectJSON{},
			})
			start = end
		}
		return doc
	}
	doc.LayoutGen = r.Layout.Gen
	for _, c := range r.Layout.Components {
		cj := componentJSON{
			Start: c.Start, End: jsonEnd(c.End), StripeCount: int64(c.StripeCount),
			StripeSize: c.StripeSize, StripeIndex: -1, Pattern: string(c.Pattern), Pool: c.Pool,
			Objects: []objectJSON{},
		}
		if len(c.Objects) > 0 {
			cj.StripeIndex = int64(c.Objects[0].OST)
		}
		for _, o := range c.Objects {
			cj.Objects = append(cj.Objects, objectJSON{OST: o.OST, ObjectID: o.ID.String()})
		}
		doc.Components = append(doc.Components, cj)
	}
	return doc
}

// printLustreStripe prints lfs getstripe's text format.
func printLustreStripe(w io.Writer, path string, r *proto.GetLayoutResp, verbose bool) {
	fmt.Fprintln(w, path)
	if r.IsDir {
		if r.Spec.IsZero() {
			fmt.Fprintln(w, "stripe_count:  0 stripe_size:   0 pattern:       raid0 stripe_offset: -1 (inherits the filesystem default)")
			return
		}
		for _, c := range r.Spec.Components {
			if len(r.Spec.Components) > 1 {
				fmt.Fprintf(w, "  lcme_extent.e_end:   %d\n", jsonEnd(c.End))
			}
			fmt.Fprintf(w, "stripe_count:  %d stripe_size:   %d pattern:       raid0 stripe_offset: %d", c.StripeCount, c.StripeSize, c.StripeOffset)
			if c.Pool != "" {
				fmt.Fprintf(w, " pool:          %s", c.Pool)
			}
			fmt.Fprintln(w)
		}
		return
	}
	comps := r.Layout.Components
	indent := ""
	if len(comps) > 1 {
		fmt.Fprintf(w, "  lcm_layout_gen:    %d\n  lcm_mirror_count:  1\n  lcm_entry_count:   %d\n", r.Layout.Gen, len(comps))
		indent = "      "
	}
	for i, c := range comps {
		if len(comps) > 1 {
			fmt.Fprintf(w, "    lcme_id:             %d\n    lcme_mirror_id:      0\n    lcme_flags:          init\n", i+1)
			fmt.Fprintf(w, "    lcme_extent.e_start: %d\n    lcme_extent.e_end:   %s\n", c.Start, extentEnd(c.End))
		}
		offset := int64(-1)
		if len(c.Objects) > 0 {
			offset = int64(c.Objects[0].OST)
		}
		if verbose && len(c.Objects) > 0 {
			fmt.Fprintf(w, "%slmm_magic:         0x0BD10BD0\n", indent)
			fmt.Fprintf(w, "%slmm_fid:           [0x%x:0x0:0x0]\n", indent, c.Objects[0].ID.Ino)
		}
		fmt.Fprintf(w, "%slmm_stripe_count:  %d\n", indent, c.StripeCount)
		fmt.Fprintf(w, "%slmm_stripe_size:   %d\n", indent, c.StripeSize)
		pattern := string(c.Pattern)
		if r.Layout.Released {
			pattern = "released" // as lfs prints a released file's
		}
		fmt.Fprintf(w, "%slmm_pattern:       %s\n", indent, pattern)
		fmt.Fprintf(w, "%slmm_layout_gen:    %d\n", indent, r.Layout.Gen)
		fmt.Fprintf(w, "%slmm_stripe_offset: %d\n", indent, offset)
		if c.Pool != "" {
			fmt.Fprintf(w, "%slmm_pool:          %s\n", indent, c.Pool)
		}
		fmt.Fprintf(w, "%s\tobdidx\t\t objid\t\t objid\t\t group\n", indent)
		for _, o := range c.Objects {
			fmt.Fprintf(w, "%s\t%6d\t%14d\t%#14x\t%#14x\n", indent, o.OST, o.ID.Seq, o.ID.Seq, o.ID.Ino)
		}
		fmt.Fprintln(w)
	}
}

func extentEnd(end int64) string {
	if end == layout.EOF {
		return "EOF"
	}
	return strconv.FormatInt(end, 10)
}
