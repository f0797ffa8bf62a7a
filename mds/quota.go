package mds

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// Quotas (see proto/quota.go). Usage is kept in counters sharded by inode
// number (P 'u' type id shard), so creates by one user do not all write one
// key; a transaction adjusts them from what it changed, in flush: the
// inodes it made, removed, chowned, moved to another project or resized,
// compared with what it read. So usage changes with the change that causes
// it, also across a crash.
//
// The hard inode limit holds exactly, by escrow over the shards
// (quota_escrow.go): each shard holds a share of it, and a create that
// finds its shard's share used up shares out the rest again, writing every
// shard. Soft limits start a grace period (read from the limit record,
// P 'q' type id, where usage grows). Bytes are counted from the sizes
// writers report, and the MDS enforces the block limits where it hands
// bytes out (a grant to a writer, an append), an operation near the hard
// block limit writing the limit record so that two racing conflict
// (snapshot isolation protects nothing a transaction only reads); the
// overshoot is what writers were granted and have not reported yet, at
// most proto.QuotaUnit and the write under way per file being written. A
// truncate that grows a file allocates nothing and is not refused, though
// its size counts.

// Quota tuning.
const (
	quotaShards   = 16
	quotaGrace    = 7 * 24 * time.Hour // Lustre's default grace period
	quotaLimitTTL = time.Second        // how long an MDS trusts that an ID has no limits
)

// quotaUsage is one shard of an ID's usage. Ops counts the changes, so
// fsck can tell whether an ID changed while it counted.
type quotaUsage struct {
	Inodes int64  `msgpack:"n,omitempty"`
	Bytes  int64  `msgpack:"b,omitempty"`
	Ops    uint64 `msgpack:"o,omitempty"`
	// Capped says the ID has a hard inode limit, of which this shard
	// holds Cap (quota_escrow.go).
	Capped bool  `msgpack:"c,omitempty"`
	Cap    int64 `msgpack:"C,omitempty"`
}

// quotaLimit is an ID's limits record.
type quotaLimit struct {
	proto.QuotaLimits
	// Seq is bumped by every operation near a limit, which makes them
	// conflict.
	Seq uint64 `msgpack:"q,omitempty"`
}

// quotaID names one ID of one type.
type quotaID struct {
	typ uint8
	id  uint32
}

// quotaKeyOf is what an inode counts under: its owner, group and project,
// whether it counts at all, and its bytes.
type quotaKeyOf struct {
	ok             bool
	uid, gid, proj uint32
	bytes          int64
}

func quotaOf(in *inode) quotaKeyOf {
	if in == nil {
		return quotaKeyOf{}
	}
	q := quotaKeyOf{ok: true, uid: in.Uid, gid: in.Gid, proj: in.Project}
	if in.isRegular() {
		q.bytes = int64(in.Size)
	}
	return q
}

// ids lists the IDs an inode counts under.
func (q quotaKeyOf) ids() [3]quotaID {
	return [3]quotaID{{proto.QuotaUser, q.uid}, {proto.QuotaGroup, q.gid}, {proto.QuotaProject, q.proj}}
}

// quotaDelta is a change of one ID's usage in one shard.
type quotaDelta struct {
	inodes, bytes int64
}

// noteQuota remembers what an inode read from the store counted under.
func (t *mtx) noteQuota(in *inode) {
	if t.quotaBefore == nil {
		t.quotaBefore = map[uint64]quotaKeyOf{}
	}
	if _, ok := t.quotaBefore[in.Ino]; !ok {
		t.quotaBefore[in.Ino] = quotaOf(in)
	}
}

// quotaFlush adjusts the usage counters for what t changed, checking the
// limits where usage grows. Call from flush.
func (t *mtx) quotaFlush() error {
	deltas := map[quotaID]map[uint8]*quotaDelta{}
	add := func(q quotaKeyOf, ino uint64, sign int64) {
		if !q.ok {
			return
		}
		shard := uint8(ino % quotaShards)
		for _, id := range q.ids() {
			m := deltas[id]
			if m == nil {
				m = map[uint8]*quotaDelta{}
				deltas[id] = m
			}
			d := m[shard]
			if d == nil {
				d = &quotaDelta{}
				m[shard] = d
			}
			d.inodes += sign
			d.bytes += sign * q.bytes
		}
	}
	change := func(ino uint64, after quotaKeyOf) {
		before := t.quotaBefore[ino]
		if before == after {
			return
		}
		add(before, ino, -1)
		add(after, ino, +1)
	}
	for _, ino := range t.dirty {
		change(ino, quotaOf(t.cache[ino]))
	}
	for _, ino := range t.gone {
		change(ino, quotaKeyOf{})
	}
	for id, shards := range deltas {
		var grow quotaDelta
		for _, d := range shards {
			grow.inodes += d.inodes
			grow.bytes += d.bytes
		}
		if grow.inodes == 0 && grow.bytes == 0 {
			continue
		}
		if err := t.quotaCheck(id, grow); err != nil {
			return err
		}
		if err := t.quotaApply(id, shards); err != nil {
			return err
		}
	}
	return nil
}

