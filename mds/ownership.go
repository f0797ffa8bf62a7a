package mds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// MDT ownership. Each MDT is served by one MDS at a time, its owner, named
// in the MDT's record in the store with an epoch (bumped by every change of
// owner) and a lease, a timestamp of the store's clock (kv.Clock: TiKV's
// TSO, or the one process's clock of an embedded store), so that no host's
// wall clock is compared with another's. The owner renews the lease every
// third of it. Any MDS may take over an MDT whose lease has run out (or
// that nobody owns): it writes itself in as owner with the next epoch.
//
// Fencing: every transaction of an MDS is bounded by the lease of the MDTs
// it owns (kv.Bounded): a commit whose timestamp is past it fails with
// kv.ErrFenced. An owner that pauses past its lease, and may have been
// replaced meanwhile, therefore commits nothing when it resumes; the
// takeover never overlaps a valid lease. Its renewal then finds another
// owner in the record, and it steps down.
//
// An MDS restarted on the address its MDT record names takes its MDTs back
// at once: its predecessor cannot hold that address any more.

// DefaultMDTLease is the MDT ownership lease when none is configured.
const DefaultMDTLease = 10 * time.Second

// ErrNotOwner means a request reached an MDS that does not serve the MDT
// it is for (EREMOTE on the wire): the client learns the MDT table again
// and resends.
var ErrNotOwner = errors.New("mds: this MDS does not serve the MDT")

// ownedMDT is an MDT this service owns.
type ownedMDT struct {
	epoch uint64
	lease uint64 // store timestamp the lease runs to
}

// ownership is what this service owns and wants.
type ownership struct {
	mu    sync.Mutex
	owned map[uint32]ownedMDT
	want  []uint32 // MDTs to serve; empty: a standby, serving what it takes over
	addr  string   // the address it serves at, written into its records
	// gaveUp holds the MDTs this service handed off: it does not take
	// them back.
	gaveUp map[uint32]bool
}

// owns reports whether this service owns mdt.
func (s *Service) owns(mdt uint32) bool {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	_, ok := s.own.owned[mdt]
	return ok
}

