package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/proto"
)

const findHelp = `Search a directory tree at the metadata servers, as lfs find does.

  strata find PATH [--type f|d|l|b|c|p|s] [--name GLOB] [--user U] [--maxdepth N]
                   [--size [+-]N[bkMGTPE]] [--mtime [+-]N[smhdwy]]
                   [--stripe-count [+-]N] [--stripe-size [+-]N[kMG]]
                   [--ost IDX[,IDX...]] [--pool POOL] [--layout raid0|released]
                   [--print0] [--json]

Options also take Lustre's single-dash spellings (-type, -name, -mtime, -size,
-maxdepth, -print0, -c, -S, -O, -L ...). Numbers mean what they mean to lfs
find: +N more than N, -N less than N, N exactly N, after rounding a size up to
its unit (bytes without a suffix; b is 512 bytes, k, M, G, T, P, E powers of
1024) and an age down to its unit (days without a suffix). Layout tests match
regular files by their layout (any component) and directories by their
default layout.

The MDSes walk the tree from their records, a page of entries per request,
checking the caller's permission to read and search each directory as a walk
would; paths print as the walk finds them (PATH/sub/name), one per line, or
NUL-terminated with --print0; directories that could not be searched are
reported on stderr (exit status 1). --json prints {"path":PATH, "entries":
[{"path","type","size","uid","gid","mtime"}], "requests":N} (an array of those
for several PATHs), requests being the MDS requests the search took.`

func newFindCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "find PATH... [OPTIONS]",
		Short:              "Search a directory tree at the metadata servers (lfs find)",
		Long:               findHelp,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fa, err := parseFind(args, time.Now())
			if errors.Is(err, errHelp) {
				fmt.Println(findHelp)
				return nil
			}
			if err != nil {
				return fail("find", "", err)
			}
			return writeFind(os.Stdout, fa)
		},
	}
}

// findArgs is a parsed strata find command line.
type findArgs struct {
	paths  []string
	filter proto.FindFilter
	print0 bool
	asJSON bool
}

// findOpts maps every spelling of a find option to its canonical name.
var findOpts = map[string]string{
	"type": "type", "t": "type", "name": "name", "n": "name", "user": "user", "u": "user",
	"maxdepth": "maxdepth", "D": "maxdepth", "size": "size", "s": "size", "mtime": "mtime", "M": "mtime",
	"stripe-count": "stripe-count", "stripe_count": "stripe-count", "c": "stripe-count",
	"stripe-size": "stripe-size", "stripe_size": "stripe-size", "S": "stripe-size",
	"ost": "ost", "obd": "ost", "O": "ost", "pool": "pool", "layout": "layout", "L": "layout",
	"print0": "print0", "0": "print0", "print": "print", "P": "print", "json": "json", "help": "help", "h": "help",
}

// parseFind reads strata find's arguments in any order.
func parseFind(args []string, now time.Time) (*findArgs, error) {
	fa := &findArgs{filter: proto.FindFilter{MaxDepth: -1, Now: now.Unix()}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			fa.paths = append(fa.paths, a)
			continue
		}
		key, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		opt, ok := findOpts[key]
		if !ok {
			return nil, fmt.Errorf("unknown option %s (see strata find --help)", a)
		}
		switch opt {
		case "help":
			return nil, errHelp
		case "print0":
			fa.print0 = true
			continue
		case "print":
			continue
		case "json":
			fa.asJSON = true
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option %s needs a value", a)
			}
			i++
			val = args[i]
		}
		if err := fa.set(opt, val); err != nil {
			return nil, fmt.Errorf("%s %s: %w", a, val, err)
		}
	}
	if len(fa.paths) == 0 {
		return nil, errors.New("no PATH given")
	}
	return fa, nil
}

