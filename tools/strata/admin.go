package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// adminCluster reaches every MDS of a cluster for the admin verbs: the
// ones the MDT table names and the configured ones.
type adminCluster struct {
	rc    *rpc.Client
	addrs []string
}

// openAdmin resolves the cluster as fsck does (MNT, --config, --mds).
func openAdmin(cmd *cobra.Command, args []string) (*adminCluster, error) {
	addrs, secret, err := fsckCluster(cmd, args)
	if err != nil {
		return nil, err
	}
	return &adminCluster{rc: rpc.NewClient(rpc.ClientConfig{Secret: secret}), addrs: addrs}, nil
}

func (a *adminCluster) close() { a.rc.Close() }

// table reads the MDT table from the first MDS that answers, and adds the
// owners it names to the addresses to reach.
func (a *adminCluster) table(ctx context.Context) ([]proto.MDT, error) {
	var last error
	for _, addr := range a.addrs {
		var resp proto.MDTTableResp
		if err := a.rc.Call(ctx, addr, proto.OpMDTTable, &proto.MDTTableReq{}, &resp); err != nil {
			last = err
			continue
		}
		for _, m := range resp.MDTs {
			if m.Addr != "" && m.State != "down" && !slices.Contains(a.addrs, m.Addr) {
				a.addrs = append(a.addrs, m.Addr)
			}
		}
		return resp.MDTs, nil
	}
	return nil, fmt.Errorf("no MDS answered: %w", last)
}

// addAdminFlags registers the flags openAdmin reads.
func addAdminFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("config", "", "client config file (DIR/client.yaml of strata up)")
	f.StringSlice("mds", nil, "MDS address (instead of --config)")
	f.Bool("json", false, "print JSON")
	addSecretFlag(cmd)
}

func newEvictCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evict [--config FILE | --mds ADDR --secret-file F] [--json] CLIENT",
		Short: "End a client's session on every MDS: its locks and opens are dropped",
		Long: `Evict a client: every MDS ends its session (releasing its locks and closing
its open files) and the session is deleted from the store, so the client
learns at its next request (its open files then fail with EIO) and starts a
new session. CLIENT is a client id as the MDS logs show it (host:pid:random,
or host:pid for all of that process's sessions) or a session id (0x...).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openAdmin(cmd, nil)
			if err != nil {
				return fail("evict", args[0], err)
			}
			defer a.close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req := proto.EvictReq{ClientID: args[0]}
			if id, err := strconv.ParseUint(args[0], 0, 64); err == nil && len(args[0]) > 2 && args[0][:2] == "0x" {
				req = proto.EvictReq{Session: id}
			}
			if _, err := a.table(ctx); err != nil {
				return fail("evict", args[0], err)
			}
			evicted := 0
			for _, addr := range a.addrs {
				var resp proto.EvictResp
				if err := a.rc.Call(ctx, addr, proto.OpEvict, &req, &resp); err != nil {
					fmt.Fprintf(os.Stderr, "strata: evict: %s: %v\n", addr, err)
					continue
				}
				evicted = max(evicted, resp.Evicted)
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"client": args[0], "evicted": evicted})
			}
			if evicted == 0 {
				return fail("evict", args[0], fmt.Errorf("no such client session"))
			}
			fmt.Printf("evicted %d session(s) of %s\n", evicted, args[0])
			return nil
		},
	}
	addAdminFlags(cmd)
	return cmd
}

func newMDTAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mdt handoff IDX | mdt abort-recovery [--config FILE | --mds ADDR --secret-file F]",
		Short: "Move an MDT to another MDS, or end a recovery window at once",
		Long: `handoff IDX: the MDS serving MDT IDX gives it up (a planned move, for an
upgrade of that MDS); another MDS, a standby if there is one, takes it over
within a third of the MDT lease, and clients follow it without an error.

abort-recovery: every MDS closes its recovery window now; the clients that
have not come back to replay their opens and locks are evicted.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openAdmin(cmd, nil)
			if err != nil {
				return fail("mdt", "", err)
			}
			defer a.close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			table, err := a.table(ctx)
			if err != nil {
				return fail("mdt", "", err)
			}
			switch {
			case args[0] == "handoff" && len(args) == 2:
				idx, err := strconv.ParseUint(args[1], 0, 32)
				if err != nil {
					return fail("mdt", args[1], fmt.Errorf("MDT index: %w", err))
				}
				for _, m := range table {
					if m.Index == uint32(idx) && m.Addr != "" {
						if err := a.rc.Call(ctx, m.Addr, proto.OpHandOff, &proto.HandOffReq{MDT: m.Index}, nil); err != nil {
							return fail("mdt", args[1], err)
						}
						fmt.Printf("MDT%04x handed off by %s (epoch %d)\n", m.Index, m.Addr, m.Epoch)
						return nil
					}
				}
				return fail("mdt", args[1], fmt.Errorf("no MDT %d with an owner", idx))
			case args[0] == "abort-recovery" && len(args) == 1:
				for _, addr := range a.addrs {
					if err := a.rc.Call(ctx, addr, proto.OpAbortRecovery, &proto.AbortRecoveryReq{}, nil); err != nil {
						fmt.Fprintf(os.Stderr, "strata: mdt: %s: %v\n", addr, err)
					}
				}
				return nil
			}
			return fail("mdt", "", fmt.Errorf("want: mdt handoff IDX, or mdt abort-recovery"))
		},
	}
	addAdminFlags(cmd)
	return cmd
}
