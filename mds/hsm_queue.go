package mds

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// The coordinator. Agents (copytools) register and claim queued actions
// from the MDS that owns MDT0, which also watches the running ones: an
// action whose agent stopped reporting for hsmTimeout goes back to the
// queue for another agent. What an action needs of its file (a layout, a
// capability) and its end are asked of the MDS that owns the file, whose
// transactions write the file's inode. Nothing of it is kept only in
// memory but the wake-ups of waiters.

// DefaultHsmTimeout is how long a running action may go without a progress
// report before the coordinator hands it to another agent.
const DefaultHsmTimeout = 30 * time.Second

// hsmClaimMax bounds the actions one claim takes.
const hsmClaimMax = 64

// errNoWork ends a claim's transaction that found nothing to claim.
var errNoWork = errors.New("mds: no hsm action to claim")

// hsmCoordinator is the in-memory part of HSM at one MDS: wake-ups of
// requests waiting for actions, of agents waiting for work, and the
// liveness clocks of running actions.
type hsmCoordinator struct {
	mu      sync.Mutex
	waiters map[uint64]chan struct{} // closed when the file's action finishes here
	work    chan struct{}            // closed when an action is queued here
	timeout time.Duration
	beats   map[uint64]hsmBeat
}

// hsmBeat is what the watcher last saw of a running action, and when (on
// this MDS's clock) it last moved.
type hsmBeat struct {
	seq     uint64
	attempt uint32
	beat    uint64
	moved   time.Time
}

func (c *hsmCoordinator) init(timeout time.Duration) {
	c.waiters = map[uint64]chan struct{}{}
	c.work = make(chan struct{})
	c.beats = map[uint64]hsmBeat{}
	c.timeout = timeout
	if c.timeout <= 0 {
		c.timeout = DefaultHsmTimeout
	}
}

// waitCh returns a channel closed when an action of ino finishes here.
func (c *hsmCoordinator) waitCh(ino uint64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.waiters[ino]
	if ch == nil {
		ch = make(chan struct{})
		c.waiters[ino] = ch
	}
	return ch
}

// finished wakes the requests waiting for an action of ino.
func (c *hsmCoordinator) finished(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.waiters[ino]; ch != nil {
		close(ch)
		delete(c.waiters, ino)
	}
}

// workCh returns a channel closed when an action is queued here.
func (c *hsmCoordinator) workCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.work
}

// kickAgents wakes the claims waiting for work.
func (c *hsmCoordinator) kickAgents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.work)
	c.work = make(chan struct{})
}

// queuedAction is one record of the queue.
type queuedAction struct {
	ino uint64
	rec hsmActionRecord
}

// scanQueue reads the whole action queue.
func (t *mtx) scanQueue() ([]queuedAction, error) {
	var out []queuedAction
	start, end := t.k.hsmQueueRange()
	var derr error
	err := t.kv.Scan(t.ctx, start, end, 0, func(k, v []byte) bool {
		var q queuedAction
		if q.ino, derr = t.k.idOf(k, tagHsmQueue); derr != nil {
			return false
		}
		if derr = decode(v, &q.rec); derr != nil {
			return false
		}
		out = append(out, q)
		return true
	})
	if err = firstErr(err, derr); err != nil {
		return nil, fmt.Errorf("mds: read hsm queue: %w", err)
	}
	return out, nil
}

// HsmRegister registers an agent. The actions a previous run of the same
// agent (same name) left running go back to the queue at once: that run
// is gone.
func (s *Service) HsmRegister(ctx context.Context, req *proto.HsmRegisterReq) (*proto.HsmRegisterResp, error) {
	if req.Name == "" || len(req.Archives) == 0 {
		return nil, fmt.Errorf("mds: hsm register: a name and archive ids are needed: %w", syscall.EINVAL)
	}
	id := rand.Uint64() | 1
	requeued := 0
	err := s.update(ctx, func(t *mtx) error {
		requeued = 0
		start, end := t.k.hsmAgentRange()
		var old []uint64
		var derr error
		err := t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			var a hsmAgentRecord
			if derr = decode(v, &a); derr != nil {
				return false
			}
			if a.Name == req.Name {
				var aid uint64
				aid, derr = t.k.idOf(k, tagHsmAgent)
				old = append(old, aid)
			}
			return derr == nil
		})
		if err = firstErr(err, derr); err != nil {
			return err
		}
		for _, aid := range old {
			if err := t.kv.Delete(t.k.hsmAgent(aid)); err != nil {
				return err
			}
		}
		if len(old) > 0 {
			queue, err := t.scanQueue()
			if err != nil {
				return err
			}
			for _, q := range queue {
				if q.rec.Status == proto.HsmRunning && slices.Contains(old, q.rec.Agent) {
					q.rec.Status, q.rec.Agent = proto.HsmWaiting, 0
					if err := t.setRecord(t.k.hsmAction(q.ino), &q.rec); err != nil {
						return err
					}
					requeued++
				}
			}
		}
		return t.setRecord(t.k.hsmAgent(id), &hsmAgentRecord{Name: req.Name, Archives: req.Archives, Registered: t.now})
	})
	if err != nil {
		return nil, fmt.Errorf("mds: hsm register %q: %w", req.Name, err)
	}
	s.log.Info("mds: hsm agent registered", "name", req.Name, "agent", fmt.Sprintf("%#x", id), "archives", req.Archives,
		"requeued", requeued)
	if requeued > 0 {
		s.hsm.kickAgents()
	}
	return &proto.HsmRegisterResp{Agent: id}, nil
}