// set applies one option.
func (fa *findArgs) set(opt, val string) error {
	f := &fa.filter
	var err error
	switch opt {
	case "type":
		types := map[string]uint32{"f": proto.ModeRegular, "d": proto.ModeDir, "l": proto.ModeSymlink,
			"b": proto.ModeBlock, "c": proto.ModeChar, "p": proto.ModeFIFO, "s": proto.ModeSocket}
		t, ok := types[val]
		if !ok {
			return errors.New("want one of f d l b c p s")
		}
		f.Type = t
	case "name":
		f.Name = val
	case "user":
		f.HasUid = true
		f.Uid, err = lookupUid(val)
	case "maxdepth":
		n, perr := strconv.ParseInt(val, 10, 32)
		if perr != nil || n < 0 {
			return errors.New("want a number >= 0")
		}
		f.MaxDepth = int32(n)
	case "size":
		f.Size, err = parseFindSize(val)
	case "stripe-size":
		f.StripeSize, err = parseFindSize(val)
	case "stripe-count":
		f.StripeCount, err = parseFindNumber(val, 1)
	case "mtime":
		f.Mtime, err = parseFindAge(val)
	case "ost":
		for _, part := range strings.Split(val, ",") {
			osts, perr := parseOSTNames(part, "")
			if perr != nil {
				return perr
			}
			f.OSTs = append(f.OSTs, osts...)
		}
	case "pool":
		_, f.Pool = splitPoolName(val)
		f.HasPool = true
	case "layout":
		if val != "raid0" && val != "released" {
			return errors.New("want raid0 or released")
		}
		f.Layout = val
	}
	return err
}

// lookupUid reads a user name or number.
func lookupUid(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// cutSign splits lfs find's sign off a number: + greater, - less.
func cutSign(s string) (int8, string) {
	switch {
	case strings.HasPrefix(s, "+"):
		return 1, s[1:]
	case strings.HasPrefix(s, "-"):
		return -1, s[1:]
	}
	return 0, s
}

// parseFindNumber reads [+-]N counted in unit.
func parseFindNumber(s string, unit uint64) (proto.FindCmp, error) {
	sign, digits := cutSign(s)
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return proto.FindCmp{}, errors.New("want [+-]N")
	}
	return proto.FindCmp{Set: true, Sign: sign, N: n, Unit: unit}, nil
}

// parseFindSize reads [+-]N[bkMGTPE]: bytes, 512-byte blocks or powers of
// 1024, the unit the value is rounded up to.
func parseFindSize(s string) (proto.FindCmp, error) {
	sign, digits := cutSign(s)
	unit := uint64(1)
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		suffix := strings.ToLower(digits[i:])
		digits = digits[:i]
		idx := strings.Index("kmgtpe", suffix)
		switch {
		case suffix == "b":
			unit = 512
		case len(suffix) == 1 && idx >= 0:
			unit = 1 << (10 * (idx + 1))
		default:
			return proto.FindCmp{}, fmt.Errorf("unknown size suffix %q", suffix)
		}
	}
	c, err := parseFindNumber(digits, unit)
	c.Sign = sign
	return c, err
}

// parseFindAge reads [+-]N[smhdwy], days without a suffix, the unit the
// age is rounded down to.
func parseFindAge(s string) (proto.FindCmp, error) {
	sign, digits := cutSign(s)
	unit := uint64(24 * 3600)
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		units := map[string]uint64{"s": 1, "m": 60, "h": 3600, "d": 24 * 3600, "w": 7 * 24 * 3600, "y": 365 * 24 * 3600}
		u, ok := units[digits[i:]]
		if !ok {
			return proto.FindCmp{}, fmt.Errorf("unknown time unit %q", digits[i:])
		}
		unit, digits = u, digits[:i]
	}
	c, err := parseFindNumber(digits, unit)
	c.Sign = sign
	return c, err
}

// findEntryJSON is one match in find --json.
type findEntryJSON struct {
	Path  string `json:"path"`
	Type  string `json:"type"`
	Size  uint64 `json:"size"`
	Uid   uint32 `json:"uid"`
	Gid   uint32 `json:"gid"`
	Mtime int64  `json:"mtime"`
}

// typeLetter is find's letter for the type bits of mode.
func typeLetter(mode uint32) string {
	switch mode & proto.ModeType {
	case proto.ModeDir:
		return "d"
	case proto.ModeSymlink:
		return "l"
	case proto.ModeBlock:
		return "b"
	case proto.ModeChar:
		return "c"
	case proto.ModeFIFO:
		return "p"
	case proto.ModeSocket:
		return "s"
	}
	return "f"
}

