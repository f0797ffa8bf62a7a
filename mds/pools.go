package mds

import (
	"context"
	"fmt"
	"slices"
	"syscall"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// OST pools (Lustre's lctl pool_new, pool_add, pool_remove, pool_destroy,
// pool_list). A pool's record (P 'P' name) holds its members; each member's
// OST record names the pool too, which is what the allocator reads. Both
// are written in one transaction, and every change of membership writes the
// pool record, so a destroy (which requires no members) conflicts with an
// add racing it instead of leaving an OST in a pool that no longer exists.

// maxPoolName is the longest pool name, as Lustre's LOV_MAXPOOLNAME.
const maxPoolName = 15

// poolRecord is an OST pool.
type poolRecord struct {
	Members []uint32 `msgpack:"m,omitempty"` // OST indices, sorted
	Created int64    `msgpack:"t"`           // unix nanoseconds
}

// checkPoolName enforces Lustre's rules for pool names: 1 to 15 letters,
// digits, '_' or '-' (a '.' would be read as the fsname separator).
func checkPoolName(name string) error {
	if name == "" || len(name) > maxPoolName {
		return fmt.Errorf("mds: pool name %q: 1 to %d characters: %w", name, maxPoolName, syscall.EINVAL)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("mds: pool name %q: only letters, digits, '_' and '-': %w", name, syscall.EINVAL)
		}
	}
	return nil
}

// Pool serves strata pool: create, add, remove, destroy or list. Changes
// are visible to this MDS's allocator at once and to the others' within a
// heartbeat period, when they read the OST table again.
func (s *Service) Pool(ctx context.Context, req *proto.PoolReq) (*proto.PoolResp, error) {
	if req.Op != proto.PoolList || req.Name != "" {
		if err := checkPoolName(req.Name); err != nil {
			return nil, err
		}
	}
	var err error
	switch req.Op {
	case proto.PoolList:
	case proto.PoolCreate:
		err = s.update(ctx, func(t *mtx) error {
			var rec poolRecord
			if ok, err := t.getRecord(t.k.pool(req.Name), &rec); err != nil || ok {
				return firstErr(err, fmt.Errorf("mds: pool %q: %w", req.Name, syscall.EEXIST))
			}
			return t.setRecord(t.k.pool(req.Name), &poolRecord{Created: t.now})
		})
	case proto.PoolAdd, proto.PoolRemove:
		if len(req.OSTs) == 0 {
			return nil, fmt.Errorf("mds: pool %s %q: no OST named: %w", req.Op, req.Name, syscall.EINVAL)
		}
		err = s.update(ctx, func(t *mtx) error { return t.changeMembers(req.Name, req.OSTs, req.Op == proto.PoolAdd) })
	case proto.PoolDestroy:
		err = s.update(ctx, func(t *mtx) error {
			var rec poolRecord
			ok, err := t.getRecord(t.k.pool(req.Name), &rec)
			switch {
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("mds: pool %q: %w", req.Name, syscall.ENOENT)
			case len(rec.Members) > 0:
				return fmt.Errorf("mds: pool %q still has OSTs %v: remove them first: %w", req.Name, rec.Members, syscall.ENOTEMPTY)
			}
			return t.kv.Delete(t.k.pool(req.Name))
		})
	default:
		return nil, fmt.Errorf("mds: pool operation %q: %w", req.Op, syscall.EINVAL)
	}
	if err != nil {
		return nil, err
	}
	if req.Op != proto.PoolList {
		if err := s.targets.load(ctx, s); err != nil {
			return nil, err
		}
		s.log.Info("mds: pool changed", "op", req.Op, "pool", req.Name, "osts", req.OSTs)
	}
	pools, err := s.pools(ctx)
	if err != nil {
		return nil, err
	}
	if req.Op == proto.PoolList && req.Name != "" {
		pools = slices.DeleteFunc(pools, func(p proto.Pool) bool { return p.Name != req.Name })
		if len(pools) == 0 {
			return nil, fmt.Errorf("mds: pool %q: %w", req.Name, syscall.ENOENT)
		}
	}
	return &proto.PoolResp{Pools: pools}, nil
}

// changeMembers adds OSTs to a pool or removes them from it, in the pool
// record and in the OSTs' records. Adding a member or removing a
// non-member fails (EEXIST, ENOENT) and changes nothing.
func (t *mtx) changeMembers(name string, osts []uint32, add bool) error {
	var rec poolRecord
	ok, err := t.getRecord(t.k.pool(name), &rec)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("mds: pool %q: %w", name, syscall.ENOENT)
	}
	for _, idx := range osts {
		var o ostRecord
		ok, err := t.getRecord(t.k.ost(idx), &o)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("mds: pool %q: no OST %d: %w", name, idx, syscall.ENOENT)
		}
		member := slices.Contains(rec.Members, idx)
		switch {
		case add && member:
			return fmt.Errorf("mds: OST %d is already in pool %q: %w", idx, name, syscall.EEXIST)
		case !add && !member:
			return fmt.Errorf("mds: OST %d is not in pool %q: %w", idx, name, syscall.ENOENT)
		case add:
			rec.Members = append(rec.Members, idx)
			if !slices.Contains(o.Pools, name) {
				o.Pools = append(o.Pools, name)
			}
		default:
			rec.Members = slices.DeleteFunc(rec.Members, func(m uint32) bool { return m == idx })
			o.Pools = slices.DeleteFunc(o.Pools, func(p string) bool { return p == name })
		}
		slices.Sort(o.Pools)
		if err := t.setRecord(t.k.ost(idx), &o); err != nil {
			return err
		}
	}
	slices.Sort(rec.Members)
	return t.setRecord(t.k.pool(name), &rec)
}

// pools reads every pool from the store, in name order.
func (s *Service) pools(ctx context.Context) ([]proto.Pool, error) {
	out := []proto.Pool{}
	err := s.view(ctx, func(t *mtx) error {
		out = out[:0]
		var derr error
		start, end := t.k.poolRange()
		err := t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			name, err := t.k.poolName(k)
			if err != nil {
				derr = err
				return false
			}
			var rec poolRecord
			if derr = decode(v, &rec); derr != nil {
				return false
			}
			out = append(out, proto.Pool{Name: name, OSTs: append([]uint32{}, rec.Members...)})
			return true
		})
		return firstErr(err, derr)
	})
	if err != nil {
		return nil, fmt.Errorf("mds: read pools: %w", err)
	}
	return out, nil
}

// checkSpecPools fails with EINVAL if spec names a pool that does not
// exist: a directory default naming one would fail every create below it.
func (t *mtx) checkSpecPools(spec *layout.Spec) error {
	for _, c := range spec.Components {
		if c.Pool == "" {
			continue
		}
		ok, err := t.getRecord(t.k.pool(c.Pool), &poolRecord{})
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("mds: no pool %q: %w", c.Pool, syscall.EINVAL)
		}
	}
	return nil
}
