package client

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// TestReadAheadBudget: files read sequentially at once share the client's
// readahead budget: what they hold prefetched never exceeds it (past it
// they read directly), the data is right, and closing them gives it all
// back.
func TestReadAheadBudget(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 1<<20)
	const total = 3 << 20
	c := fc.client(Config{ReadAhead: 8 << 20, ReadAheadTotal: total})
	const files, size = 3, 16 << 20
	var data [][]byte
	var readers []*File
	for i := range files {
		name := fmt.Sprintf("/f%d", i)
		w := mustCreate(t, c, name)
		d := randomBytes(uint64(i+1), size)
		if _, err := w.WriteAt(d, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := c.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		data, readers = append(data, d), append(readers, r)
	}
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i, r := range readers {
			if _, err := r.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, data[i][off:off+int64(len(buf))]) {
				t.Fatalf("file %d at %d: wrong data", i, off)
			}
			if held := c.raHeld.Load(); held > total {
				t.Fatalf("%d bytes prefetched over all files, budget %d", held, total)
			}
		}
	}
	if c.raHeld.Load() == 0 {
		t.Fatal("nothing was prefetched")
	}
	for _, r := range readers {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if held := c.raHeld.Load(); held != 0 {
		t.Fatalf("%d prefetched bytes still counted after every file closed", held)
	}
}