// quotaCheck applies id's soft limits, and its hard block limit, to a
// change of its usage by d (the hard inode limit is the shards' escrow,
// quotaApply): growth past the hard limit, or past a soft one whose grace
// has run out, fails with EDQUOT (inodes always; bytes only where the MDS
// takes them, t.quotaBytes); the grace starts when usage first passes a
// soft limit and ends when it drops below it.
func (t *mtx) quotaCheck(id quotaID, d quotaDelta) error {
	if !t.quotaLimited(id) {
		return nil
	}
	var lim quotaLimit
	ok, err := t.getRecord(t.k.quotaLimit(id.typ, id.id), &lim)
	if err != nil || !ok {
		return err
	}
	use, err := t.quotaUsageOf(id)
	if err != nil {
		return err
	}
	touch := false
	check := func(used, delta int64, soft, hard uint64, grace *int64, enforce bool, what string) error {
		after := used + delta
		switch {
		case delta > 0 && enforce && hard > 0 && after > int64(hard) && what == "block":
			return fmt.Errorf("mds: %s quota of %s %d: %d over the hard limit %d: %w", what, quotaTypeName(id.typ), id.id, after, hard, syscall.EDQUOT)
		case soft > 0 && after > int64(soft) && *grace == 0:
			*grace, touch = t.now+int64(quotaGrace), true
		case delta > 0 && enforce && soft > 0 && after > int64(soft) && t.now > *grace:
			return fmt.Errorf("mds: %s quota of %s %d: over the soft limit %d past its grace: %w", what, quotaTypeName(id.typ), id.id, soft, syscall.EDQUOT)
		case (soft == 0 || after <= int64(soft)) && *grace != 0:
			*grace, touch = 0, true
		}
		if what == "block" && hard > 0 && after+proto.QuotaUnit >= int64(hard) {
			// Near the block limit: conflict with every other change
			// near it, which keeps grants from racing past it.
			touch = true
		}
		return nil
	}
	if err := check(use.Inodes, d.inodes, lim.InodeSoft, lim.InodeHard, &lim.InodeGrace, true, "inode"); err != nil {
		return err
	}
	if err := check(use.Bytes, d.bytes, lim.BlockSoft, lim.BlockHard, &lim.BlockGrace, t.quotaBytes, "block"); err != nil {
		return err
	}
	if !touch {
		return nil
	}
	lim.Seq++
	return t.setRecord(t.k.quotaLimit(id.typ, id.id), &lim)
}

// quotaUsageOf sums an ID's shards.
func (t *mtx) quotaUsageOf(id quotaID) (quotaUsage, error) {
	var sum quotaUsage
	var derr error
	start, end := t.k.quotaUsageRange(id.typ, id.id)
	err := t.kv.Scan(t.ctx, start, end, 0, func(_, v []byte) bool {
		var u quotaUsage
		if derr = decode(v, &u); derr != nil {
			return false
		}
		sum.Inodes += u.Inodes
		sum.Bytes += u.Bytes
		sum.Ops += u.Ops
		return true
	})
	if err = firstErr(err, derr); err != nil {
		return quotaUsage{}, fmt.Errorf("mds: read the usage of %s %d: %w", quotaTypeName(id.typ), id.id, err)
	}
	return sum, nil
}

func quotaTypeName(typ uint8) string {
	switch typ {
	case proto.QuotaUser:
		return "user"
	case proto.QuotaGroup:
		return "group"
	}
	return "project"
}

// quotaLimited reports whether id may have limits: the service's cache of
// IDs known to have none, refreshed every quotaLimitTTL, spares the read of
// a limit record for each ID of every create.
func (t *mtx) quotaLimited(id quotaID) bool {
	if t.quotaCache == nil {
		return true
	}
	return t.quotaCache.limited(t, id)
}

