package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stratafs/strata/rdma"
	"github.com/stratafs/strata/rpc"
)

// pingVerbs is the RDMA implementation rdma ping uses; nil means the
// binary's own (rdma.Native). Tests point it at a fake fabric.
var pingVerbs rdma.Verbs

// pingResult is rdma ping --json's document.
type pingResult struct {
	Addr      string  `json:"addr"`
	Transport string  `json:"transport"`
	Device    string  `json:"device,omitempty"`
	Port      int     `json:"port,omitempty"`
	GID       string  `json:"gid,omitempty"`
	ConnectMS float64 `json:"connect_ms"`
	Count     int     `json:"count"`
	MinUS     float64 `json:"rtt_min_us"`
	AvgUS     float64 `json:"rtt_avg_us"`
	MaxUS     float64 `json:"rtt_max_us"`
}

func newRDMACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rdma",
		Short: "RDMA devices and the transport to a server",
	}
	cmd.AddCommand(newRDMAPingCmd(), newRDMADevicesCmd())
	return cmd
}

func newRDMAPingCmd() *cobra.Command {
	var count int
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ping [--count N] [--transport auto|tcp|rdma] [--json] ADDR",
		Short: "Show the transport this node gets to a server, and its round-trip time",
		Long: `Connect to the Strata server (MDS or OSS) at ADDR as a client would, with the
cluster secret, and ping it COUNT times. Prints the transport the connection
uses (rdma where both nodes have an RDMA device and reach each other over it,
tcp otherwise) and the round-trip times, not counting the first ping, which
sets up the connection.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := args[0]
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("rdma", addr, err)
			}
			secret, err := loadSecret(v)
			if err != nil {
				return fail("rdma", addr, err)
			}
			if count < 1 {
				return fail("rdma", addr, fmt.Errorf("--count %d: want at least 1", count))
			}
			c := rpc.NewClient(rpc.ClientConfig{
				Secret:       secret,
				Transport:    v.GetString("transport"),
				Verbs:        pingVerbs,
				ConnsPerAddr: 1,
				DialTimeout:  timeout,
				Logger:       newLogger("error"),
			})
			defer c.Close()
			res, err := ping(cmd.Context(), c, addr, count, timeout)
			if err != nil {
				return fail("rdma", addr, rpcReason(addr, err))
			}
			return printPing(cmd.OutOrStdout(), res, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&count, "count", "c", 10, "pings to time")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long each ping may take")
	f.String("transport", "", "auto, tcp or rdma (default: STRATA_TRANSPORT, else auto)")
	f.String("config", "", "YAML config file")
	addSecretFlag(cmd)
	return cmd
}

// ping connects to addr, then times count pings.
func ping(ctx context.Context, c *rpc.Client, addr string, count int, timeout time.Duration) (*pingResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	once := func() (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		start := time.Now()
		err := c.Ping(cctx, addr)
		return time.Since(start), err
	}
	connect, err := once()
	if err != nil {
		return nil, err
	}
	res := &pingResult{Addr: addr, Transport: c.Transport(addr), ConnectMS: ms(connect), Count: count, MinUS: math.Inf(1)}
	if info, ok := c.RDMAInfo(addr); ok {
		res.Device, res.Port, res.GID = info.Device, info.Port, info.GID
	}
	var total time.Duration
	for range count {
		d, err := once()
		if err != nil {
			return nil, err
		}
		total += d
		res.MinUS = math.Min(res.MinUS, us(d))
		res.MaxUS = math.Max(res.MaxUS, us(d))
	}
	res.AvgUS = us(total / time.Duration(count))
	return res, nil
}

// us and ms express a duration in micro- and milliseconds, to 0.1.
func us(d time.Duration) float64 { return math.Round(float64(d)/100) / 10 }
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

// printPing writes a ping's outcome as one line, or as JSON.
func printPing(w io.Writer, r *pingResult, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	via := r.Transport
	if r.Device != "" {
		via = fmt.Sprintf("%s (%s port %d, GID %s)", r.Transport, r.Device, r.Port, r.GID)
	}
	_, err := fmt.Fprintf(w, "%s: transport %s, connected in %.1f ms, %d pings: rtt min/avg/max %.1f/%.1f/%.1f µs\n",
		r.Addr, via, r.ConnectMS, r.Count, r.MinUS, r.AvgUS, r.MaxUS)
	return err
}

// rpcReason strips the "rpc: ADDR: " an rpc error starts with, which the
// CLI's own "strata: rdma: ADDR: " already says.
func rpcReason(addr string, err error) error {
	var rerr *rpc.Error
	if errors.As(err, &rerr) {
		if msg, ok := strings.CutPrefix(rerr.Msg, "rpc: "+addr+": "); ok {
			return errors.New(strings.TrimPrefix(msg, "rpc: "))
		}
	}
	return err
}

func newRDMADevicesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "devices [--json]",
		Short: "List this node's RDMA devices, their ports and link state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			devs, err := rdma.Discover()
			if err != nil {
				return fail("rdma", "", err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if devs == nil {
					devs = []rdma.Device{}
				}
				return json.NewEncoder(w).Encode(map[string]any{"devices": devs, "verbs": rdma.NativeBuilt()})
			}
			if len(devs) == 0 {
				_, err := fmt.Fprintln(w, "no RDMA devices")
				return err
			}
			for _, d := range devs {
				for _, p := range d.Ports {
					if _, err := fmt.Fprintf(w, "%s port %d: %s (%s), %s, %s %s\n", d.Name, p.Num, p.State, p.PhysState,
						p.LinkLayer, p.Rate, strings.Join(p.Netdevs, ",")); err != nil {
						return err
					}
				}
			}
			if !rdma.NativeBuilt() {
				_, err := fmt.Fprintln(w, "note: this strata was built without the rdma tag and uses TCP only")
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
