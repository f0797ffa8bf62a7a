package rpc

import (
	"bytes"
	"testing"
)

// TestBufPool: a pooled buffer comes back with the length asked for and its
// class's whole capacity, and buffers held at once never share memory, also
// after going through the pool.
func TestBufPool(t *testing.T) {
	for _, n := range []int{1, 512, 513, 4 << 10, 1 << 20, 1<<20 + 1} {
		held := make([][]byte, 4)
		for round := range 3 {
			for i := range held {
				b := getBuf(n)
				if len(b) != n || cap(b) != 1<<sizeClass(n) {
					t.Fatalf("getBuf(%d): len %d cap %d, want cap %d", n, len(b), cap(b), 1<<sizeClass(n))
				}
				for j := range b[:cap(b)] {
					b[:cap(b)][j] = byte(i)
				}
				held[i] = b
			}
			for i, b := range held {
				if !bytes.Equal(b[:cap(b)], bytes.Repeat([]byte{byte(i)}, cap(b))) {
					t.Fatalf("size %d round %d: buffer %d was overwritten by another buffer held at the same time", n, round, i)
				}
			}
			for _, b := range held {
				putBuf(b)
			}
		}
	}
	if getBuf(0) != nil {
		t.Fatal("getBuf(0) is not nil")
	}
}

// TestDecodeBody: the pooled decoder decodes as msgpack.Unmarshal does,
// one body after another, and leaves nothing of an earlier body behind.
func TestDecodeBody(t *testing.T) {
	for _, want := range []echoResp{{Text: "first", BulkLen: 3, Sum: 9}, {Text: "", BulkLen: 0}, {Text: "third"}} {
		frame, err := encodeFrame(header{}, &want)
		if err != nil {
			t.Fatal(err)
		}
		var got echoResp
		if err := decodeBody(frame.Bytes()[headerSize:], &got); err != nil || got != want {
			t.Fatalf("decodeBody = %+v, %v; want %+v", got, err, want)
		}
		putFrame(frame)
	}
	var v echoResp
	if err := decodeBody([]byte{0xc1}, &v); err == nil {
		t.Fatal("decodeBody of a malformed body succeeded")
	}
}
