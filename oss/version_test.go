package oss

import (
	"errors"
	"syscall"
	"testing"
)

// TestLayoutGenerationAndEpoch: an object remembers the layout generation
// it was created for and the truncate epoch that last cut it; I/O naming
// an older generation gets ESTALE, and so does a write or punch naming an
// older epoch, while reads of an older epoch are served (the bytes are
// right; only the size the reader knows may be old). The version survives
// a restart.
func TestLayoutGenerationAndEpoch(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOST(dir, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	ob := obj(77, 4)
	if _, err := o.Write(ob, 0, []byte("gen two"), false, Access{Gen: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Write(ob, 0, []byte("x"), false, Access{Gen: 1}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write naming an older layout generation: %v, want ESTALE", err)
	}
	if _, _, err := o.Read(ob.ID, 0, make([]byte, 4), Access{Gen: 1}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("read naming an older layout generation: %v, want ESTALE", err)
	}
	if err := o.Punch(ob, 3, Access{Gen: 2, Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Write(ob, 0, []byte("old"), false, Access{Gen: 2, Epoch: 4}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write naming an older truncate epoch: %v, want ESTALE", err)
	}
	if err := o.Punch(ob, 0, Access{Gen: 2, Epoch: 4}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("punch naming an older truncate epoch: %v, want ESTALE", err)
	}
	if got := mustReadAt(t, o, ob, Access{Gen: 2, Epoch: 4}); got != "gen" {
		t.Fatalf("read of an older epoch: %q, want %q", got, "gen")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err = OpenOST(dir, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := o.Write(ob, 0, []byte("x"), false, Access{Gen: 2, Epoch: 4}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write of an older epoch after a restart: %v, want ESTALE", err)
	}
	if _, err := o.Write(ob, 3, []byte("!"), false, Access{Gen: 2, Epoch: 5}); err != nil {
		t.Fatalf("write of the current epoch: %v", err)
	}
}

func mustReadAt(t *testing.T, o *OST, ob Object, acc Access) string {
	t.Helper()
	buf := make([]byte, 64)
	n, _, err := o.Read(ob.ID, 0, buf, acc)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}
