package tests

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wantNlink fails unless path has n links.
func wantNlink(t *testing.T, path string, n uint64) {
	t.Helper()
	if got := uint64(lstat(t, path).Nlink); got != n {
		t.Errorf("nlink of %s = %d, want %d", filepath.Base(path), got, n)
	}
}

// wantMissing fails unless path does not exist.
func wantMissing(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	wantErrno(t, "lstat "+filepath.Base(path), retryEINTR(func() error { return unix.Lstat(path, &st) }), syscall.ENOENT)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

var namespaceCases = []posixCase{
	{"link counts of files", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		write(t, f, "data")
		wantNlink(t, f, 1)
		if err := os.Link(f, filepath.Join(d, "g")); err != nil {
			t.Fatal(err)
		}
		mkdir(t, filepath.Join(d, "sub"))
		if err := os.Link(f, filepath.Join(d, "sub", "h")); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, f, 3)
		wantNlink(t, filepath.Join(d, "sub", "h"), 3)
		if lstat(t, f).Ino != lstat(t, filepath.Join(d, "g")).Ino {
			t.Errorf("hard link has another inode number")
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, filepath.Join(d, "g"), 2)
		if err := unix.Rename(filepath.Join(d, "g"), filepath.Join(d, "renamed")); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, filepath.Join(d, "renamed"), 2)
		wantNlink(t, filepath.Join(d2, "sub", "h"), 2)
		wantContent(t, filepath.Join(d2, "renamed"), []byte("data"))
		// Directories may not be hard linked.
		wantErrno(t, "link of a directory", os.Link(filepath.Join(d, "sub"), filepath.Join(d, "sub2")), syscall.EPERM)
	}},
	{"link counts of directories", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		top := filepath.Join(d, "top")
		mkdir(t, top)
		wantNlink(t, top, 2)
		a, b := filepath.Join(top, "a"), filepath.Join(top, "b")
		mkdir(t, a, b, filepath.Join(a, "x"))
		write(t, filepath.Join(top, "file"), "")
		wantNlink(t, top, 4) // files do not count
		wantNlink(t, a, 3)
		wantNlink(t, b, 2)
		if err := unix.Rename(filepath.Join(a, "x"), filepath.Join(b, "x")); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, a, 2)
		wantNlink(t, b, 3)
		// Out of top into the work directory.
		before := lstat(t, d).Nlink
		if err := unix.Rename(b, filepath.Join(d, "b")); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, top, 3)
		wantNlink(t, d, uint64(before)+1)
		if err := os.Remove(a); err != nil {
			t.Fatal(err)
		}
		wantNlink(t, top, 2)
		wantNlink(t, filepath.Join(d2, "top"), 2)
		wantNlink(t, filepath.Join(d2, "b"), 3)
	}},
	{"mkfifo", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		p := filepath.Join(d, "fifo")
		if err := unix.Mkfifo(p, 0o640); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, p); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o640 {
			t.Errorf("fifo mode = %#o", st.Mode)
		}
		if st := lstat(t, filepath.Join(d2, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("fifo on the second client has mode %#o", st.Mode)
		}
		// A FIFO on the filesystem is a pipe in the kernel.
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatalf("open fifo: %v", err)
		}
		defer unix.Close(fd)
		if _, err := unix.Write(fd, []byte("through the pipe")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if n, err := unix.Read(fd, buf); err != nil || string(buf[:n]) != "through the pipe" {
			t.Errorf("read from fifo: %q, %v", buf[:n], err)
		}
		if st := lstat(t, p); st.Size != 0 {
			t.Errorf("fifo size = %d after use, want 0", st.Size)
		}
	}},
	{"mknod", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		chr := filepath.Join(d, "null")
		if err := unix.Mknod(chr, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatalf("mknod char device: %v", err)
		}
		blk := filepath.Join(d, "loop")
		if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
			t.Fatalf("mknod block device: %v", err)
		}
		reg := filepath.Join(d, "regular")
		if err := unix.Mknod(reg, unix.S_IFREG|0o640, 0); err != nil {
			t.Fatalf("mknod regular file: %v", err)
		}
		for _, dir := range []string{d, d2} {
			if st := lstat(t, filepath.Join(dir, "null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
				t.Errorf("char device: mode %#o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			if st := lstat(t, filepath.Join(dir, "loop")); st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(7, 200) {
				t.Errorf("block device: mode %#o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			if st := lstat(t, filepath.Join(dir, "regular")); st.Mode != unix.S_IFREG|0o640 || st.Size != 0 {
				t.Errorf("mknod S_IFREG: mode %#o size %d", st.Mode, st.Size)
			}
		}
		try(t, nobody, syscall.EPERM, "mknod-chr", filepath.Join(d, "mine"))
	}},
	{"name length", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		longest := strings.Repeat("n", 255)
		tooLong := strings.Repeat("n", 256)
		write(t, filepath.Join(d, longest), "255")
		wantContent(t, filepath.Join(d2, longest), []byte("255"))
		names, err := os.ReadDir(d)
		if err != nil || len(names) != 1 || names[0].Name() != longest {
			t.Errorf("readdir: %v, %v", names, err)
		}
		long := func(what string, err error) { t.Helper(); wantErrno(t, what, err, syscall.ENAMETOOLONG) }
		_, err = os.Create(filepath.Join(d, tooLong))
		long("create of a 256-byte name", err)
		long("mkdir of a 256-byte name", os.Mkdir(filepath.Join(d, tooLong), 0o755))
		_, err = os.Lstat(filepath.Join(d, tooLong))
		long("lstat of a 256-byte name", err)
		long("rename to a 256-byte name", unix.Rename(filepath.Join(d, longest), filepath.Join(d, tooLong)))
		long("symlink at a 256-byte name", os.Symlink("target", filepath.Join(d, tooLong)))
		long("link at a 256-byte name", os.Link(filepath.Join(d, longest), filepath.Join(d, tooLong)))
		if err := os.Mkdir(filepath.Join(d, "dir"+longest[3:]), 0o755); err != nil {
			t.Errorf("mkdir of a 255-byte name: %v", err)
		}
	}},
	{"symlink with a 4095-byte target", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		var b strings.Builder
		for i := 0; b.Len() < 4095; i++ {
			b.WriteString("component")
			b.WriteByte(byte('0' + i%10))
			b.WriteByte('/')
		}
		target := b.String()[:4095]
		link := filepath.Join(d, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatalf("symlink: %v", err)
		}
		for _, p := range []string{link, filepath.Join(d2, "link")} {
			got, err := os.Readlink(p)
			if err != nil || got != target {
				t.Errorf("readlink %s: %d bytes, %v; want the 4095-byte target back", p, len(got), err)
			}
			if st := lstat(t, p); st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Size != 4095 {
				t.Errorf("lstat %s: mode %#o size %d, want a symlink of size 4095", p, st.Mode, st.Size)
			}
		}
	}},
	{"O_EXCL", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		excl := func(p string) error {
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
		wantErrno(t, "first O_CREAT|O_EXCL", excl(f))
		wantErrno(t, "second O_CREAT|O_EXCL", excl(f), syscall.EEXIST)
		wantErrno(t, "O_CREAT|O_EXCL from the other client", excl(filepath.Join(d2, "f")), syscall.EEXIST)
		// A dangling symlink is not followed.
		if err := os.Symlink("nowhere", filepath.Join(d, "dangling")); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "O_CREAT|O_EXCL on a dangling symlink", excl(filepath.Join(d, "dangling")), syscall.EEXIST)
		wantMissing(t, filepath.Join(d, "nowhere"))
		// Racing creators on both clients: exactly one wins each name.
		const names, racers = 6, 6
		wins := make([]int, names)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for r := 0; r < racers; r++ {
			dir := []string{d, d2}[r%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < names; n++ {
					err := excl(filepath.Join(dir, "race"+string(rune('a'+n))))
					mu.Lock()
					if err == nil {
						wins[n]++
					} else if err != syscall.EEXIST {
						t.Errorf("racing O_EXCL: %v", err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for n, w := range wins {
			if w != 1 {
				t.Errorf("name race%c: %d O_EXCL creators succeeded, want 1", 'a'+n, w)
			}
		}
	}},
	{"O_TRUNC", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		if err := os.WriteFile(f, pattern(100000, 1), 0o644); err != nil {
			t.Fatal(err)
		}
		setPast(t, f)
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := fh.Stat(); err != nil || st.Size() != 0 {
			t.Errorf("fstat after O_TRUNC: %v, %v; want size 0", st, err)
		}
		if _, err := fh.Write([]byte("new")); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		wantContent(t, filepath.Join(d2, "f"), []byte("new"))
		wantRecent(t, "mtime after O_TRUNC", mtimeOf(lstat(t, f)))
		// O_TRUNC on an empty file is allowed and keeps it empty.
		g := filepath.Join(d, "g")
		write(t, g, "")
		fh, err = os.OpenFile(g, os.O_RDWR|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.Close()
		wantContent(t, filepath.Join(d2, "g"), nil)
	}},
	{"unlink while open", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		const size = 4 << 20
		before := e.ostBytes(t)
		f := filepath.Join(d, "f")
		data := pattern(size, 3)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if grown := e.ostBytes(t) - before; grown < size {
			t.Fatalf("OSTs grew by %d bytes for a %d-byte file", grown, size)
		}
		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		wantMissing(t, f)
		wantMissing(t, filepath.Join(d2, "f"))
		var st unix.Stat_t
		if err := unix.Fstat(int(fh.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != size {
			t.Errorf("fstat of the unlinked file: nlink %d size %d, %v; want 0 and %d", st.Nlink, st.Size, err, size)
		}
		got := make([]byte, size)
		if n, err := fh.ReadAt(got, 0); n != size {
			t.Fatalf("read of the unlinked file: %d bytes, %v", n, err)
		}
		if off, same := firstDiff(got, data); !same {
			t.Fatalf("unlinked file's data differs at offset %d", off)
		}
		// Still writable too.
		if _, err := fh.WriteAt([]byte("more"), size); err != nil {
			t.Errorf("write to the unlinked file: %v", err)
		}
		if _, err := fh.ReadAt(got[:4], size); err != nil || string(got[:4]) != "more" {
			t.Errorf("read back of that write: %q, %v", got[:4], err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for e.ostBytes(t) > before && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if now := e.ostBytes(t); now > before {
			t.Errorf("20s after the last close the OSTs hold %d bytes more than before the file", now-before)
		}
	}},
}

// ostBytes sums the object bytes of every OST of the cluster.
func (e *posixEnv) ostBytes(t *testing.T) int64 {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(e.dir, "ost*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no OST directories in %s: %v", e.dir, err)
	}
	var total int64
	for _, dir := range dirs {
		total += ostBytes(t, dir)
	}
	return total
}

// The rename cases call rename(2) directly: os.Rename refuses on its own to
// replace a directory.
var renameCases = []posixCase{
	{"over a file", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
		write(t, a, "AAA")
		write(t, b, "BBB")
		ino := lstat(t, a).Ino
		old, err := os.Open(b)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if err := unix.Rename(a, b); err != nil {
			t.Fatal(err)
		}
		wantMissing(t, a)
		if st := lstat(t, b); st.Ino != ino {
			t.Errorf("target has inode %d, want the source's %d", st.Ino, ino)
		}
		wantContent(t, filepath.Join(d2, "b"), []byte("AAA"))
		wantMissing(t, filepath.Join(d2, "a"))
		// The replaced file lives on while open.
		buf := make([]byte, 3)
		if _, err := old.ReadAt(buf, 0); err != nil || string(buf) != "BBB" {
			t.Errorf("read of the replaced file through an open fd: %q, %v", buf, err)
		}
	}},
	{"over an empty directory", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		src, dst := filepath.Join(d, "src"), filepath.Join(d, "dst")
		mkdir(t, src, dst)
		write(t, filepath.Join(src, "inner"), "in")
		if err := unix.Rename(src, dst); err != nil {
			t.Fatal(err)
		}
		wantMissing(t, src)
		wantContent(t, filepath.Join(d2, "dst", "inner"), []byte("in"))
	}},
	{"over a non-empty directory is ENOTEMPTY", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		src, dst := filepath.Join(d, "src"), filepath.Join(d, "dst")
		mkdir(t, src, dst)
		write(t, filepath.Join(dst, "keep"), "k")
		// POSIX allows EEXIST as well.
		wantErrno(t, "rename over a non-empty directory", unix.Rename(src, dst), syscall.ENOTEMPTY, syscall.EEXIST)
		wantContent(t, filepath.Join(dst, "keep"), []byte("k"))
		lstat(t, src)
	}},
	{"file over directory and directory over file", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		f, dir := filepath.Join(d, "f"), filepath.Join(d, "dir")
		write(t, f, "f")
		mkdir(t, dir)
		wantErrno(t, "rename file over directory", unix.Rename(f, dir), syscall.EISDIR)
		wantErrno(t, "rename directory over file", unix.Rename(dir, f), syscall.ENOTDIR)
		wantContent(t, f, []byte("f"))
	}},
	{"directory into its own subtree is EINVAL", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		a := filepath.Join(d, "a")
		mkdir(t, a, filepath.Join(a, "b"), filepath.Join(a, "b", "c"))
		wantErrno(t, "rename a a/b/c/a", unix.Rename(a, filepath.Join(a, "b", "c", "a")), syscall.EINVAL)
		wantErrno(t, "rename a a/a", unix.Rename(a, filepath.Join(a, "a")), syscall.EINVAL)
		// The same through the other client, whose cache knows less.
		a2 := filepath.Join(d2, "a")
		wantErrno(t, "rename a a/b/c/x on the second client", unix.Rename(a2, filepath.Join(a2, "b", "c", "x")), syscall.EINVAL)
		lstat(t, filepath.Join(a, "b", "c"))
	}},
	{"RENAME_NOREPLACE", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
		write(t, a, "A")
		write(t, b, "B")
		wantErrno(t, "RENAME_NOREPLACE onto an existing name",
			unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE), syscall.EEXIST)
		wantContent(t, a, []byte("A"))
		wantContent(t, b, []byte("B"))
		c := filepath.Join(d, "c")
		wantErrno(t, "RENAME_NOREPLACE onto a new name", unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, c, unix.RENAME_NOREPLACE))
		wantMissing(t, a)
		wantContent(t, c, []byte("A"))
	}},
	{"RENAME_EXCHANGE", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
		write(t, a, "A")
		write(t, b, "B")
		inoA, inoB := lstat(t, a).Ino, lstat(t, b).Ino
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
			t.Fatalf("RENAME_EXCHANGE of two files: %v", err)
		}
		if lstat(t, a).Ino != inoB || lstat(t, b).Ino != inoA {
			t.Errorf("inodes not exchanged")
		}
		wantContent(t, filepath.Join(d2, "a"), []byte("B"))
		wantContent(t, filepath.Join(d2, "b"), []byte("A"))
		// A file and a directory in different directories.
		sub := filepath.Join(d, "sub")
		mkdir(t, sub, filepath.Join(sub, "dir"))
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, filepath.Join(sub, "dir"), unix.RENAME_EXCHANGE); err != nil {
			t.Fatalf("RENAME_EXCHANGE of a file and a directory: %v", err)
		}
		if st := lstat(t, a); st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("a is not the directory after the exchange")
		}
		wantContent(t, filepath.Join(d2, "sub", "dir"), []byte("B"))
		wantErrno(t, "RENAME_EXCHANGE with a missing target",
			unix.Renameat2(unix.AT_FDCWD, b, unix.AT_FDCWD, filepath.Join(d, "missing"), unix.RENAME_EXCHANGE), syscall.ENOENT)
	}},
	{"to itself", func(t *testing.T, e *posixEnv) {
		d, _ := e.workDir(t)
		a := filepath.Join(d, "a")
		write(t, a, "A")
		wantErrno(t, "rename a a", unix.Rename(a, a))
		wantContent(t, a, []byte("A"))
		// Two links of one file: rename does nothing and both remain.
		b := filepath.Join(d, "b")
		if err := os.Link(a, b); err != nil {
			t.Fatal(err)
		}
		wantErrno(t, "rename between links of one file", unix.Rename(a, b))
		wantContent(t, a, []byte("A"))
		wantNlink(t, b, 2)
		dir := filepath.Join(d, "dir")
		mkdir(t, dir)
		wantErrno(t, "rename dir dir", unix.Rename(dir, dir))
		lstat(t, dir)
	}},
}
