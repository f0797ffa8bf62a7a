package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Finding the cluster of a mount. strata fsck talks to the MDS itself,
// with the cluster secret, rather than through a mount's virtual xattrs: a
// check runs many pages and its reply can be large. Given a mounted path
// it uses what the client serving the mount uses: the MDS addresses from
// the mount's source (ADDR[,ADDR]:/FSNAME) and the secret from the mount
// process's own configuration (--secret-file, -o secret_file=, --config,
// or STRATA_SECRET in its environment), which its owner and root can read.

// mountCluster returns the MDS addresses and the cluster secret of the
// Strata mount mnt (a mount point, as mountFor returns).
func mountCluster(mnt string) ([]string, []byte, error) {
	mounts, err := strataMounts()
	if err != nil {
		return nil, nil, err
	}
	var addrs []string
	for _, m := range mounts {
		if m.point == mnt {
			if addrs, _, err = parseSource(m.source); err != nil {
				return nil, nil, fmt.Errorf("mount %s: %w", mnt, err)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, nil, errNotStrata
	}
	secret, err := mountSecret(mnt)
	if err != nil {
		return nil, nil, err
	}
	return addrs, secret, nil
}

// mountSecret finds the process serving mnt and reads the secret it was
// given.
func mountSecret(mnt string) ([]byte, error) {
	pids, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, p := range pids {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		proc := filepath.Join("/proc", p.Name())
		raw, err := os.ReadFile(filepath.Join(proc, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		cwd, _ := os.Readlink(filepath.Join(proc, "cwd"))
		if !servesMount(args, cwd, mnt) {
			continue
		}
		secret, err := secretOfArgs(args, cwd)
		if err == nil && secret == nil {
			secret = secretOfEnviron(filepath.Join(proc, "environ"), cwd)
		}
		if err != nil {
			return nil, fmt.Errorf("the client serving %s (pid %s): %w", mnt, p.Name(), err)
		}
		if secret == nil {
			return nil, fmt.Errorf("the client serving %s (pid %s) names no secret this user can read: pass --secret-file", mnt, p.Name())
		}
		return secret, nil
	}
	return nil, fmt.Errorf("no process serving %s found: pass --config FILE or --mds ADDR with --secret-file", mnt)
}

// servesMount reports whether a command line is strata mount's for mnt:
// the verb mount, and mnt as its last argument.
func servesMount(args []string, cwd, mnt string) bool {
	if len(args) < 3 || filepath.Base(args[0]) != "strata" && filepath.Base(args[0]) != "lfs" {
		return false
	}
	verb := false
	for _, a := range args[1:] {
		if a == "mount" {
			verb = true
			break
		}
	}
	return verb && absFrom(cwd, args[len(args)-1]) == mnt
}

// absFrom resolves path against dir.
func absFrom(dir, path string) string {
	if filepath.IsAbs(path) || dir == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(dir, path)
}

// secretOfArgs reads the secret a mount's arguments name, or returns nil
// if they name none.
func secretOfArgs(args []string, cwd string) ([]byte, error) {
	value := func(i int, flag string) (string, bool) {
		a := args[i]
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
		return "", false
	}
	for i := range args {
		if f, ok := value(i, "--secret-file"); ok {
			return readSecretFile(absFrom(cwd, f))
		}
		for _, flag := range []string{"-o", "--options"} {
			if opts, ok := value(i, flag); ok {
				for _, o := range strings.Split(opts, ",") {
					if f, ok := strings.CutPrefix(o, "secret_file="); ok {
						return readSecretFile(absFrom(cwd, f))
					}
					if f, ok := strings.CutPrefix(o, "secret-file="); ok {
						return readSecretFile(absFrom(cwd, f))
					}
				}
			}
		}
		if cfg, ok := value(i, "--config"); ok {
			b, err := os.ReadFile(absFrom(cwd, cfg))
			if err != nil {
				return nil, err
			}
			var doc map[string]any
			if err := yaml.Unmarshal(b, &doc); err != nil {
				return nil, fmt.Errorf("read %s: %w", cfg, err)
			}
			for _, key := range []string{"secret-file", "secret_file"} {
				if f, ok := doc[key].(string); ok && f != "" {
					return readSecretFile(absFrom(filepath.Dir(absFrom(cwd, cfg)), f))
				}
			}
		}
	}
	return nil, nil
}

// secretOfEnviron reads STRATA_SECRET or STRATA_SECRET_FILE from a
// process's environment file, or returns nil.
func secretOfEnviron(path, cwd string) []byte {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("STRATA_SECRET=")); ok && len(v) > 0 {
			return v
		}
		if v, ok := bytes.CutPrefix(kv, []byte("STRATA_SECRET_FILE=")); ok && len(v) > 0 {
			if s, err := readSecretFile(absFrom(cwd, string(v))); err == nil {
				return s
			}
		}
	}
	return nil
}

// readSecretFile reads a secret file as loadSecret does.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, errors.New("secret file " + path + " is empty")
	}
	return b, nil
}
