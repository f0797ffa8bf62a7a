package mds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// ErrFormatted means Format found the filesystem already in the store.
var ErrFormatted = errors.New("mds: filesystem already formatted")

// maxFSNameLen bounds a filesystem name (Lustre allows 8 characters; we
// allow a little more).
const maxFSNameLen = 16

// FormatOptions configure a new filesystem.
type FormatOptions struct {
	// FSName names the filesystem: 1 to 16 letters, digits, '-' or '_'.
	FSName string
	// StripeCount and StripeSize form the default layout; zero takes
	// layout.DefaultStripeCount and DefaultStripeSize, -1 stripes over all OSTs.
	StripeCount int32
	StripeSize  int64
	// RootUid and RootGid own the root directory (mode 0755).
	RootUid, RootGid uint32
	// Logger receives progress; nil means slog.Default().
	Logger *slog.Logger
}

// Format writes a new filesystem into the store kvURL names: the cluster
// record with the default layout, MDT 0 and the root directory. It fails
// with ErrFormatted if the store already holds a filesystem.
func Format(ctx context.Context, kvURL string, opts FormatOptions) error {
	db, err := kv.Open(ctx, kvURL, kv.Options{Sync: "always"})
	if err != nil {
		return fmt.Errorf("mds: format: open %s: %w", kvURL, err)
	}
	defer db.Close()
	if err := FormatDB(ctx, db, opts); err != nil {
		return err
	}
	return db.Sync(ctx)
}

// FormatDB is Format on an open store.
func FormatDB(ctx context.Context, db *kv.DB, opts FormatOptions) error {
	if err := checkFSName(opts.FSName); err != nil {
		return err
	}
	spec := layout.DefaultSpec(opts.StripeCount, opts.StripeSize)
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("mds: format: default layout: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	k := newKeys(opts.FSName)
	now := time.Now().UnixNano()
	err := db.Update(ctx, func(tx kv.Txn) error {
		// One filesystem per store: Run, given no name, serves the only one.
		var existing string
		start, end := registryRange()
		err := tx.Scan(ctx, start, end, 1, func(k, _ []byte) bool {
			existing, _ = decodeRegistryKey(k)
			return false
		})
		if err != nil {
			return err
		}
		if existing != "" {
			return fmt.Errorf("mds: format %q: store holds filesystem %q: %w", opts.FSName, existing, ErrFormatted)
		}
		t := &mtx{ctx: ctx, kv: tx, k: k, now: now, cache: map[uint64]*inode{}}
		if err := tx.Set(registryKey(opts.FSName), encodeU64(uint64(now))); err != nil {
			return err
		}
		cr := clusterRecord{FSName: opts.FSName, Default: spec, FormatTime: now}
		if err := t.setRecord(k.cluster(), &cr); err != nil {
			return err
		}
		if err := t.setRecord(k.mdt(0), &mdtRecord{Index: 0}); err != nil {
			return err
		}
		if err := tx.Set(k.counter(0), encodeU64(RootIno+1)); err != nil {
			return err
		}
		t.put(&inode{
			Ino: RootIno, Mode: proto.ModeDir | 0o755, Uid: opts.RootUid, Gid: opts.RootGid,
			Nlink: 2, Atime: now, Mtime: now, Ctime: now, Parent: RootIno,
		})
		return t.flush()
	})
	if err != nil {
		return err
	}
	log.Info("mds: formatted filesystem", "fsname", opts.FSName,
		"stripe_count", spec.Components[0].StripeCount, "stripe_size", spec.Components[0].StripeSize)
	return nil
}

func checkFSName(name string) error {
	if name == "" || len(name) > maxFSNameLen {
		return fmt.Errorf("mds: filesystem name %q must have 1 to %d characters", name, maxFSNameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("mds: filesystem name %q: only letters, digits, '-' and '_' allowed", name)
		}
	}
	return nil
}