// noLimits remembers which IDs have no limits.
type noLimits struct {
	mu   sync.Mutex
	none map[quotaID]time.Time // when the absence was seen
}

// limited reports whether id has a limit record (or may have one).
func (c *noLimits) limited(t *mtx, id quotaID) bool {
	now := time.Unix(0, t.now)
	c.mu.Lock()
	seen, ok := c.none[id]
	c.mu.Unlock()
	if ok && now.Sub(seen) < quotaLimitTTL {
		return false
	}
	var lim quotaLimit
	found, err := t.getRecord(t.k.quotaLimit(id.typ, id.id), &lim)
	if err != nil || found {
		return true
	}
	c.mu.Lock()
	if c.none == nil || len(c.none) > 1<<16 {
		c.none = map[quotaID]time.Time{}
	}
	c.none[id] = now
	c.mu.Unlock()
	return false
}

// forget drops what the cache knows of id (its limits were just set).
func (c *noLimits) forget(id quotaID) {
	c.mu.Lock()
	delete(c.none, id)
	c.mu.Unlock()
}

// SetQuota sets an ID's limits (root only).
func (s *Service) SetQuota(ctx context.Context, req *proto.SetQuotaReq) (*proto.QuotaResp, error) {
	if req.Cred.Uid != 0 {
		return nil, fmt.Errorf("mds: setquota by uid %d: %w", req.Cred.Uid, syscall.EPERM)
	}
	if req.Type > proto.QuotaProject {
		return nil, fmt.Errorf("mds: setquota type %d: %w", req.Type, syscall.EINVAL)
	}
	id := quotaID{req.Type, req.ID}
	err := s.update(ctx, func(t *mtx) error {
		var lim quotaLimit
		if _, err := t.getRecord(t.k.quotaLimit(req.Type, req.ID), &lim); err != nil {
			return err
		}
		l, v := &req.Limits, req.Valid
		if v&proto.SetBlockSoft != 0 {
			lim.BlockSoft = l.BlockSoft
		}
		if v&proto.SetBlockHard != 0 {
			lim.BlockHard = l.BlockHard
		}
		if v&proto.SetInodeSoft != 0 {
			lim.InodeSoft = l.InodeSoft
		}
		if v&proto.SetInodeHard != 0 {
			lim.InodeHard = l.InodeHard
		}
		if v&proto.SetInodeHard != 0 {
			if err := t.quotaEscrow(id, lim.InodeHard); err != nil {
				return err
			}
		}
		use, err := t.quotaUsageOf(id)
		if err != nil {
			return err
		}
		// The grace starts now for an ID already past a new soft limit.
		lim.BlockGrace = restartGrace(lim.BlockGrace, use.Bytes, lim.BlockSoft, t.now)
		lim.InodeGrace = restartGrace(lim.InodeGrace, use.Inodes, lim.InodeSoft, t.now)
		lim.Seq++
		if lim.QuotaLimits == (proto.QuotaLimits{}) {
			return t.kv.Delete(t.k.quotaLimit(req.Type, req.ID))
		}
		return t.setRecord(t.k.quotaLimit(req.Type, req.ID), &lim)
	})
	if err != nil {
		return nil, err
	}
	s.quota.forget(id)
	s.log.Info("mds: quota set", "type", quotaTypeName(req.Type), "id", req.ID, "limits", req.Limits)
	return s.Quota(ctx, &proto.QuotaReq{Cred: req.Cred, Type: req.Type, ID: req.ID})
}

// restartGrace is the grace deadline of a usage against a soft limit.
func restartGrace(grace, used int64, soft uint64, now int64) int64 {
	switch {
	case soft == 0 || used <= int64(soft):
		return 0
	case grace == 0:
		return now + int64(quotaGrace)
	}
	return grace
}