// findPage mirrors the mount's page of results (client/fuse.FindPage).
type findPage struct {
	Entries []struct {
		Path  string `json:"p"`
		Mode  uint32 `json:"m"`
		Uid   uint32 `json:"u"`
		Gid   uint32 `json:"g"`
		Size  uint64 `json:"s"`
		Mtime int64  `json:"t"`
	} `json:"entries"`
	Errors   []proto.FindError `json:"errors"`
	Done     bool              `json:"done"`
	Requests int               `json:"requests"`
}

// runFind runs one search from path and writes its results to w; errors
// for directories it could not search go to stderr. It returns the MDS
// requests the search took and whether any directory was denied.
func runFind(w *bufio.Writer, path string, fa *findArgs, emit func(rel string, e findEntryJSON) error) (int, bool, error) {
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return 0, false, err
	}
	id := hex.EncodeToString(idb[:])
	q := map[string]any{"filter": fa.filter, "name": filepath.Base(filepath.Clean(path))}
	if err := setJSONXattr(path, xattrFindPrefix+id, q); err != nil {
		return 0, false, err
	}
	defer unix.Removexattr(path, xattrFindPrefix+id)
	denied := false
	for seq := 0; ; seq++ {
		var page findPage
		if err := getJSONXattr(path, fmt.Sprintf("%s%s.%d", xattrFindPrefix, id, seq), &page); err != nil {
			return 0, denied, err
		}
		for _, e := range page.Entries {
			if err := emit(e.Path, findEntryJSON{Type: typeLetter(e.Mode), Size: e.Size, Uid: e.Uid, Gid: e.Gid,
				Mtime: e.Mtime / int64(time.Second)}); err != nil {
				return 0, denied, err
			}
		}
		for _, e := range page.Errors {
			denied = true
			w.Flush()
			fmt.Fprintf(os.Stderr, "strata: find: %s: %v\n", joinFindPath(path, e.Path), syscall.Errno(e.Errno))
		}
		if page.Done {
			return page.Requests, denied, nil
		}
	}
}

// joinFindPath prints a result's path as a walk from root would.
func joinFindPath(root, rel string) string {
	if rel == "" {
		return root
	}
	if strings.HasSuffix(root, "/") {
		return root + rel
	}
	return root + "/" + rel
}

// writeFind runs the searches of a command line and prints their results.
func writeFind(out io.Writer, fa *findArgs) error {
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	anyDenied := false
	many := len(fa.paths) > 1
	if fa.asJSON && many {
		fmt.Fprint(w, "[")
	}
	for i, p := range fa.paths {
		if _, err := os.Lstat(p); err != nil {
			return fail("find", p, err)
		}
		first := true
		if fa.asJSON {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			b, _ := json.Marshal(p)
			fmt.Fprintf(w, `{"path":%s,"entries":[`, b)
		}
		emit := func(rel string, e findEntryJSON) error {
			full := joinFindPath(p, rel)
			switch {
			case fa.asJSON:
				e.Path = full
				b, err := json.Marshal(&e)
				if err != nil {
					return err
				}
				if !first {
					w.WriteByte(',')
				}
				first = false
				_, err = w.Write(b)
				return err
			case fa.print0:
				w.WriteString(full)
				return w.WriteByte(0)
			}
			w.WriteString(full)
			return w.WriteByte('\n')
		}
		requests, denied, err := runFind(w, p, fa, emit)
		if err != nil {
			return fail("find", p, err)
		}
		anyDenied = anyDenied || denied
		if fa.asJSON {
			fmt.Fprintf(w, `],"requests":%d}`, requests)
		}
	}
	if fa.asJSON && many {
		fmt.Fprint(w, "]")
	}
	if fa.asJSON {
		fmt.Fprintln(w)
	}
	if anyDenied {
		w.Flush()
		return &exitStatus{code: 1}
	}
	return nil
}
