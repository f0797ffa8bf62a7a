// Command strata is Strata's one binary: the daemons (mds, oss, mount), the
// all-in-one local cluster (up), admin verbs (format, osts, df) and the
// lfs-style user verbs (setstripe, getstripe). Invoked through a symlink
// named lfs it accepts Lustre's spellings.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// cliError is a failure reported as the one-line form CLI.md requires:
// "strata: VERB: PATH: reason".
type cliError struct {
	verb string
	path string
	err  error
}

func (e *cliError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("strata: %s: %v", e.verb, e.err)
	}
	return fmt.Sprintf("strata: %s: %s: %v", e.verb, e.path, e.err)
}

func (e *cliError) Unwrap() error { return e.err }

// fail wraps err as a cliError for verb and path.
func fail(verb, path string, err error) error {
	if err == nil {
		return nil
	}
	var ce *cliError
	if errors.As(err, &ce) {
		return err
	}
	return &cliError{verb: verb, path: path, err: plainError(err)}
}

// plainError turns bare errnos into their text so messages read as
// "No such file or directory" rather than a number.
func plainError(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) && errors.Is(err, errno) && err.Error() == errno.Error() {
		return errors.New(errno.Error())
	}
	return err
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "strata",
		Short: "Strata parallel filesystem",
		Long: `Strata is a parallel filesystem in the style of Lustre: metadata servers (mds)
keep the namespace in a transactional KV store, object storage servers (oss)
hold file data striped over OSTs, and clients mount it with FUSE.

Start a local filesystem with "strata up"; run "strata COMMAND --help" for a verb.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newUpCmd(), newFormatCmd(), newMDSCmd(), newOSSCmd(),
		newMountCmd(), newUmountCmd(), newCopytoolCmd(), newHsmCmd(),
		newSetstripeCmd(), newGetstripeCmd(), newDfCmd(), newOstsCmd(),
		newMkdirCmd(), newGetdirstripeCmd(), newMdtsCmd(),
		newVersionCmd(), newRDMACmd(), newFsckCmd(), newEvictCmd(), newMDTAdminCmd(),
		newPoolCmd(), newFindCmd(), newMigrateCmd(), newChangelogCmd(),
		newSetquotaCmd(), newQuotaCmd(), newProjectCmd(), newBenchCmd(),
	)
	return root
}

// lfsArgs rewrites Lustre spellings (lfs hsm_state ...) to strata verbs.
func lfsArgs(args []string) []string {
	if len(args) == 0 {
		return args
	}
	if verb, ok := strings.CutPrefix(args[0], "hsm_"); ok {
		return append([]string{"hsm", verb}, args[1:]...)
	}
	return args
}

func main() {
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "lfs" {
		args = lfsArgs(args)
	}
	root := newRootCmd()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var st *exitStatus
		if errors.As(err, &st) {
			if st.err != nil {
				fmt.Fprintln(os.Stderr, st.err)
			}
			os.Exit(st.code)
		}
		var ce *cliError
		if !errors.As(err, &ce) {
			verb := "strata"
			if c, _, ferr := root.Find(args); ferr == nil && c != root {
				verb = c.Name()
			}
			err = &cliError{verb: verb, err: err}
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
