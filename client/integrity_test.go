package client

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stratafs/strata/layout"
)

// TestFsyncSyncsWhatOthersWrote: fsync through a descriptor opened after
// the writer closed must still sync the file's objects (the data reached
// the OSSes' page cache, not their disks). It once synced only what the
// same open had dirtied, which was nothing.
func TestFsyncSyncsWhatOthersWrote(t *testing.T) {
	fc := newFakeCluster(t, 4, 4, 64<<10)
	c := fc.client(Config{})
	w := mustCreate(t, c, "/f")
	if _, err := w.WriteAt(randomBytes(1, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, comp := range r.Layout().Components {
		for _, o := range comp.Objects {
			if fc.syncs[o] == 0 {
				t.Errorf("object %s on OST %d not synced by fsync of a later open", o.ID, o.OST)
			}
		}
	}
}

// TestFsyncDetectsLostWrites: if an OST's verifier changed between a write
// and the fsync (its host rebooted and may have lost unsynced data), fsync
// fails with EIO instead of calling the data durable.
func TestFsyncDetectsLostWrites(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 64<<10)
	fc.mu.Lock()
	fc.verifiers[0], fc.verifiers[1] = 11, 22
	fc.mu.Unlock()
	c := fc.client(Config{})
	f := mustCreate(t, c, "/f")
	defer f.Close()
	if _, err := f.WriteAt(randomBytes(2, 128<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	fc.verifiers[1] = 23 // OST 1's host rebooted
	fc.mu.Unlock()
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after an OST lost unsynced writes = %v, want EIO", err)
	}
	// Written again, the data is durable again.
	if _, err := f.WriteAt(randomBytes(2, 128<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after rewriting = %v", err)
	}
}

// TestLargeObjectExtents: a read or write of more than an OSS takes in one
// request (16 MiB) to one object is split, not refused with EMSGSIZE.
func TestLargeObjectExtents(t *testing.T) {
	fc := newFakeCluster(t, 1, 1, 64<<20)
	for _, wb := range []int64{-1, 0} { // direct, then through write-behind
		c := fc.client(Config{WriteBehind: wb})
		f := mustCreate(t, c, "/big")
		data := randomBytes(3, 20<<20)
		if _, err := f.WriteAt(data, 1000); err != nil {
			t.Fatalf("write-behind %d: 20 MiB write to one object: %v", wb, err)
		}
		got := make([]byte, len(data))
		if _, err := f.ReadAt(got, 1000); err != nil {
			t.Fatalf("write-behind %d: 20 MiB read from one object: %v", wb, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("write-behind %d: 20 MiB read back differs", wb)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStaleLayoutRefetched: a client holding a file's old layout after the
// file was restriped (objects destroyed, as migrate and release do) gets
// ESTALE from the OSS, fetches the new layout and reads the right bytes,
// never zeros.
func TestStaleLayoutRefetched(t *testing.T) {
	fc := newFakeCluster(t, 2, 2, 64<<10)
	c := fc.client(Config{ReadAhead: -1})
	w := mustCreate(t, c, "/f")
	data := randomBytes(4, 300<<10)
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenFile("/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Migrate the file behind the client's back: new objects, new
	// generation, old objects destroyed.
	fc.mu.Lock()
	in := fc.inodes[r.Ino()]
	next := layout.Layout{Gen: in.lay.Gen + 1}
	for _, comp := range in.lay.Components {
		nc := comp
		nc.Objects = nil
		for _, o := range comp.Objects {
			no := o
			no.ID.Seq += 100
			fc.objects[no] = append([]byte(nil), fc.objects[o]...)
			fc.stale[o] = true
			delete(fc.objects, o)
			nc.Objects = append(nc.Objects, no)
		}
		next.Components = append(next.Components, nc)
	}
	in.lay = next
	fc.mu.Unlock()

	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatalf("read with a stale layout: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read with a stale layout returned the wrong bytes")
	}
	if l := r.Layout(); l.Gen != next.Gen {
		t.Fatalf("client layout generation %d after refetch, want %d", l.Gen, next.Gen)
	}
	// Writes go to the new objects too.
	if _, err := r.WriteAt([]byte("new"), 70<<10); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	copy(data[70<<10:], "new")
	if b := readAll(t, c, "/f"); !bytes.Equal(b, data) {
		t.Fatal("file differs after a write through a refetched layout")
	}
}
