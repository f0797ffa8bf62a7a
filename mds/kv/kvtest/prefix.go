package kvtest

import (
	"bytes"
	"context"

	"github.com/stratafs/strata/mds/kv"
)

// WithPrefix confines e to the keys that begin with prefix, which it
// hides: the returned engine sees an empty keyspace of its own. It lets
// the suite run on a shared TiKV cluster without touching other data.
// Closing it closes e.
func WithPrefix(e kv.Engine, prefix []byte) kv.Engine {
	return &prefixed{e: e, prefix: bytes.Clone(prefix)}
}

type prefixed struct {
	e      kv.Engine
	prefix []byte
}

func (p *prefixed) Begin(ctx context.Context, update bool) (kv.Tx, error) {
	tx, err := p.e.Begin(ctx, update)
	if err != nil {
		return nil, err
	}
	return &prefixedTx{tx: tx, prefix: p.prefix}, nil
}

func (p *prefixed) Sync(ctx context.Context) error { return p.e.Sync(ctx) }
func (p *prefixed) Close() error                   { return p.e.Close() }

type prefixedTx struct {
	tx     kv.Tx
	prefix []byte
}

func (p *prefixedTx) key(k []byte) []byte {
	return append(bytes.Clone(p.prefix), k...)
}

func (p *prefixedTx) Get(ctx context.Context, key []byte) ([]byte, error) {
	return p.tx.Get(ctx, p.key(key))
}

func (p *prefixedTx) BatchGet(ctx context.Context, keys [][]byte) ([][]byte, error) {
	full := make([][]byte, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	return p.tx.BatchGet(ctx, full)
}

func (p *prefixedTx) Scan(ctx context.Context, start, end []byte, limit int, fn func(key, value []byte) bool) error {
	pend := end
	if pend == nil {
		pend = prefixEnd(p.prefix)
	} else {
		pend = p.key(end)
	}
	return p.tx.Scan(ctx, p.key(start), pend, limit, func(k, v []byte) bool {
		return fn(k[len(p.prefix):], v)
	})
}

func (p *prefixedTx) Set(key, value []byte) error      { return p.tx.Set(p.key(key), value) }
func (p *prefixedTx) Delete(key []byte) error          { return p.tx.Delete(p.key(key)) }
func (p *prefixedTx) Commit(ctx context.Context) error { return p.tx.Commit(ctx) }
func (p *prefixedTx) Rollback()                        { p.tx.Rollback() }

// prefixEnd returns the first key after every key beginning with prefix,
// or nil if there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
