package client

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
)

// viewBytes returns a copy of what a view holds.
func viewBytes(v *ReadView) []byte {
	var out []byte
	for _, b := range v.Bufs {
		out = append(out, b...)
	}
	return out
}

// TestReadViewLendsReadahead: sequential ReadAtView calls are served from
// readahead pieces without a copy, return the file's bytes, and a lent
// piece keeps its bytes while a write overwrites the range (the write
// drops the piece, but it is pooled only once the view releases it); the
// next read sees the write, and releasing every view gives the readahead
// budget back.
func TestReadViewLendsReadahead(t *testing.T) {
	fc := newFakeCluster(t, 4, 4, 1<<20)
	c := fc.client(Config{ReadAhead: 4 << 20})
	data := randomBytes(21, 8<<20)
	w := mustCreate(t, c, "/view")
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenFile("/view", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	var v ReadView
	lent := 0
	for off := int64(0); off < 4<<20; off += int64(len(buf)) {
		n, err := r.ReadAtView(&v, buf, off)
		if err != nil || n != len(buf) || v.Len() != n {
			t.Fatalf("ReadAtView at %d: %d bytes (view %d), %v", off, n, v.Len(), err)
		}
		if !bytes.Equal(viewBytes(&v), data[off:off+int64(n)]) {
			t.Fatalf("view at %d differs from the file", off)
		}
		lent += len(v.held)
		v.Release()
	}
	if lent == 0 {
		t.Fatal("no read was served from readahead")
	}

	// Hold a view of the next megabyte, lent from readahead.
	const at = 4 << 20
	if _, err := r.ReadAtView(&v, buf, at); err != nil {
		t.Fatal(err)
	}
	if len(v.held) == 0 {
		t.Fatal("the held view has no readahead piece")
	}
	patch := bytes.Repeat([]byte{0xEE}, 1<<20)
	if _, err := w.WriteAt(patch, at); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Reads elsewhere recycle pooled buffers meanwhile.
	other := make([]byte, 1<<20)
	if _, err := r.ReadAt(other, 6<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viewBytes(&v), data[at:at+1<<20]) {
		t.Fatal("a lent readahead piece changed before the view released it")
	}
	v.Release()
	if _, err := r.ReadAtView(&v, buf, at); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viewBytes(&v), patch) {
		t.Fatal("a read after the write does not see it")
	}
	v.Release()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if held := c.raHeld.Load(); held != 0 {
		t.Fatalf("%d readahead bytes still counted after every view was released and the file closed", held)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadViewsConcurrent: readers of different files hold several views
// at once while writers churn the buffer pools; every view holds its own
// file's bytes until released.
func TestReadViewsConcurrent(t *testing.T) {
	fc := newFakeCluster(t, 4, 4, 1<<20)
	c := fc.client(Config{ReadAhead: 4 << 20, WriteBehind: 2 << 20})
	const files, size = 4, 8 << 20
	var wg sync.WaitGroup
	for i := range files {
		name := fmt.Sprintf("/cv%d", i)
		data := randomBytes(uint64(30+i), size)
		w := mustCreate(t, c, name)
		if _, err := w.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, err := c.OpenFile(name, os.O_RDONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			const inFlight = 3
			var views [inFlight]ReadView
			bufs := [inFlight][]byte{make([]byte, 512<<10), make([]byte, 512<<10), make([]byte, 512<<10)}
			for k, off := 0, int64(0); off < size; k, off = k+1, off+512<<10 {
				v := &views[k%inFlight]
				v.Release()
				if _, err := r.ReadAtView(v, bufs[k%inFlight], off); err != nil {
					t.Error(err)
					return
				}
				for j := range views {
					back := off - int64((k-j+inFlight)%inFlight)*512<<10
					if back >= 0 && !bytes.Equal(viewBytes(&views[j]), data[back:back+512<<10]) {
						t.Errorf("%s: view of %d changed while held", name, back)
						return
					}
				}
			}
			for j := range views {
				views[j].Release()
			}
		}()
		go func() {
			defer wg.Done()
			scratch := mustCreateConcurrent(c, fmt.Sprintf("/scratch%d", i))
			if scratch == nil {
				t.Error("create scratch file")
				return
			}
			junk := randomBytes(uint64(90+i), 1<<20)
			for off := int64(0); off < size; off += int64(len(junk)) {
				if _, err := scratch.WriteAt(junk, off); err != nil {
					t.Error(err)
					return
				}
			}
			if err := scratch.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// mustCreateConcurrent creates a file from a goroutine other than the
// test's, returning nil on failure.
func mustCreateConcurrent(c *Client, name string) *File {
	f, err := c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil
	}
	return f
}

// TestOpenWhileWriting: a File is listed on its inode only once its
// readahead is set, so a write through another File of the inode, which
// invalidates every listed File's readahead, never reads a half-built
// File. Under -race this failed (go-fuse's posixtest ParallelFileOpen
// found it: opens racing writes of one file).
func TestOpenWhileWriting(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 1<<20)
	c := fc.client(Config{ReadAhead: 1 << 20})
	w := mustCreate(t, c, "/shared")
	defer w.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.WriteAt([]byte{byte(i)}, int64(i%4096)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		f, err := c.OpenFile("/shared", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
