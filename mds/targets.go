package mds

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/proto"
)

// activeWindow is how recent an OST's last heartbeat must be for the
// allocator to place new objects on it.
const activeWindow = 10 * time.Second

// statfsBsize is the block size Statfs reports in.
const statfsBsize = 4096

// mdtBytesPerInode estimates the store space one inode takes, for the
// free-inode count of an embedded MDT.
const mdtBytesPerInode = 1024

// ostState is an OST as the MDS knows it: its record and, in memory
// only, its usage and last heartbeat.
type ostState struct {
	rec   ostRecord
	usage proto.OSTAnnounce
	beat  time.Time // when this MDS last saw the OST's heartbeat count move
	seen  uint64    // the heartbeat count it saw then
}

// targetTable holds the OST table and the known MDT indices.
type targetTable struct {
	mu   sync.Mutex
	osts map[uint32]*ostState
	mdts []uint32 // every MDT in the store, sorted
}

// load reads the OST and MDT records from the store, keeping the usage of
// OSTs already known.
func (tt *targetTable) load(ctx context.Context, s *Service) error {
	var osts []ostRecord
	var mdts []uint32
	err := s.db.View(ctx, func(tx kv.Txn) error {
		var derr error
		start, end := s.keys.ostRange()
		err := tx.Scan(ctx, start, end, 0, func(_, v []byte) bool {
			var r ostRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			osts = append(osts, r)
			return true
		})
		if err != nil || derr != nil {
			return fmt.Errorf("mds: read OST table: %w", firstErr(err, derr))
		}
		start, end = s.keys.mdtRange()
		err = tx.Scan(ctx, start, end, 0, func(_, v []byte) bool {
			var r mdtRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			mdts = append(mdts, r.Index)
			return true
		})
		if err != nil || derr != nil {
			return fmt.Errorf("mds: read MDT table: %w", firstErr(err, derr))
		}
		return nil
	})
	if err != nil {
		return err
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.osts == nil {
		tt.osts = map[uint32]*ostState{}
	}
	now := s.now()
	for _, r := range osts {
		st := tt.osts[r.Index]
		if st == nil {
			st = &ostState{seen: r.Beat}
			if r.Addr != "" && r.Beat > 0 {
				// First sight of an OST that heartbeats (to another
				// MDS): presumed alive, as at start.
				st.beat, st.usage = now, r.Usage
			}
			tt.osts[r.Index] = st
		}
		st.rec = r
		if r.Beat != st.seen {
			// Another MDS took a heartbeat since: the OST lives.
			st.seen, st.beat, st.usage = r.Beat, now, r.Usage
		}
	}
	tt.mdts = mdts
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// presumeAlive marks every OST with a known OSS as heard from at now: an
// MDS that just started has had no heartbeat yet, and must not refuse
// creates (ENOSPC) for the seconds until the OSSes' next ones; an OST that
// is really gone drops out after activeWindow like any other.
func (tt *targetTable) presumeAlive(now time.Time) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, st := range tt.osts {
		if st.rec.Addr != "" && st.beat.IsZero() {
			st.beat = now
		}
	}
}

// active reports whether an OST's heartbeat is recent at now.
func (st *ostState) active(now time.Time) bool {
	return !st.beat.IsZero() && now.Sub(st.beat) < activeWindow
}

// list returns the OST table with usage, in index order.
func (tt *targetTable) list(now time.Time) []proto.OST {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make([]proto.OST, 0, len(tt.osts))
	for _, st := range tt.osts {
		out = append(out, proto.OST{
			Index: st.rec.Index, UUID: st.rec.UUID, Addr: st.rec.Addr, Pools: slices.Clone(st.rec.Pools),
			Active: st.active(now), Total: st.usage.Total, Used: st.usage.Used, Avail: st.usage.Avail,
			Files: st.usage.Files, FFree: st.usage.FFree,
		})
	}
	slices.SortFunc(out, func(a, b proto.OST) int { return int(a.Index) - int(b.Index) })
	return out
}

// allocTargets returns the table as the layout allocator sees it.
func (tt *targetTable) allocTargets(now time.Time) []layout.Target {
	osts := tt.list(now)
	out := make([]layout.Target, len(osts))
	for i, o := range osts {
		out[i] = layout.Target{Index: o.Index, Total: o.Total, Avail: o.Avail, Pools: o.Pools, Active: o.Active}
	}
	return out
}

// addr returns the address of the OSS serving ost.
func (tt *targetTable) addr(ost uint32) (string, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	st := tt.osts[ost]
	if st == nil || st.rec.Addr == "" {
		return "", fmt.Errorf("mds: OST %d has no known OSS: %w", ost, syscall.EIO)
	}
	return st.rec.Addr, nil
}

// knownMDTs returns the MDT indices in the store.
func (s *Service) knownMDTs() []uint32 {
	s.targets.mu.Lock()
	defer s.targets.mu.Unlock()
	return slices.Clone(s.targets.mdts)
}

// RegisterOSS records an OSS's OSTs, assigning the next free index to new
// ones (Index -1; an OST already known by UUID keeps its index), and
// returns the indices in request order. An index claimed by another UUID
// fails with EEXIST.
func (s *Service) RegisterOSS(ctx context.Context, req *proto.RegisterOSSReq) (*proto.RegisterOSSResp, error) {
	if req.FSName != s.fs.FSName {
		return nil, fmt.Errorf("mds: OSS %s serves filesystem %q, this is %q: %w", req.Addr, req.FSName, s.fs.FSName, syscall.EINVAL)
	}
	if req.Addr == "" {
		return nil, fmt.Errorf("mds: OSS registration without an address: %w", syscall.EINVAL)
	}
	var recs []ostRecord
	err := s.update(ctx, func(t *mtx) error {
		recs = recs[:0]
		var cr clusterRecord
		if ok, err := t.getRecord(t.k.cluster(), &cr); err != nil || !ok {
			return firstErr(err, ErrNotFormatted)
		}
		known := map[uint32]ostRecord{}
		byUUID := map[string]uint32{}
		var derr error
		start, end := t.k.ostRange()
		err := t.kv.Scan(ctx, start, end, 0, func(_, v []byte) bool {
			var r ostRecord
			if derr = decode(v, &r); derr != nil {
				return false
			}
			known[r.Index] = r
			if r.UUID != "" {
				byUUID[r.UUID] = r.Index
			}
			return true
		})
		if err = firstErr(err, derr); err != nil {
			return err
		}
		seen := map[uint32]bool{}
		for _, a := range req.OSTs {
			idx, err := assignOST(&cr, a, known, byUUID)
			if err != nil {
				return err
			}
			if seen[idx] {
				return fmt.Errorf("mds: OSS %s announces OST %d twice: %w", req.Addr, idx, syscall.EINVAL)
			}
			seen[idx] = true
			r, ok := known[idx]
			if !ok {
				r = ostRecord{Index: idx, UUID: a.UUID, Registered: t.now}
			}
			r.Addr = req.Addr
			known[idx] = r
			if err := t.setRecord(t.k.ost(idx), &r); err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return t.setRecord(t.k.cluster(), &cr)
	})
	if err != nil {
		return nil, err
	}
	resp := &proto.RegisterOSSResp{Indices: make([]uint32, len(recs))}
	s.targets.mu.Lock()
	for i, r := range recs {
		st := s.targets.osts[r.Index]
		if st == nil {
			st = &ostState{}
			s.targets.osts[r.Index] = st
		}
		a := req.OSTs[i]
		a.Index = int64(r.Index)
		// Not active until the OSS heartbeats: it records the index only
		// after this reply, and serves the OST only from then on.
		st.rec, st.usage, st.beat = r, a, time.Time{}
		resp.Indices[i] = r.Index
	}
	s.targets.mu.Unlock()
	s.log.Info("mds: OSS registered", "addr", req.Addr, "osts", resp.Indices)
	return resp, nil
}

// assignOST returns the index an announced OST gets, advancing the
// cluster record's next index past it.
func assignOST(cr *clusterRecord, a proto.OSTAnnounce, known map[uint32]ostRecord, byUUID map[string]uint32) (uint32, error) {
	if a.Index < 0 {
		if idx, ok := byUUID[a.UUID]; ok && a.UUID != "" {
			return idx, nil
		}
		idx := cr.NextOST
		for _, taken := known[idx]; taken; _, taken = known[idx] {
			idx++
		}
		cr.NextOST = idx + 1
		return idx, nil
	}
	if a.Index > int64(^uint32(0)) {
		return 0, fmt.Errorf("mds: OST index %d out of range: %w", a.Index, syscall.EINVAL)
	}
	idx := uint32(a.Index)
	if r, ok := known[idx]; ok && r.UUID != "" && a.UUID != "" && r.UUID != a.UUID {
		return 0, fmt.Errorf("mds: OST %d is %s, not %s: %w", idx, r.UUID, a.UUID, syscall.EEXIST)
	}
	cr.NextOST = max(cr.NextOST, idx+1)
	return idx, nil
}

// OSSHeartbeat records an OSS's liveness and its OSTs' usage, here and in
// the store for the other MDSes. An OST the MDS does not know fails with
// ENOENT: the OSS must register again.
func (s *Service) OSSHeartbeat(ctx context.Context, req *proto.OSSHeartbeatReq) error {
	for reloaded := false; ; reloaded = true {
		missing := s.heartbeat(req)
		if missing < 0 {
			return s.recordHeartbeat(ctx, req)
		}
		if reloaded {
			return fmt.Errorf("mds: heartbeat from %s for unknown OST %d: register again: %w", req.Addr, missing, syscall.ENOENT)
		}
		// Another MDS may have registered it: read the table again.
		if err := s.targets.load(ctx, s); err != nil {
			return err
		}
	}
}

// heartbeat applies a heartbeat to the in-memory table. It returns the
// first unknown OST index, or -1 if all were known.
func (s *Service) heartbeat(req *proto.OSSHeartbeatReq) int64 {
	now := s.now()
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, a := range req.OSTs {
		if a.Index < 0 || a.Index > int64(^uint32(0)) || tt.osts[uint32(a.Index)] == nil {
			return a.Index
		}
	}
	for _, a := range req.OSTs {
		st := tt.osts[uint32(a.Index)]
		st.usage, st.beat = a, now
	}
	return -1
}

// recordHeartbeat advances the heartbeat count and usage of the OSTs of a
// heartbeat in the store.
func (s *Service) recordHeartbeat(ctx context.Context, req *proto.OSSHeartbeatReq) error {
	err := s.update(ctx, func(t *mtx) error {
		for _, a := range req.OSTs {
			var r ostRecord
			ok, err := t.getRecord(t.k.ost(uint32(a.Index)), &r)
			if err != nil || !ok {
				return err
			}
			r.Beat++
			r.Usage = a
			if err := t.setRecord(t.k.ost(uint32(a.Index)), &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mds: record heartbeat of %s: %w", req.Addr, err)
	}
	s.targets.mu.Lock()
	for _, a := range req.OSTs {
		if st := s.targets.osts[uint32(a.Index)]; st != nil {
			st.seen++ // this MDS's own write: already counted as a beat
		}
	}
	s.targets.mu.Unlock()
	return nil
}

// runOSTWatch reads the OST table from the store every heartbeat period,
// so that OSTs whose OSSes heartbeat to another MDS count as alive here.
func (s *Service) runOSTWatch(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.targets.load(ctx, s); err != nil && ctx.Err() == nil {
			s.log.Warn("mds: read the OST table", "err", err)
		}
	}
}

// Targets lists every OST and MDT with its usage.
func (s *Service) Targets(ctx context.Context, _ *proto.TargetsReq) (*proto.TargetsResp, error) {
	mdts, err := s.mdtUsage(ctx)
	if err != nil {
		return nil, err
	}
	table, err := s.mdtTable(ctx)
	if err != nil {
		return nil, err
	}
	for i := range mdts {
		for _, m := range table {
			if m.Index == mdts[i].Index {
				mdts[i].Owner = m
			}
		}
	}
	pools, err := s.pools(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.TargetsResp{FSName: s.fs.FSName, OSTs: s.targets.list(s.now()), MDTs: mdts, Pools: pools}, nil
}

// Statfs sums the OSTs' space and the MDTs' inodes.
func (s *Service) Statfs(ctx context.Context, _ *proto.StatfsReq) (*proto.StatfsResp, error) {
	mdts, err := s.mdtUsage(ctx)
	if err != nil {
		return nil, err
	}
	resp := &proto.StatfsResp{Bsize: statfsBsize}
	for _, o := range s.targets.list(s.now()) {
		resp.Blocks += o.Total / statfsBsize
		resp.Bfree += (o.Total - min(o.Used, o.Total)) / statfsBsize
		resp.Bavail += o.Avail / statfsBsize
	}
	for _, m := range mdts {
		resp.Files += m.Files
		resp.Ffree += m.FFree
	}
	return resp, nil
}

// mdtUsage estimates each MDT's usage: inodes used from its inode counter
// (numbers handed out, an upper bound), space from the embedded store's
// filesystem when there is one.
func (s *Service) mdtUsage(ctx context.Context) ([]proto.MDTUsage, error) {
	mdts := s.knownMDTs()
	used := make([]uint64, len(mdts))
	err := s.db.View(ctx, func(tx kv.Txn) error {
		for i, m := range mdts {
			b, err := tx.Get(ctx, s.keys.counter(m))
			if err != nil {
				return err
			}
			if b != nil {
				next, err := decodeU64(b)
				if err != nil {
					return err
				}
				used[i] = next - 1
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mds: read inode counters: %w", err)
	}
	var total, free, avail uint64
	if s.kvDir != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(s.kvDir, &st); err == nil {
			bs := uint64(st.Bsize)
			total, free, avail = st.Blocks*bs, st.Bfree*bs, st.Bavail*bs
		}
	}
	out := make([]proto.MDTUsage, len(mdts))
	for i, m := range mdts {
		ffree := uint64(inoSeqMask) - used[i]
		if s.kvDir != "" {
			// MDTs of one embedded store share its filesystem.
			ffree = avail / mdtBytesPerInode / uint64(len(mdts))
		}
		out[i] = proto.MDTUsage{Index: m, Total: total, Used: total - free, Avail: avail,
			Files: used[i] + ffree, FFree: ffree}
	}
	return out, nil
}

// registerMDTs makes sure the MDTs this service serves have records.
func (s *Service) registerMDTs(ctx context.Context, mdts []uint32) error {
	for _, m := range mdts {
		if m > maxMDT {
			return fmt.Errorf("mds: MDT index %d out of range (max %d)", m, maxMDT)
		}
	}
	return s.update(ctx, func(t *mtx) error {
		for _, m := range mdts {
			var r mdtRecord
			ok, err := t.getRecord(t.k.mdt(m), &r)
			if err != nil {
				return err
			}
			if !ok {
				if err := t.setRecord(t.k.mdt(m), &mdtRecord{Index: m}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// setMDTAddr records addr as the address of this MDS and writes it into
// the records of the MDTs it owns.
func (s *Service) setMDTAddr(ctx context.Context, addr string) error {
	s.own.mu.Lock()
	s.own.addr = addr
	s.own.mu.Unlock()
	owned := s.ownedMDTs()
	return s.update(ctx, func(t *mtx) error {
		for _, m := range owned {
			var r mdtRecord
			if _, err := t.getRecord(t.k.mdt(m), &r); err != nil {
				return err
			}
			if r.Owner != s.instance {
				continue
			}
			r.Index, r.Addr = m, addr
			if err := t.setRecord(t.k.mdt(m), &r); err != nil {
				return err
			}
		}
		return nil
	})
}

// mdtTable reads the MDT table: each MDT's owner and its state.
func (s *Service) mdtTable(ctx context.Context) ([]proto.MDT, error) {
	recs, err := s.mdtRecords(ctx)
	if err != nil {
		return nil, err
	}
	now, err := s.clockNow(ctx)
	if err != nil {
		return nil, err
	}
	clock := s.db.Engine.(kv.Clock)
	out := make([]proto.MDT, 0, len(recs))
	for _, r := range recs {
		m := proto.MDT{Index: r.Index, Addr: r.Addr, Owner: r.Owner, Epoch: r.Epoch}
		// The lease left, in milliseconds: the clock's units per
		// millisecond come from Add.
		perMs := clock.Add(0, time.Millisecond)
		if r.Lease >= now {
			m.LeaseMillis = int64((r.Lease - now) / max(perMs, 1))
		} else {
			m.LeaseMillis = -int64((now - r.Lease) / max(perMs, 1))
		}
		switch {
		case r.Owner == 0 || r.Lease < now:
			m.State = "down"
		case r.Owner == s.instance && s.recovering():
			m.State = "recovering"
		default:
			m.State = "serving"
		}
		out = append(out, m)
	}
	return out, nil
}

// MDTTable answers OpMDTTable from the store, whichever MDTs this MDS owns.
func (s *Service) MDTTable(ctx context.Context, _ *proto.MDTTableReq) (*proto.MDTTableResp, error) {
	mdts, err := s.mdtTable(ctx)
	if err != nil {
		return nil, err
	}
	return &proto.MDTTableResp{MDTs: mdts}, nil
}
