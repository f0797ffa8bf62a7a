package kvtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stratafs/strata/mds/kv"
)

// BenchUpdateNewKeys measures read-write transactions that each read an
// absent key and create it, as a create or mkdir does. It closes db.
func BenchUpdateNewKeys(b *testing.B, db *kv.DB) {
	defer db.Close()
	ctx := context.Background()
	value := make([]byte, 128) // about an encoded inode
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := fmt.Appendf(nil, "bench/new/%012d", i)
		err := db.Update(ctx, func(tx kv.Txn) error {
			if _, err := tx.Get(ctx, k); err != nil {
				return err
			}
			return tx.Set(k, value)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchUpdateHotKey measures read-modify-write transactions on one key, as
// an inode-number counter or a busy directory sees. It closes db.
func BenchUpdateHotKey(b *testing.B, db *kv.DB) {
	defer db.Close()
	ctx := context.Background()
	k := []byte("bench/hot")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		err := db.Update(ctx, func(tx kv.Txn) error {
			v, err := tx.Get(ctx, k)
			if err != nil {
				return err
			}
			var n uint64
			if len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
			return tx.Set(k, binary.BigEndian.AppendUint64(nil, n+1))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