// HsmClaim hands an agent up to Max waiting actions of its archives,
// restores first (readers wait for them), then oldest first. With nothing
// to do it waits up to a slice for work and answers with none.
func (s *Service) HsmClaim(ctx context.Context, req *proto.HsmClaimReq) (*proto.HsmClaimResp, error) {
	max := req.Max
	if max <= 0 || max > hsmClaimMax {
		max = hsmClaimMax
	}
	deadline := time.NewTimer(proto.HsmWaitSlice * time.Millisecond)
	defer deadline.Stop()
	for {
		work := s.hsm.workCh()
		var resp proto.HsmClaimResp
		err := s.update(ctx, s.tagged(req.Tag, proto.OpHsmClaim, &resp, func(t *mtx) error {
			resp = proto.HsmClaimResp{}
			var agent hsmAgentRecord
			if ok, err := t.getRecord(t.k.hsmAgent(req.Agent), &agent); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("mds: hsm claim by agent %#x: not registered (another run took its name): %w", req.Agent, syscall.ESTALE)
			}
			queue, err := t.scanQueue()
			if err != nil {
				return err
			}
			queue = slices.DeleteFunc(queue, func(q queuedAction) bool {
				return q.rec.Status != proto.HsmWaiting || !slices.Contains(agent.Archives, q.rec.ArchiveID)
			})
			slices.SortStableFunc(queue, func(a, b queuedAction) int {
				ra, rb := a.rec.Kind == proto.HsmRestore, b.rec.Kind == proto.HsmRestore
				switch {
				case ra && !rb:
					return -1
				case rb && !ra:
					return 1
				case a.rec.Queued < b.rec.Queued:
					return -1
				case a.rec.Queued > b.rec.Queued:
					return 1
				}
				return 0
			})
			for _, q := range queue[:min(len(queue), max)] {
				q.rec.Status, q.rec.Agent, q.rec.Beat, q.rec.Bytes = proto.HsmRunning, req.Agent, 0, 0
				q.rec.Attempt++
				if err := t.setRecord(t.k.hsmAction(q.ino), &q.rec); err != nil {
					return err
				}
				resp.Actions = append(resp.Actions, proto.HsmClaim{Ino: q.ino, Seq: q.rec.Seq, Attempt: q.rec.Attempt, Kind: q.rec.Kind})
			}
			if len(resp.Actions) == 0 {
				// Commit nothing, not even the reply: the request waits
				// and tries again under the same tag.
				return errNoWork
			}
			return nil
		}))
		if err != nil && !errors.Is(err, errNoWork) {
			return nil, err
		}
		if err == nil {
			return &resp, nil
		}
		select {
		case <-work:
		case <-deadline.C:
			return &resp, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// claimedAction reads the action of a request about a claimed one and
// checks it is that claim: the same sequence and attempt, still running.
// An agent the coordinator gave up on finds ESTALE and drops the action.
func (t *mtx) claimedAction(ino, seq uint64, attempt uint32) (*hsmActionRecord, error) {
	act, err := t.hsmAction(ino)
	if err != nil {
		return nil, err
	}
	if act == nil || act.Seq != seq || act.Attempt != attempt || act.Status != proto.HsmRunning {
		return nil, fmt.Errorf("mds: hsm action %d attempt %d on %#x is not running: %w", seq, attempt, ino, syscall.ESTALE)
	}
	return act, nil
}

// HsmStart gives an agent what a claimed action needs: for an archive the
// file's layout, a capability to read it and the data version copied; for
// a restore a new layout of the file's shape, allocated now (a previous
// attempt's is destroyed), and a capability to write it.
func (s *Service) HsmStart(ctx context.Context, req *proto.HsmStartReq) (*proto.HsmWork, error) {
	var work proto.HsmWork
	queued := false
	err := s.updateInode(ctx, req.Ino, func(t *mtx) error {
		work, queued = proto.HsmWork{}, false
		act, err := t.claimedAction(req.Ino, req.Seq, req.Attempt)
		if err != nil {
			return err
		}
		in, err := t.inode(req.Ino)
		if err != nil {
			return err
		}
		h := in.hsm()
		work = proto.HsmWork{Ino: in.Ino, Seq: act.Seq, Attempt: act.Attempt, Kind: act.Kind, ArchiveID: act.ArchiveID,
			FSName: s.fs.FSName, Size: in.Size, DataVersion: in.DataVersion, Key: h.Key, Checksum: h.Checksum, ETag: h.ETag,
			Imported: h.Imported}
		switch act.Kind {
		case proto.HsmArchive:
			if in.released() || in.Layout == nil {
				return fmt.Errorf("mds: hsm archive of %#x: released: %w", in.Ino, syscall.EINVAL)
			}
			act.DataVersion = in.DataVersion
			work.Layout, work.Cap = *in.Layout, s.capabilityOf(in, proto.RightRead)
			work.Key = ""
		case proto.HsmRestore:
			if !in.released() {
				return fmt.Errorf("mds: hsm restore of %#x: not released: %w", in.Ino, syscall.EALREADY)
			}
			if act.Layout != nil {
				if queued, err = t.queueDestroy(in.Ino, layoutObjects(act.Layout)); err != nil {
					return err
				}
			}
			released := in.Layout
			if err := s.allocate(in, released.Spec(), released.Gen+1); err != nil {
				return err
			}
			act.Layout, in.Layout = in.Layout, released
			t.put(in)
			work.Layout = *act.Layout
			work.Cap = s.capability(in.Ino, proto.RightRead|proto.RightWrite, act.Layout.Gen, in.TruncEpoch)
		}
		act.Beat++
		return t.setRecord(t.k.hsmAction(in.Ino), act)
	})
	if queued {
		s.kickDestroy()
	}
	if err != nil {
		return nil, err
	}
	return &work, nil
}

// HsmProgress records the bytes an action moved and that its agent lives,
// and tells the agent whether the action was cancelled.
func (s *Service) HsmProgress(ctx context.Context, req *proto.HsmProgressReq) (*proto.HsmProgressResp, error) {
	var resp proto.HsmProgressResp
	err := s.update(ctx, func(t *mtx) error {
		act, err := t.claimedAction(req.Ino, req.Seq, req.Attempt)
		if err != nil {
			return err
		}
		act.Bytes, resp.Cancel = req.Bytes, act.Canceled
		act.Beat++
		return t.setRecord(t.k.hsmAction(req.Ino), act)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// HsmComplete ends a claimed action. A finished archive marks the file
// archived, and clean only if its data version is the one copied and no
// writer holds it open; a finished restore swaps the restored layout in
// (one transaction: readers see the old released layout or the whole new
// one); a finished remove forgets the archive copy. A failure leaves the
// file as it was (a restore's objects are destroyed) and is kept as the
// file's last action, which waiting readers turn into EIO.
func (s *Service) HsmComplete(ctx context.Context, req *proto.HsmCompleteReq) error {
	gate := s.gates.of(req.Ino)
	gate.Lock()
	writers := s.open.otherWriters(req.Ino, 0)
	queued := false
	err := s.updateInode(ctx, req.Ino, s.tagged(req.Tag, proto.OpHsmComplete, nil, func(t *mtx) error {
		queued = false
		act, err := t.claimedAction(req.Ino, req.Seq, req.Attempt)
		if err != nil {
			return err
		}
		in, err := t.inode(req.Ino)
		if isErrno(err, syscall.ENOENT) {
			// The file is gone: only its queue entry is left.
			if act.Layout != nil {
				queued, err = t.queueDestroy(req.Ino, layoutObjects(act.Layout))
				if err != nil {
					return err
				}
			}
			return t.kv.Delete(t.k.hsmAction(req.Ino))
		}
		if err != nil {
			return err
		}
		act.Bytes = max(act.Bytes, req.Bytes)
		if req.Errno != 0 {
			why := req.Error
			if why == "" {
				why = syscall.Errno(req.Errno).Error()
			}
			queued = act.Layout != nil
			return t.finishAction(in, act, proto.HsmFailed, why)
		}
		h := in.hsm()
		switch act.Kind {
		case proto.HsmArchive:
			h.Flags |= proto.HsmArchived | proto.HsmExists
			h.Flags &^= proto.HsmLost
			if in.DataVersion == act.DataVersion && writers == 0 {
				h.Flags &^= proto.HsmDirty
			} else {
				h.Flags |= proto.HsmDirty
			}
			h.ArchiveID, h.Version, h.Checksum, h.Key = act.ArchiveID, act.DataVersion, req.Checksum, req.Key
			h.ETag, h.Imported = "", false
		case proto.HsmRestore:
			if !in.released() || act.Layout == nil || act.Layout.Gen != in.Layout.Gen+1 {
				queued = act.Layout != nil
				return t.finishAction(in, act, proto.HsmFailed, "the file changed during the restore")
			}
			in.Layout, act.Layout = act.Layout, nil
			in.Written = writtenBits(in.Layout, int64(in.Size))
			h.Flags &^= proto.HsmReleased
		case proto.HsmRemove:
			hsmForget(in)
		}
		return t.finishAction(in, act, proto.HsmDone, "")
	}))
	gate.Unlock()
	if queued {
		s.kickDestroy()
	}
	if err != nil {
		return err
	}
	s.hsm.finished(req.Ino)
	return nil
}

// writtenBits is the written-objects bitmap (written.go) of a layout whose
// file of size holds data everywhere: every object some byte maps to.
func writtenBits(lay *layout.Layout, size int64) []byte {
	if size <= 0 {
		return nil
	}
	first := make([]int, len(lay.Components))
	n := 0
	for i, c := range lay.Components {
		first[i], n = n, n+len(c.Objects)
	}
	bits := make([]byte, (n+7)/8)
	for _, e := range lay.Map(0, size, nil) {
		if e.Stripe >= 0 {
			i := first[e.Comp] + e.Stripe
			bits[i/8] |= 1 << (i % 8)
		}
	}
	return bits
}

// HsmList lists the queue and the registered agents.
func (s *Service) HsmList(ctx context.Context, _ *proto.HsmListReq) (*proto.HsmListResp, error) {
	var resp proto.HsmListResp
	err := s.view(ctx, func(t *mtx) error {
		resp = proto.HsmListResp{}
		queue, err := t.scanQueue()
		if err != nil {
			return err
		}
		for _, q := range queue {
			resp.Actions = append(resp.Actions, q.rec.wire(q.ino))
		}
		start, end := t.k.hsmAgentRange()
		var derr error
		err = t.kv.Scan(ctx, start, end, 0, func(k, v []byte) bool {
			var a hsmAgentRecord
			if derr = decode(v, &a); derr != nil {
				return false
			}
			id, _ := t.k.idOf(k, tagHsmAgent)
			resp.Agents = append(resp.Agents, proto.HsmAgent{ID: id, Name: a.Name, Archives: a.Archives})
			return true
		})
		return firstErr(err, derr)
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// runHsmWatch, while this MDS owns MDT0, hands the running actions whose
// agent stopped reporting for the timeout back to the queue.
func (s *Service) runHsmWatch(ctx context.Context) {
	tick := time.NewTicker(max(s.hsm.timeout/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.owns(0) {
			continue
		}
		if n, err := s.requeueStalled(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("mds: hsm watch", "err", err)
		} else if n > 0 {
			s.log.Warn("mds: hsm actions of silent agents handed back to the queue", "count", n)
			s.hsm.kickAgents()
		}
	}
}

// requeueStalled makes one pass of runHsmWatch and returns how many
// actions it handed back.
func (s *Service) requeueStalled(ctx context.Context) (int, error) {
	var queue []queuedAction
	err := s.view(ctx, func(t *mtx) error {
		var err error
		queue, err = t.scanQueue()
		return err
	})
	if err != nil {
		return 0, err
	}
	now := s.now()
	c := &s.hsm
	var stalled []queuedAction
	c.mu.Lock()
	seen := map[uint64]bool{}
	for _, q := range queue {
		if q.rec.Status != proto.HsmRunning {
			continue
		}
		seen[q.ino] = true
		b, ok := c.beats[q.ino]
		if !ok || b.seq != q.rec.Seq || b.attempt != q.rec.Attempt || b.beat != q.rec.Beat {
			c.beats[q.ino] = hsmBeat{seq: q.rec.Seq, attempt: q.rec.Attempt, beat: q.rec.Beat, moved: now}
			continue
		}
		if now.Sub(b.moved) > c.timeout {
			stalled = append(stalled, q)
		}
	}
	for ino := range c.beats {
		if !seen[ino] {
			delete(c.beats, ino)
		}
	}
	c.mu.Unlock()
	n := 0
	for _, q := range stalled {
		requeued := false
		err := s.update(ctx, func(t *mtx) error {
			act, err := t.hsmAction(q.ino)
			requeued = false
			if err != nil || act == nil || act.Seq != q.rec.Seq || act.Attempt != q.rec.Attempt || act.Beat != q.rec.Beat ||
				act.Status != proto.HsmRunning {
				return err
			}
			act.Status, act.Agent = proto.HsmWaiting, 0
			requeued = true
			return t.setRecord(t.k.hsmAction(q.ino), act)
		})
		if err != nil {
			return n, err
		}
		if requeued {
			n++
			s.log.Warn("mds: hsm agent silent; action back in the queue", "ino", fmt.Sprintf("%#x", q.ino),
				"action", proto.HsmActionName(q.rec.Kind), "agent", fmt.Sprintf("%#x", q.rec.Agent))
		}
	}
	return n, nil
}
