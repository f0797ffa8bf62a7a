package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// fuseConf is where fusermount3 reads user_allow_other.
const fuseConf = "/etc/fuse.conf"

// prepareMountPoint checks everything a mount at mnt needs that can be
// checked before the kernel is asked, creating a missing mount point (as
// juicefs mount does), so that a failure says why in one line instead of
// "fusermount exited with code 256". It returns the absolute mount point.
func prepareMountPoint(mnt string, allowOther bool) (string, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return "", fmt.Errorf("create mount point: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("mount point: %w", err)
	case !st.IsDir():
		return "", errors.New("mount point is not a directory")
	}
	if isMounted(abs) {
		return "", errors.New("a Strata filesystem is already mounted here (strata umount it first)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "", errors.New("/dev/fuse is missing: load the fuse kernel module (modprobe fuse)")
	}
	if os.Geteuid() == 0 {
		return abs, nil
	}
	// An unprivileged mount goes through the setuid fusermount3, which
	// has rules of its own.
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return "", errors.New("fusermount3 not found: install the fuse3 package (apt-get install fuse3)")
	}
	if err := unix.Access(abs, unix.W_OK); err != nil {
		return "", fmt.Errorf("no write permission on the mount point, which fusermount3 requires of a non-root user (%v)", err)
	}
	if allowOther && !userAllowOther() {
		return "", fmt.Errorf("allow_other needs a line user_allow_other in %s when a non-root user mounts (or mount with -o noallow_other)", fuseConf)
	}
	return abs, nil
}

// userAllowOther reports whether fusermount3 lets non-root users mount with
// allow_other.
func userAllowOther() bool {
	f, err := os.Open(fuseConf)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "user_allow_other" {
			return true
		}
	}
	return false
}

// allowOtherWarning is the line a mount without allow_other prints: only
// the mounting user can enter it.
func allowOtherWarning(mnt string) string {
	how := "mount with -o allow_other (a non-root user also needs user_allow_other in " + fuseConf + ")"
	if os.Geteuid() == 0 {
		how = "mount without -o noallow_other (or allow-other: true in the config)"
	}
	return fmt.Sprintf("strata: mount: %s: warning: mounted without allow_other, so users other than uid %d get EACCES; to share it, %s",
		mnt, os.Geteuid(), how)
}

// withFusermountStderr runs mount and, if it fails, replaces the error of
// go-fuse's fusermount3 call ("fusermount exited with code 256") with the
// last line fusermount3 wrote, which says why. go-fuse hands the helper
// os.Stderr as it is at the call, so pointing the variable at a pipe for the
// duration catches the helper's words without touching file descriptor 2.
func withFusermountStderr(mount func() error) error {
	r, w, err := os.Pipe()
	if err != nil {
		return mount()
	}
	saved := os.Stderr
	os.Stderr = w
	text := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		text <- string(b)
	}()
	err = mount()
	os.Stderr = saved
	w.Close()
	out := <-text
	if out != "" {
		// Whatever the helper said belongs in the log as well.
		fmt.Fprint(saved, out)
	}
	if err == nil {
		return nil
	}
	if line := lastLine(out); line != "" && strings.Contains(err.Error(), "fusermount") {
		return errors.New(strings.TrimPrefix(line, "fusermount3: "))
	}
	return err
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
