package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/hsm"
	"github.com/stratafs/strata/layout"
)

func newCopytoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "copytool --mds ADDR[,ADDR] --archive ID --backend posix:DIR|s3://BUCKET/PREFIX [--secret-file F | --config FILE]",
		Short: "Run an HSM agent: archive, restore and remove file data in an archive",
		Long: `Run an HSM copytool (Lustre's lhsmtool_posix): it registers with the
coordinator (the MDS serving MDT0) for the archive ids given, takes the
actions queued for them and moves file data between the OSTs and the backend
with parallel streams, reporting progress. Every archive copy carries
CRC-32C checksums per chunk, verified at restore.

Backends: posix:DIR (a directory; the default if a bare path is given) and
s3://BUCKET/PREFIX (any S3-compatible store; endpoint, region and
credentials from --s3-endpoint and --s3-region, the config file, or
STRATA_S3_ENDPOINT / AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY). The cluster is named as for a mount: --config FILE
(DIR/client.yaml of strata up) or --mds with --secret-file.

Actions a copytool had in flight when it stopped are handed back to the
queue when it registers again (same --name, by default host and backend), or
after the MDS's HSM timeout to any other copytool.

With --policy-every D it also runs the policies of the config file's
hsm-policy section (archive-older-than, archive-larger-than in bytes,
archive-id, release-above, release-to; see strata hsm policy) every D.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("copytool", "", err)
			}
			ctx, stop := signalContext()
			defer stop()
			c, err := clusterClient(ctx, v)
			if err != nil {
				return fail("copytool", "", err)
			}
			defer c.Close()
			backend, err := openBackend(v)
			if err != nil {
				return fail("copytool", "", err)
			}
			var archives []uint32
			for _, s := range splitList(v.GetStringSlice("archive")) {
				id, err := strconv.ParseUint(s, 0, 32)
				if err != nil || id == 0 {
					return fail("copytool", "", fmt.Errorf("archive id %q: want a number from 1", s))
				}
				archives = append(archives, uint32(id))
			}
			if len(archives) == 0 {
				archives = []uint32{1}
			}
			chunk, err := layout.ParseSize(v.GetString("chunk-size"))
			if err != nil {
				return fail("copytool", "", fmt.Errorf("--chunk-size: %w", err))
			}
			ct, err := hsm.NewCopytool(hsm.CopytoolConfig{Client: c, Backend: backend, Archives: archives,
				Name: v.GetString("name"), Streams: v.GetInt("streams"), Actions: v.GetInt("actions"), ChunkSize: chunk,
				Logger: newLogger(v.GetString("log-level"))})
			if err != nil {
				return fail("copytool", "", err)
			}
			if every := v.GetDuration("policy-every"); every > 0 {
				var p hsm.Policy
				if err := v.UnmarshalKey("hsm-policy", &p); err != nil {
					return fail("copytool", "", fmt.Errorf("hsm-policy in the config: %w", err))
				}
				go p.RunEvery(ctx, c, every, newLogger(v.GetString("log-level")))
			}
			if err := ct.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return fail("copytool", "", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "client config file (DIR/client.yaml of strata up)")
	f.StringSlice("mds", nil, "MDS addresses")
	f.String("fsname", "", "filesystem name (any if empty)")
	f.StringSlice("archive", nil, "archive id(s) served (default 1)")
	f.String("backend", "", "posix:DIR or s3://BUCKET/PREFIX")
	f.String("name", "", "agent name, stable across restarts (default host and backend)")
	f.Int("streams", hsm.DefaultStreams, "chunks of one file moved at once")
	f.Int("actions", hsm.DefaultActions, "files handled at once")
	f.String("chunk-size", "32M", "unit of transfer and checksum")
	f.String("log-level", "info", "log level (debug, info, warn, error)")
	f.Duration("policy-every", 0, "run the hsm-policy rules of the config this often (0: never)")
	addS3Flags(cmd)
	addSecretFlag(cmd)
	return cmd
}

// addS3Flags registers the S3 settings of a backend.
func addS3Flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("s3-endpoint", "", "S3 endpoint URL (or STRATA_S3_ENDPOINT, AWS_ENDPOINT_URL)")
	f.String("s3-region", "", "S3 region (or AWS_REGION; default us-east-1)")
}

// openBackend opens the backend named by --backend (or the config).
func openBackend(v *viper.Viper) (hsm.Backend, error) {
	spec := v.GetString("backend")
	if spec == "" {
		return nil, errors.New("no --backend: posix:DIR or s3://BUCKET/PREFIX")
	}
	return hsm.Open(spec, s3Config(v))
}

// s3Config is the S3 part of a command's settings.
func s3Config(v *viper.Viper) hsm.S3Config {
	return hsm.S3Config{Endpoint: v.GetString("s3-endpoint"), Region: v.GetString("s3-region")}
}

// clusterClient connects a client to the cluster the settings name (MDS
// addresses and secret, as a mount's config file has them).
func clusterClient(ctx context.Context, v *viper.Viper) (*client.Client, error) {
	addrs := splitList(v.GetStringSlice("mds"))
	if len(addrs) == 0 {
		return nil, errors.New("no MDS: pass --config FILE or --mds ADDR")
	}
	secret, err := loadSecret(v)
	if err != nil {
		return nil, err
	}
	return client.New(ctx, client.Config{MDS: addrs, FSName: v.GetString("fsname"), Secret: secret,
		Logger: newLogger(v.GetString("log-level"))})
}