// ownedMDTs lists the MDTs this service owns, sorted.
func (s *Service) ownedMDTs() []uint32 {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	out := make([]uint32, 0, len(s.own.owned))
	for m := range s.own.owned {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// leaseBound is the bound of every commit of this service: the earliest
// lease of the MDTs it owns (none: no bound).
func (s *Service) leaseBound() (uint64, bool) {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	var bound uint64
	for _, o := range s.own.owned {
		if bound == 0 || o.lease < bound {
			bound = o.lease
		}
	}
	return bound, bound != 0
}

// clockNow reads the store's clock.
func (s *Service) clockNow(ctx context.Context) (uint64, error) {
	c, ok := s.db.Engine.(kv.Clock)
	if !ok {
		return 0, fmt.Errorf("mds: store engine %T has no clock for MDT leases", s.db.Engine)
	}
	return c.Now(ctx)
}

// leaseEnd is now plus the MDT lease, in the store's clock.
func (s *Service) leaseEnd(now uint64) uint64 {
	return s.db.Engine.(kv.Clock).Add(now, s.mdtLease)
}

// acquire takes over the MDTs of want that are free: unowned, their lease
// run out, or named at this service's own address (its predecessor's). It
// returns the MDTs it took, each with its epoch.
func (s *Service) acquire(ctx context.Context, want []uint32) ([]uint32, error) {
	now, err := s.clockNow(ctx)
	if err != nil {
		return nil, err
	}
	s.own.mu.Lock()
	addr := s.own.addr
	s.own.mu.Unlock()
	var took []uint32
	taken := map[uint32]ownedMDT{}
	err = s.db.Update(ctx, func(tx kv.Txn) error {
		t := s.newMtx(ctx, tx)
		took, taken = took[:0], map[uint32]ownedMDT{}
		for _, m := range want {
			if s.owns(m) {
				continue
			}
			var r mdtRecord
			ok, err := t.getRecord(t.k.mdt(m), &r)
			if err != nil {
				return err
			}
			if !ok {
				r = mdtRecord{Index: m}
			}
			free := r.Owner == 0 || r.Lease < now || r.Addr != "" && r.Addr == addr
			if !free {
				continue
			}
			prev := r.Owner
			r.Owner, r.Epoch, r.Lease = s.instance, r.Epoch+1, s.leaseEnd(now)
			if addr != "" {
				r.Addr = addr
			}
			if err := t.setRecord(t.k.mdt(m), &r); err != nil {
				return err
			}
			took = append(took, m)
			taken[m] = ownedMDT{epoch: r.Epoch, lease: r.Lease}
			if prev != 0 && prev != s.instance {
				s.log.Info("mds: taking over MDT", "mdt", m, "epoch", r.Epoch, "previous_owner", fmt.Sprintf("%#x", prev))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mds: take over MDTs %v: %w", want, err)
	}
	s.own.mu.Lock()
	for m, o := range taken {
		s.own.owned[m] = o
	}
	s.own.mu.Unlock()
	return took, nil
}

// renewLeases extends the lease of every MDT this service owns and drops
// the ones another MDS has taken (after this one's lease ran out).
func (s *Service) renewLeases(ctx context.Context) error {
	owned := s.ownedMDTs()
	if len(owned) == 0 {
		return nil
	}
	now, err := s.clockNow(ctx)
	if err != nil {
		return err
	}
	var lost []uint32
	renewed := map[uint32]ownedMDT{}
	err = s.db.Update(ctx, func(tx kv.Txn) error {
		t := s.newMtx(ctx, tx)
		lost, renewed = lost[:0], map[uint32]ownedMDT{}
		for _, m := range owned {
			var r mdtRecord
			if _, err := t.getRecord(t.k.mdt(m), &r); err != nil {
				return err
			}
			s.own.mu.Lock()
			mine := s.own.owned[m]
			s.own.mu.Unlock()
			if r.Owner != s.instance || r.Epoch != mine.epoch {
				lost = append(lost, m)
				continue
			}
			r.Lease = s.leaseEnd(now)
			if err := t.setRecord(t.k.mdt(m), &r); err != nil {
				return err
			}
			renewed[m] = ownedMDT{epoch: r.Epoch, lease: r.Lease}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mds: renew MDT leases: %w", err)
	}
	s.own.mu.Lock()
	for m, o := range renewed {
		s.own.owned[m] = o
	}
	for _, m := range lost {
		delete(s.own.owned, m)
	}
	s.own.mu.Unlock()
	for _, m := range lost {
		s.log.Warn("mds: lost MDT to another MDS (this one's lease ran out); no longer serving it", "mdt", m)
	}
	return nil
}

// takeOverDead takes the MDTs whose owner's lease ran out: those this
// service wants, and, as a standby (wanting none), any. A takeover opens a
// recovery window for the MDT's clients.
func (s *Service) takeOverDead(ctx context.Context) error {
	table, err := s.mdtRecords(ctx)
	if err != nil {
		return err
	}
	s.own.mu.Lock()
	want := slices.Clone(s.own.want)
	s.own.mu.Unlock()
	var candidates []uint32
	s.own.mu.Lock()
	for _, r := range table {
		if (len(want) == 0 || slices.Contains(want, r.Index)) && !s.own.gaveUp[r.Index] {
			candidates = append(candidates, r.Index)
		}
	}
	s.own.mu.Unlock()
	took, err := s.acquire(ctx, candidates)
	if err != nil || len(took) == 0 {
		return err
	}
	s.log.Info("mds: now serving MDTs", "took", took, "serving", s.ownedMDTs())
	return s.recoverMDTs(ctx, took)
}

// mdtRecords reads every MDT record.
func (s *Service) mdtRecords(ctx context.Context) ([]mdtRecord, error) {
	var out []mdtRecord
	err := s.db.View(ctx, func(tx kv.Txn) error {
		var derr error
		start, end := s.keys.mdtRange()
		err := tx.Scan(ctx, start, end, 0, func(_, v []byte) bool {
			var r mdtRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			out = append(out, r)
			return true
		})
		return firstErr(err, derr)
	})
	if err != nil {
		return nil, fmt.Errorf("mds: read MDT table: %w", err)
	}
	return out, nil
}

// runLeases renews this service's MDT leases and takes over dead MDTs,
// every third of a lease, until ctx ends.
func (s *Service) runLeases(ctx context.Context) {
	tick := time.NewTicker(max(s.mdtLease/3, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.renewLeases(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("mds: renew MDT leases", "err", err)
		}
		if err := s.takeOverDead(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("mds: take over MDTs", "err", err)
		}
	}
}

// HandOff gives up an MDT (a planned move, for an upgrade): its lease is
// ended in the store, and another MDS takes it over at its next scan.
func (s *Service) HandOff(ctx context.Context, req *proto.HandOffReq) error {
	if !s.owns(req.MDT) {
		return fmt.Errorf("mds: hand off MDT %d: %w", req.MDT, ErrNotOwner)
	}
	s.own.mu.Lock()
	mine := s.own.owned[req.MDT]
	delete(s.own.owned, req.MDT)
	s.own.want = slices.DeleteFunc(s.own.want, func(m uint32) bool { return m == req.MDT })
	s.own.gaveUp[req.MDT] = true
	s.own.mu.Unlock()
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		t := s.newMtx(ctx, tx)
		var r mdtRecord
		if _, err := t.getRecord(t.k.mdt(req.MDT), &r); err != nil {
			return err
		}
		if r.Owner != s.instance || r.Epoch != mine.epoch {
			return nil
		}
		r.Owner, r.Lease = 0, 0
		return t.setRecord(t.k.mdt(req.MDT), &r)
	})
	if err != nil {
		return fmt.Errorf("mds: hand off MDT %d: %w", req.MDT, err)
	}
	s.log.Info("mds: handed MDT off", "mdt", req.MDT)
	return nil
}