// Quota reports an ID's usage and limits. A user may ask about itself, its
// groups and any project; root about anyone.
func (s *Service) Quota(ctx context.Context, req *proto.QuotaReq) (*proto.QuotaResp, error) {
	c := &req.Cred
	switch {
	case c.Uid == 0, req.Type == proto.QuotaProject:
	case req.Type == proto.QuotaUser && req.ID == c.Uid:
	case req.Type == proto.QuotaGroup && inGroup(c, req.ID):
	default:
		return nil, fmt.Errorf("mds: quota of %s %d asked by uid %d: %w", quotaTypeName(req.Type), req.ID, c.Uid, syscall.EPERM)
	}
	resp := &proto.QuotaResp{Type: req.Type, ID: req.ID}
	err := s.view(ctx, func(t *mtx) error {
		var lim quotaLimit
		if _, err := t.getRecord(t.k.quotaLimit(req.Type, req.ID), &lim); err != nil {
			return err
		}
		use, err := t.quotaUsageOf(quotaID{req.Type, req.ID})
		if err != nil {
			return err
		}
		resp.Bytes, resp.Inodes, resp.Limits = use.Bytes, use.Inodes, lim.QuotaLimits
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// QuotaGrant lets a writer extend a file whose IDs have block limits: to
// the end asked for plus up to a qunit, if the IDs' usage plus the growth
// stays within their limits (EDQUOT otherwise). It records nothing: the
// file's size, and so the usage, grows when the writer reports it.
func (s *Service) QuotaGrant(ctx context.Context, req *proto.QuotaGrantReq) (*proto.QuotaGrantResp, error) {
	h, err := s.open.get(req.Handle, req.Ino)
	if err != nil {
		return nil, err
	}
	if h.rights&proto.RightWrite == 0 || req.Session != 0 && h.session != req.Session {
		return nil, fmt.Errorf("mds: quota grant through handle %#x: %w", req.Handle, syscall.EBADF)
	}
	var resp proto.QuotaGrantResp
	err = s.updateInode(ctx, req.Ino, func(t *mtx) error {
		in, err := t.inodeAttrs(req.Ino)
		if err != nil {
			return err
		}
		t.quotaBytes = true
		resp.End = 0
		for _, try := range []uint64{req.End + proto.QuotaUnit, req.End} {
			grow := int64(try) - int64(in.Size)
			if grow <= 0 {
				resp.End = try
				return nil
			}
			err := t.quotaGrow(quotaOf(in), grow)
			if err == nil {
				resp.End = try
				return nil
			}
			if !isErrno(err, syscall.EDQUOT) || try == req.End {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// quotaGrow checks that the IDs of q may grow by bytes.
func (t *mtx) quotaGrow(q quotaKeyOf, bytes int64) error {
	for _, id := range q.ids() {
		if err := t.quotaCheck(id, quotaDelta{bytes: bytes}); err != nil {
			return err
		}
	}
	return nil
}

// flagQuota sets proto.AttrFlagQuota in the attributes an open of in for
// writing returns, if its IDs have block limits: its writers then ask for
// room before they extend it.
func (t *mtx) flagQuota(in *inode, a *proto.Attr) error {
	for _, id := range quotaOf(in).ids() {
		if !t.quotaLimited(id) {
			continue
		}
		var lim quotaLimit
		ok, err := t.getRecord(t.k.quotaLimit(id.typ, id.id), &lim)
		if err != nil {
			return err
		}
		if ok && (lim.BlockHard > 0 || lim.BlockSoft > 0) {
			a.Flags |= proto.AttrFlagQuota
			return nil
		}
	}
	return nil
}

// Project reads or sets an inode's project ID and inherit flag.
func (s *Service) Project(ctx context.Context, req *proto.ProjectReq) (*proto.ProjectResp, error) {
	var resp proto.ProjectResp
	body := func(t *mtx) error {
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		if (req.SetID || req.SetInherit) && !isOwner(&req.Cred, in) {
			return fmt.Errorf("mds: project of %#x set by uid %d: %w", in.Ino, req.Cred.Uid, syscall.EPERM)
		}
		if req.SetInherit && !in.isDir() {
			return fmt.Errorf("mds: project inherit flag on non-directory %#x: %w", in.Ino, syscall.ENOTDIR)
		}
		if req.SetID && req.Project != in.Project {
			in.Project = req.Project
			t.changed(in)
			t.changelog(&req.Cred, proto.ChangelogSetattr, in.Ino, 0, "")
		}
		if req.SetInherit && req.Inherit != in.ProjInherit {
			in.ProjInherit = req.Inherit
			t.changed(in)
		}
		resp = proto.ProjectResp{Project: in.Project, Inherit: in.ProjInherit}
		return nil
	}
	var err error
	if req.SetID || req.SetInherit {
		err = s.updateInode(ctx, req.Ino, body)
	} else {
		err = s.view(ctx, body)
	}
	if err != nil {
		return nil, err
	}
	return &resp, nil
}
