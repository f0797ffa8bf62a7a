package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/stratafs/strata/client"
	sfuse "github.com/stratafs/strata/client/fuse"
)

// readyFDEnv names the descriptor on which a background mount reports
// "ok" or its error to the parent that is waiting for it.
const readyFDEnv = "STRATA_MOUNT_READY_FD"

// mountSpec is everything a mount needs, from the source argument, -o
// options and the --config client file.
type mountSpec struct {
	mds         []string
	fsname      string
	secretFile  string
	consistency string
	allowOther  bool
	debug       bool
	// recoveryTimeout bounds how long a request waits through a server
	// outage before it fails with EIO (0: the client's default).
	recoveryTimeout time.Duration
}

// parseSource splits "ADDR[,ADDR]:/FSNAME".
func parseSource(src string) (addrs []string, fsname string, err error) {
	i := strings.LastIndex(src, ":/")
	if i <= 0 || i+2 >= len(src) {
		return nil, "", fmt.Errorf("source %q is not ADDR[,ADDR]:/FSNAME", src)
	}
	return splitList([]string{src[:i]}), src[i+2:], nil
}

// applyOptions applies -o key[=value],... to spec.
func (s *mountSpec) applyOptions(opts []string) error {
	for _, o := range splitList(opts) {
		key, val, _ := strings.Cut(o, "=")
		switch key {
		case "consistency":
			if val != "close-to-open" && val != "strict" {
				return fmt.Errorf("-o consistency=%s: want close-to-open or strict", val)
			}
			s.consistency = val
		case "secret_file", "secret-file":
			s.secretFile = val
		case "allow_other":
			s.allowOther = true
		case "noallow_other":
			s.allowOther = false
		case "debug":
			s.debug = true
		case "recovery_timeout", "recovery-timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return fmt.Errorf("-o recovery_timeout=%s: want a duration such as 5m", val)
			}
			s.recoveryTimeout = d
		case "rw", "defaults", "noatime", "relatime", "_netdev":
		default:
			return fmt.Errorf("unknown mount option %q", o)
		}
	}
	return nil
}

func newMountCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mount [-o OPTS] [--foreground] ADDR[,ADDR]:/FSNAME MNT | --config FILE MNT",
		Short: "Mount a Strata filesystem with FUSE",
		Long: `Mount a Strata filesystem at MNT. The source names the MDS addresses and the
filesystem, or --config names a client file (such as DIR/client.yaml written
by "strata up") with keys mds, fsname and secret-file.

Options (-o, comma separated): consistency=close-to-open|strict,
secret_file=FILE, allow_other, noallow_other, recovery_timeout=DURATION,
debug.

When an MDS or OSS restarts or fails over, applications block and carry on
once it is back (their requests are resent); only after recovery_timeout
(default 5m) do they get EIO.

Mounted by root, the filesystem serves every user of the node (allow_other),
with permissions checked by the MDS and the kernel as on a local disk;
-o noallow_other, or "allow-other: false" in the config file (or
STRATA_ALLOW_OTHER=false), limits it to root. A non-root user's mount is
private unless it asks for allow_other, which fusermount3 grants only with
user_allow_other in /etc/fuse.conf. A missing MNT is created.

Without --foreground the command returns once the filesystem is mounted and
the client keeps running in the background; "strata umount MNT" stops it.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mnt := args[len(args)-1]
			v, err := loadConfig(cmd)
			if err != nil {
				return fail("mount", mnt, err)
			}
			spec, err := buildMountSpec(v, args)
			if err != nil {
				return fail("mount", mnt, err)
			}
			if !v.GetBool("foreground") {
				if _, err := prepareMountPoint(mnt, spec.allowOther); err != nil {
					return fail("mount", mnt, err)
				}
				if err := mountInBackground(mnt, v.GetString("log-file")); err != nil {
					return fail("mount", mnt, err)
				}
				if !spec.allowOther {
					fmt.Fprintln(os.Stderr, allowOtherWarning(mnt))
				}
				return nil
			}
			return fail("mount", mnt, runMount(spec, mnt, v.GetString("log-level")))
		},
	}
	f := cmd.Flags()
	f.String("config", "", "client config file (e.g. DIR/client.yaml from strata up)")
	f.StringArrayP("options", "o", nil, "mount options")
	f.Bool("foreground", false, "stay in the foreground until unmounted")
	f.String("log-file", "", "log file of a background mount (default /tmp/strata-mount-NAME.log)")
	f.String("log-level", "info", "debug, info, warn or error")
	addSecretFlag(cmd)
	return cmd
}

func buildMountSpec(v *viper.Viper, args []string) (*mountSpec, error) {
	spec := &mountSpec{
		mds:         splitList(v.GetStringSlice("mds")),
		fsname:      v.GetString("fsname"),
		secretFile:  v.GetString("secret-file"),
		consistency: v.GetString("consistency"),
		// Root's mount serves every user of the node; fusermount3
		// refuses allow_other to others unless fuse.conf allows it.
		allowOther:      os.Geteuid() == 0,
		recoveryTimeout: v.GetDuration("recovery-timeout"),
	}
	for _, key := range []string{"allow-other", "allow_other"} {
		if v.IsSet(key) {
			spec.allowOther = v.GetBool(key)
		}
	}
	if len(args) == 2 {
		addrs, fsname, err := parseSource(args[0])
		if err != nil {
			return nil, err
		}
		spec.mds, spec.fsname = addrs, fsname
	}
	if err := spec.applyOptions(v.GetStringSlice("options")); err != nil {
		return nil, err
	}
	if len(spec.mds) == 0 || spec.fsname == "" {
		return nil, errors.New("need ADDR:/FSNAME or --config FILE")
	}
	if spec.consistency == "" {
		spec.consistency = "close-to-open"
	}
	if spec.secretFile != "" {
		v.Set("secret-file", spec.secretFile)
	}
	return spec, nil
}

// mountInBackground re-executes this command with --foreground in a new
// session and waits until the child reports that the mount is up.
func mountInBackground(mnt, logFile string) error {
	if logFile == "" {
		logFile = filepath.Join(os.TempDir(), "strata-mount-"+filepath.Base(filepath.Clean(mnt))+".log")
	}
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, append(os.Args[1:], "--foreground")...)
	child.Stdout, child.Stderr = logf, logf
	child.ExtraFiles = []*os.File{w}
	child.Env = append(os.Environ(), readyFDEnv+"=3")
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	done := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		done <- strings.TrimSpace(line)
	}()
	select {
	case msg := <-done:
		if msg == "ok" {
			_ = child.Process.Release()
			return nil
		}
		_ = child.Wait()
		if msg == "" {
			msg = "mount process exited; see " + logFile
		}
		return errors.New(msg)
	case <-time.After(60 * time.Second):
		_ = child.Process.Kill()
		return fmt.Errorf("timed out waiting for the mount; see %s", logFile)
	}
}

// reportReady tells a waiting parent the outcome, if there is one.
func reportReady(err error) {
	fd := os.Getenv(readyFDEnv)
	if fd == "" {
		return
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(3, "ready")
	if f == nil {
		return
	}
	defer f.Close()
	if err != nil {
		io.WriteString(f, err.Error()+"\n")
		return
	}
	io.WriteString(f, "ok\n")
}

// runMount mounts in the foreground and serves until unmounted or signalled.
func runMount(spec *mountSpec, mnt, logLevel string) (err error) {
	defer func() { reportReady(err) }()
	if mnt, err = prepareMountPoint(mnt, spec.allowOther); err != nil {
		return err
	}
	v := viper.New()
	v.Set("secret-file", spec.secretFile)
	secret, err := loadSecret(v)
	if err != nil {
		return err
	}
	log := newLogger(logLevel).With("proc", "mount", "mnt", mnt)
	ctx, stop := signalContext()
	defer stop()
	// The mount itself fails fast, with the reason, when no MDS answers.
	connectCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := client.New(connectCtx, client.Config{
		MDS:             spec.mds,
		FSName:          spec.fsname,
		Secret:          secret,
		Consistency:     spec.consistency,
		Logger:          log,
		RecoveryTimeout: spec.recoveryTimeout,
	})
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	var srv *gofuse.Server
	err = withFusermountStderr(func() error {
		var err error
		srv, err = sfuse.Mount(c, mnt, sfuse.Options{
			FSName:      strings.Join(spec.mds, ",") + ":/" + spec.fsname,
			Debug:       spec.debug,
			AllowOther:  spec.allowOther,
			Consistency: spec.consistency,
		})
		return err
	})
	if err != nil {
		return err
	}
	reportReady(nil)
	log.Info("mounted", "fsname", spec.fsname, "mds", spec.mds, "allow_other", spec.allowOther)
	if !spec.allowOther && os.Getenv(readyFDEnv) == "" {
		fmt.Fprintln(os.Stderr, allowOtherWarning(mnt))
	}
	go func() {
		<-ctx.Done()
		if err := srv.Unmount(); err != nil {
			log.Warn("unmount on signal failed; detaching lazily", "err", err)
			if err := unmount(mnt, true); err != nil {
				log.Error("lazy unmount failed", "err", err)
			}
		}
	}()
	srv.Wait()
	log.Info("unmounted")
	return nil
}

func newUmountCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "umount MNT",
		Short: "Unmount a Strata filesystem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fail("umount", args[0], unmount(args[0], false))
		},
	}
}

// unmount detaches a FUSE mount with fusermount3 (or umount2 as root).
// lazy detaches even while busy.
func unmount(mnt string, lazy bool) error {
	flag := "-u"
	if lazy {
		flag = "-uz"
	}
	if path, err := exec.LookPath("fusermount3"); err == nil {
		out, err := exec.Command(path, flag, mnt).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s", strings.TrimSpace(strings.TrimPrefix(string(out), "fusermount3: ")))
		}
		return nil
	}
	flags := 0
	if lazy {
		flags = syscall.MNT_DETACH
	}
	return syscall.Unmount(mnt, flags)
}
