package fuse

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/client"
)

// dirent is one entry getdents returned, with the offset that follows it.
type dirent struct {
	name string
	off  int64
}

// getdents reads fd's directory from where it stands to the end.
func getdents(t *testing.T, fd int) []dirent {
	t.Helper()
	var out []dirent
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := binary.LittleEndian.Uint16(b[16:18])
			off := int64(binary.LittleEndian.Uint64(b[8:16]))
			name := b[19:reclen]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			out = append(out, dirent{name: string(name), off: off})
			b = b[reclen:]
		}
	}
}

// TestDirectoryStreams: a listing far longer than the window a directory
// handle keeps comes out whole, in order, once; and seekdir back to a
// position the window has dropped lists the rest again, the same.
func TestDirectoryStreams(t *testing.T) {
	_, mnt := startMount(t, client.Config{}, Options{})
	dir := filepath.Join(mnt, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	all := getdents(t, fd)
	var names []string
	for _, e := range all {
		if e.name != "." && e.name != ".." {
			names = append(names, e.name)
		}
	}
	if len(names) != n || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != n {
		t.Fatalf("listing has %d names (want %d, sorted, each once)", len(names), n)
	}
	const back = 10
	if _, err := unix.Seek(fd, all[back].off, 0); err != nil {
		t.Fatal(err)
	}
	again := getdents(t, fd)
	if !slices.Equal(again, all[back+1:]) {
		t.Fatalf("after seekdir back to entry %d: %d entries, want the %d that followed it first", back, len(again), len(all)-back-1)
	}
}
