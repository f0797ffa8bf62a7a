package hsm

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestPosixBackend writes an object in parts out of order, reads it back,
// lists, stats and deletes it; an aborted upload leaves the old object.
func TestPosixBackend(t *testing.T) {
	ctx := context.Background()
	b, err := Open("posix:"+t.TempDir(), S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	u, err := b.Create(ctx, "fs/obj", int64(len(data)), 3000)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{3, 1, 0, 2} {
		end := min(len(data), (i+1)*3000)
		if err := u.WritePart(ctx, i, data[i*3000:end]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Stat(ctx, "fs/obj"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an object visible before its commit: %v", err)
	}
	if err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5000)
	if err := b.ReadAt(ctx, "fs/obj", got, 2500); err != nil || !bytes.Equal(got, data[2500:7500]) {
		t.Fatalf("ReadAt: %v", err)
	}
	u, err = b.Create(ctx, "fs/obj", 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := b.List(ctx, "fs/", func(o ObjectInfo) bool { keys = append(keys, o.Key); return true }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "fs/obj" {
		t.Fatalf("List = %v", keys)
	}
	info, err := b.Stat(ctx, "fs/obj")
	if err != nil || info.Size != int64(len(data)) || info.ETag == "" {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	abs := filepath.Join(b.(*posixBackend).dir, "fs", "obj")
	if err := b.ReadAt(ctx, abs, got[:10], 0); err != nil || !bytes.Equal(got[:10], data[:10]) {
		t.Fatalf("ReadAt by absolute path: %v", err)
	}
	if err := b.Delete(ctx, "fs/obj"); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadAt(ctx, "fs/obj", got, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read after delete: %v", err)
	}
}

// TestManifest checks that a manifest is held to the digest the MDS keeps
// and to the file's size.
func TestManifest(t *testing.T) {
	m := manifest{Size: 10, ChunkSize: 4, CRC32C: []uint32{chunkCRC([]byte("abcd")), chunkCRC([]byte("efgh")), chunkCRC([]byte("ij"))}}
	data, err := jsonManifest(&m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseManifest(data, m.digest(), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := parseManifest(data, m.digest(), 11); err == nil {
		t.Fatal("a manifest for another size passed")
	}
	m.CRC32C[1]++
	bad, _ := jsonManifest(&m)
	good := manifest{Size: 10, ChunkSize: 4, CRC32C: []uint32{chunkCRC([]byte("abcd")), chunkCRC([]byte("efgh")), chunkCRC([]byte("ij"))}}
	if _, err := parseManifest(bad, good.digest(), 10); err == nil {
		t.Fatal("a tampered manifest passed")
	}
}
