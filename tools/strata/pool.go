package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

const poolHelp = `Manage OST pools (Lustre's lctl pool_new, pool_add, pool_remove, pool_destroy,
pool_list). A layout naming a pool (setstripe -p POOL) gets its objects only
from the pool's active OSTs.

  strata pool create [FSNAME.]POOL
  strata pool add [FSNAME.]POOL OST...
  strata pool remove [FSNAME.]POOL OST...
  strata pool destroy [FSNAME.]POOL          (the pool must be empty)
  strata pool list [--json] [FSNAME[.POOL] | PATH]

OSTs are named by index (3, 0-3), by name (OST0003, FSNAME-OST0003_UUID) or
Lustre's range form (OST[0-3], FSNAME-OST[0-6/2]). Changing pools talks to the
MDS with the cluster secret, as fsck does (--config FILE, --mds ADDR with
--secret-file, --mount MNT, ~/.strata/client.yaml or the only Strata mount);
pool list reads through a mount when given a PATH or when no cluster is
named.`

func newPoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool create|add|remove|destroy|list ...",
		Short: "Create, change, destroy and list OST pools",
		Long:  poolHelp,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			op := args[0]
			switch op {
			case proto.PoolList:
				return poolList(cmd, args[1:])
			case proto.PoolCreate, proto.PoolDestroy:
				if len(args) != 2 {
					return fail("pool", "", fmt.Errorf("want: pool %s [FSNAME.]POOL", op))
				}
			case proto.PoolAdd, proto.PoolRemove:
				if len(args) < 3 {
					return fail("pool", "", fmt.Errorf("want: pool %s [FSNAME.]POOL OST [OST ...]", op))
				}
			default:
				return fail("pool", "", fmt.Errorf("unknown operation %q: want create, add, remove, destroy or list", op))
			}
			fsname, name := splitPoolName(args[1])
			req := proto.PoolReq{Op: op, Name: name}
			for _, a := range args[2:] {
				osts, err := parseOSTNames(a, fsname)
				if err != nil {
					return fail("pool", a, err)
				}
				req.OSTs = append(req.OSTs, osts...)
			}
			resp, err := callPool(cmd, &req)
			if err != nil {
				return fail("pool", args[1], err)
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"pools": resp.Pools})
			}
			return nil
		},
	}
	addAdminFlags(cmd)
	cmd.Flags().String("mount", "", "the cluster of the Strata mount MNT (the client's MDS addresses and secret)")
	return cmd
}

// callPool sends a pool request to the cluster's MDS.
func callPool(cmd *cobra.Command, req *proto.PoolReq) (*proto.PoolResp, error) {
	var mnt []string
	if m, _ := cmd.Flags().GetString("mount"); m != "" {
		mnt = []string{m}
	}
	a, err := openAdmin(cmd, mnt)
	if err != nil {
		return nil, err
	}
	defer a.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.table(ctx); err != nil {
		return nil, err
	}
	var resp proto.PoolResp
	var last error
	for _, addr := range a.addrs {
		if last = a.rc.Call(ctx, addr, proto.OpPool, req, &resp); last == nil {
			return &resp, nil
		}
		if re := (*rpc.Error)(nil); errors.As(last, &re) && re.Unwrap() == nil {
			return nil, last // the MDS answered
		}
	}
	return nil, last
}

// poolList prints the pools: through a mount (any user) unless a cluster
// is named with --config or --mds.
func poolList(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	asJSON, _ := f.GetBool("json")
	target := ""
	if len(args) > 0 {
		target = args[0]
	}
	var fsname string
	var pools []proto.Pool
	_, pathGiven := statOK(target)
	mnt, _ := f.GetString("mount")
	if mnt != "" && target == "" {
		target, pathGiven = mnt, true
	}
	if f.Changed("config") || f.Changed("mds") || (target != "" && !pathGiven) {
		_, name := splitPoolName(target)
		if !strings.Contains(target, ".") {
			name = "" // FSNAME alone
		}
		resp, err := callPool(cmd, &proto.PoolReq{Op: proto.PoolList, Name: name})
		if err != nil {
			return fail("pool", target, err)
		}
		fsname, pools = strings.SplitN(target, ".", 2)[0], resp.Pools
	} else {
		var paths []string
		if pathGiven {
			paths = []string{target}
		}
		mounts, err := mountTargets("pool", paths)
		if err != nil {
			return err
		}
		fsname, pools = mounts[0].targets.FSName, mounts[0].targets.Pools
	}
	if fsname == "" {
		fsname = "strata"
	}
	if pools == nil {
		pools = []proto.Pool{}
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"fsname": fsname, "pools": pools})
	}
	if len(pools) == 1 && strings.Contains(target, ".") && !pathGiven {
		fmt.Printf("Pool: %s.%s\n", fsname, pools[0].Name)
		for _, o := range pools[0].OSTs {
			fmt.Printf("%s_UUID\n", targetName(fsname, "ost", o))
		}
		return nil
	}
	fmt.Printf("Pools from %s:\n", fsname)
	for _, p := range pools {
		fmt.Printf("%s.%s\n", fsname, p.Name)
	}
	return nil
}

// splitPoolName splits Lustre's FSNAME.POOL; a bare POOL has no fsname.
func splitPoolName(s string) (fsname, pool string) {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

// ostRangeForm matches Lustre's OST[0-3], FS-OST[0-6/2] and OST0003(_UUID).
var ostRangeForm = regexp.MustCompile(`^(?:([A-Za-z0-9_-]+)-)?OST(?:\[([0-9a-fA-F,/-]+)\]|([0-9a-fA-F]+))(?:_UUID)?$`)

// parseOSTNames reads one OST argument of pool add or remove: an index, a
// range of indices, an OST name or Lustre's bracketed range.
func parseOSTNames(s, fsname string) ([]uint32, error) {
	m := ostRangeForm.FindStringSubmatch(s)
	if m == nil {
		return parseOSTList(s)
	}
	if fsname != "" && m[1] != "" && m[1] != fsname {
		return nil, fmt.Errorf("OST %s is not of filesystem %s", s, fsname)
	}
	if m[3] != "" {
		v, err := strconv.ParseUint(m[3], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid OST name %q", s)
		}
		return []uint32{uint32(v)}, nil
	}
	var out []uint32
	for _, part := range strings.Split(m[2], ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := uint64(1)
		if hasStep {
			var err error
			if step, err = strconv.ParseUint(stepStr, 10, 32); err != nil || step == 0 {
				return nil, fmt.Errorf("invalid OST range step in %q", s)
			}
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := strconv.ParseUint(lo, 16, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid OST range %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 16, 32); err != nil || b < a {
				return nil, fmt.Errorf("invalid OST range %q", s)
			}
		}
		for i := a; i <= b; i += step {
			out = append(out, uint32(i))
		}
	}
	return out, nil
}
