package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// wantZeros fails unless b holds only zero bytes; off is b's file offset.
func wantZeros(t *testing.T, what string, b []byte, off int) {
	t.Helper()
	for i, c := range b {
		if c != 0 {
			t.Errorf("%s: byte at offset %d is %#x, want 0", what, off+i, c)
			return
		}
	}
}

// syncedWrite opens path with flags, writes chunks in order and closes.
func syncedWrite(t *testing.T, path string, flags int, chunks ...[]byte) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|flags, 0o644)
	if err != nil {
		t.Fatalf("open %#x: %v", flags, err)
	}
	for _, c := range chunks {
		if n, err := unix.Write(fd, c); err != nil || n != len(c) {
			t.Fatalf("write of %d bytes with flags %#x: %d, %v", len(c), flags, n, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		t.Fatalf("close: %v", err)
	}
}

var ioCases = []posixCase{
	{"truncate grows with zeros and shrinks keeping data", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		// Two 64 KiB stripes, so the size changes cross object boundaries.
		mustStrata(t, "setstripe", "-c", "2", "-S", "64k", f)
		data := pattern(200000, 5)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, 300001); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, f)
		if len(got) != 300001 {
			t.Fatalf("size after growing truncate = %d, want 300001", len(got))
		}
		if off, same := firstDiff(got[:200000], data); !same {
			t.Errorf("data below the old size changed at offset %d", off)
		}
		wantZeros(t, "grown region", got[200000:], 200000)

		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(70000); err != nil {
			t.Fatal(err)
		}
		// Growing again must not bring back the cut-off bytes.
		if err := fh.Truncate(140000); err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte("tail"), 150000); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f, filepath.Join(d2, "f")} {
			got := readFile(t, p)
			if len(got) != 150004 {
				t.Fatalf("%s: size %d, want 150004", p, len(got))
			}
			if off, same := firstDiff(got[:70000], data[:70000]); !same {
				t.Errorf("%s: data below the cut changed at offset %d", p, off)
			}
			wantZeros(t, p+": region cut and grown again", got[70000:150000], 70000)
			if string(got[150000:]) != "tail" {
				t.Errorf("%s: tail = %q", p, got[150000:])
			}
		}
	}},
	{"O_DIRECT writes", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		const size = 1<<20 + 8192
		// O_DIRECT wants aligned buffers: an anonymous mapping is.
		buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(buf)
		want := pattern(size, 7)
		copy(buf, want)
		fd, err := unix.Open(f, unix.O_WRONLY|unix.O_CREAT|unix.O_DIRECT, 0o644)
		if err != nil {
			t.Fatalf("open O_DIRECT: %v", err)
		}
		if n, err := unix.Pwrite(fd, buf[:1<<20], 0); err != nil || n != 1<<20 {
			t.Fatalf("O_DIRECT pwrite: %d, %v", n, err)
		}
		if n, err := unix.Pwrite(fd, buf[1<<20:], 1<<20); err != nil || n != 8192 {
			t.Fatalf("O_DIRECT pwrite: %d, %v", n, err)
		}
		if err := unix.Close(fd); err != nil {
			t.Fatal(err)
		}
		wantContent(t, filepath.Join(d2, "f"), want)
		// And an O_DIRECT read on the first client.
		fd, err = unix.Open(f, unix.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		clear(buf)
		if n, err := unix.Pread(fd, buf, 0); err != nil || n != size || !bytes.Equal(buf, want) {
			t.Errorf("O_DIRECT read back: %d bytes, %v, equal %v", n, err, bytes.Equal(buf, want))
		}
	}},
	{"O_SYNC and O_DSYNC writes", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		for _, c := range []struct {
			name  string
			flags int
		}{{"osync", unix.O_SYNC}, {"odsync", unix.O_DSYNC}} {
			data := pattern(1000+70000+3, byte(c.flags>>12))
			syncedWrite(t, filepath.Join(d, c.name), c.flags, data[:1000], data[1000:71000], data[71000:])
			wantContent(t, filepath.Join(d2, c.name), data)
		}
	}},
	{"fsync and fdatasync", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		fh, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		data := pattern(300000, 9)
		if _, err := fh.Write(data[:100000]); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fsync(int(fh.Fd())); err != nil {
			t.Errorf("fsync: %v", err)
		}
		if _, err := fh.Write(data[100000:]); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fdatasync(int(fh.Fd())); err != nil {
			t.Errorf("fdatasync: %v", err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		wantContent(t, filepath.Join(d2, "f"), data)
		dir, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		if err := unix.Fsync(int(dir.Fd())); err != nil {
			t.Errorf("fsync of a directory: %v", err)
		}
	}},
	{"mmap MAP_SHARED", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		const size = 3*4096 + 100
		want := pattern(size, 11)
		fh, err := os.OpenFile(f, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if err := fh.Truncate(size); err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(fh.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap MAP_SHARED: %v", err)
		}
		copy(m, want)
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			t.Errorf("msync: %v", err)
		}
		got := make([]byte, size)
		if n, err := fh.ReadAt(got, 0); n != size || !bytes.Equal(got, want) {
			off, _ := firstDiff(got[:n], want)
			t.Errorf("read(2) after msync: %d bytes, %v; first difference at %d", n, err, off)
		}
		if err := unix.Munmap(m); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		wantContent(t, filepath.Join(d2, "f"), want)
		wantContent(t, f, want)
		// The other way: data written with write(2) shows in a new mapping.
		g := filepath.Join(d, "g")
		if err := os.WriteFile(g, want[:5000], 0o644); err != nil {
			t.Fatal(err)
		}
		gh, err := os.Open(filepath.Join(d2, "g"))
		if err != nil {
			t.Fatal(err)
		}
		defer gh.Close()
		m, err = unix.Mmap(int(gh.Fd()), 0, 5000, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap for reading: %v", err)
		}
		defer unix.Munmap(m)
		if !bytes.Equal(m, want[:5000]) {
			off, _ := firstDiff(m, want[:5000])
			t.Errorf("mapping on the second client differs from the written data at offset %d", off)
		}
	}},
	{"mmap MAP_PRIVATE writes stay private", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		f := filepath.Join(d, "f")
		orig := pattern(10000, 13)
		if err := os.WriteFile(f, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		m, err := unix.Mmap(int(fh.Fd()), 0, len(orig), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
		if err != nil {
			t.Fatalf("mmap MAP_PRIVATE: %v", err)
		}
		if !bytes.Equal(m, orig) {
			t.Errorf("private mapping does not show the file")
		}
		copy(m[100:], "private change")
		if string(m[100:114]) != "private change" {
			t.Errorf("private mapping did not take the write")
		}
		_ = unix.Msync(m, unix.MS_SYNC)
		got := make([]byte, len(orig))
		if _, err := fh.ReadAt(got, 0); err != nil || !bytes.Equal(got, orig) {
			t.Errorf("MAP_PRIVATE write reached the file (read(2): %v)", err)
		}
		if err := unix.Munmap(m); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		wantContent(t, f, orig)
		wantContent(t, filepath.Join(d2, "f"), orig)
	}},
	{"O_APPEND from two clients", func(t *testing.T, e *posixEnv) {
		d, d2 := e.workDir(t)
		const writers, records, recSize = 4, 100, 100
		write(t, filepath.Join(d, "log"), "")
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			path := filepath.Join([]string{d, d2}[w%2], "log")
			wg.Add(1)
			go func() {
				defer wg.Done()
				fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer fh.Close()
				for r := 0; r < records; r++ {
					rec := fmt.Appendf(nil, "%d:%04d:", w, r)
					rec = append(rec, bytes.Repeat([]byte{byte('a' + w)}, recSize-len(rec)-1)...)
					rec = append(rec, '\n')
					if _, err := fh.Write(rec); err != nil {
						t.Errorf("append: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got := readFile(t, filepath.Join(d, "log"))
		if len(got) != writers*records*recSize {
			t.Fatalf("log holds %d bytes, want %d: appends overwrote each other", len(got), writers*records*recSize)
		}
		next := make([]int, writers)
		for off := 0; off < len(got); off += recSize {
			var w, r int
			rec := got[off : off+recSize]
			if _, err := fmt.Sscanf(string(rec), "%d:%04d:", &w, &r); err != nil || w < 0 || w >= writers ||
				r != next[w] || rec[recSize-2] != byte('a'+w) || rec[recSize-1] != '\n' {
				t.Fatalf("record at offset %d is torn or out of order: %q", off, rec)
			}
			next[w]++
		}
	}},
}
