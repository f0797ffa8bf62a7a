package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// loadConfig layers a command's settings the viper way: flags over
// STRATA_* environment variables over the YAML file named by --config.
// Flag "secret-file" is read as key "secret-file", env STRATA_SECRET_FILE,
// and YAML key "secret-file" or "secret_file".
func loadConfig(cmd *cobra.Command) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix("STRATA")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return nil, err
	}
	if f := cmd.Flags().Lookup("config"); f != nil && f.Value.String() != "" {
		v.SetConfigFile(f.Value.String())
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", f.Value.String(), err)
		}
		// Accept snake_case spellings of dashed keys in YAML.
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			alt := strings.ReplaceAll(f.Name, "-", "_")
			if alt != f.Name && v.IsSet(alt) && !f.Changed {
				v.Set(f.Name, v.Get(alt))
			}
		})
	}
	return v, nil
}

// addSecretFlag registers --secret-file on a command that talks to the cluster.
func addSecretFlag(cmd *cobra.Command) {
	cmd.Flags().String("secret-file", "", "file holding the cluster secret (or set STRATA_SECRET)")
}

// loadSecret returns the cluster secret from --secret-file (or the config
// file's secret-file) or the STRATA_SECRET environment variable.
func loadSecret(v *viper.Viper) ([]byte, error) {
	if path := v.GetString("secret-file"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			return nil, fmt.Errorf("secret file %s is empty", path)
		}
		return b, nil
	}
	if s := os.Getenv("STRATA_SECRET"); s != "" {
		return []byte(s), nil
	}
	return nil, errors.New("no cluster secret: pass --secret-file FILE or set STRATA_SECRET")
}

// ensureSecretFile creates a random secret at path unless one exists.
func ensureSecretFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(raw[:])+"\n"), 0o600)
}

// newLogger returns the daemons' structured logger on stderr.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// splitList splits comma-separated values and flattens repeated flags.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
