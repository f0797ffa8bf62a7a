// Command fuseceiling mounts a passthrough FUSE filesystem of a directory
// with the kernel's entry and attribute caches on for a day, as libfuse's
// passthrough_hp has them: the ceiling a FUSE filesystem can reach on this
// machine, which make bench measures Strata against. It serves until
// SIGINT or SIGTERM, then unmounts.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: fuseceiling DIR MNT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	root, err := fs.NewLoopbackRoot(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling:", err)
		os.Exit(1)
	}
	day := 24 * time.Hour
	srv, err := fs.Mount(flag.Arg(1), root, &fs.Options{
		EntryTimeout:    &day,
		AttrTimeout:     &day,
		NegativeTimeout: &day,
		MountOptions: fuse.MountOptions{
			Name:        "fuseceiling",
			MaxWrite:    1 << 20,
			DirectMount: true,
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		_ = srv.Unmount()
	}()
	srv.Wait()
}
