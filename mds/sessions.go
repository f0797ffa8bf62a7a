package mds

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// session is one connected client. Its record is in the store (so another
// run of the MDS knows it); its liveness only here.
type session struct {
	id       uint64
	clientID string
	expires  time.Time
	handles  map[uint64]struct{}
	// recovering: known from the store at this MDS's start, and has not
	// said yet that it replayed its opens and locks (OpRecovered).
	recovering bool
}

// handle is one open of a file.
type handle struct {
	id      uint64
	session uint64
	ino     uint64
	flags   uint32
	uid     uint32 // opener, for the suid-clearing rule on write
	rights  uint8
	// unsure: a release of this handle failed, perhaps after its commit
	// went through; the next release checks the close's reply slot.
	unsure bool
}

// openTable holds the sessions and their open handles in memory. Session
// records and handles open for writing are also in the store (recovery.go);
// read handles and locks come back by client replay after a restart.
type openTable struct {
	mu         sync.Mutex
	sessions   map[uint64]*session
	handles    map[uint64]*handle
	counts     map[uint64]int // open handles per inode
	writers    map[uint64]int // handles open for writing per inode
	nextHandle uint64
}

func (o *openTable) init() {
	o.sessions = map[uint64]*session{}
	o.handles = map[uint64]*handle{}
	o.counts = map[uint64]int{}
	o.writers = map[uint64]int{}
	o.nextHandle = rand.Uint64() >> 1 // handles of a restarted MDS differ from the old ones
}

// count returns how many handles hold ino open.
func (o *openTable) count(ino uint64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[ino]
}

// add opens a handle on ino for a session.
func (o *openTable) add(sessionID, ino uint64, flags, uid uint32, rights uint8) (*handle, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nextHandle++
	for o.handles[o.nextHandle] != nil || o.nextHandle == 0 {
		o.nextHandle++
	}
	return o.addLocked(&handle{id: o.nextHandle, session: sessionID, ino: ino, flags: flags, uid: uid, rights: rights})
}

// restore re-registers a handle a client (or the store) had from before
// this MDS started; one already present is left as it is.
func (o *openTable) restore(h *handle) (*handle, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.handles[h.id]; cur != nil {
		if cur.session != h.session || cur.ino != h.ino {
			return nil, fmt.Errorf("mds: replayed handle %#x belongs to another open: %w", h.id, syscall.EBADF)
		}
		return cur, nil
	}
	return o.addLocked(h)
}

// addLocked registers h. Call with mu held.
func (o *openTable) addLocked(h *handle) (*handle, error) {
	ss := o.sessions[h.session]
	if ss == nil {
		return nil, fmt.Errorf("mds: session %#x unknown or expired: reconnect: %w", h.session, syscall.ENOTCONN)
	}
	o.handles[h.id] = h
	ss.handles[h.id] = struct{}{}
	o.counts[h.ino]++
	if h.rights&proto.RightWrite != 0 {
		o.writers[h.ino]++
	}
	return h, nil
}

// get returns the handle id of ino, or EBADF.
func (o *openTable) get(id, ino uint64) (handle, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.handles[id]
	if h == nil || h.ino != ino {
		return handle{}, fmt.Errorf("mds: handle %#x of %#x not open: %w", id, ino, syscall.EBADF)
	}
	return *h, nil
}

// remove closes handle id and returns it with the number of handles still
// open on its inode.
func (o *openTable) remove(id uint64) (handle, int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.handles[id]
	if h == nil {
		return handle{}, 0, false
	}
	delete(o.handles, id)
	if ss := o.sessions[h.session]; ss != nil {
		delete(ss.handles, id)
	}
	o.counts[h.ino]--
	n := o.counts[h.ino]
	if n <= 0 {
		delete(o.counts, h.ino)
	}
	if h.rights&proto.RightWrite != 0 {
		if o.writers[h.ino]--; o.writers[h.ino] <= 0 {
			delete(o.writers, h.ino)
		}
	}
	return *h, n, true
}

// otherWriters returns how many handles other than except hold ino open
// for writing.
func (o *openTable) otherWriters(ino, except uint64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.writers[ino]
	if h := o.handles[except]; h != nil && h.ino == ino && h.rights&proto.RightWrite != 0 {
		n--
	}
	return n
}

// Connect opens a client session, or resumes one (req.Session): a client
// whose connection broke, or whose MDS restarted, keeps its session, its
// reply records and its handles open for writing, and replays its read
// opens and locks. A session this MDS does not know is looked up in the
// store; one that is not there (evicted, or its lease ran out while this
// MDS ran) fails with ENOTCONN, and the client must start a new one.
func (s *Service) Connect(ctx context.Context, req *proto.ConnectReq) (*proto.ConnectResp, error) {
	if req.FSName != "" && req.FSName != s.fs.FSName {
		return nil, fmt.Errorf("mds: client wants filesystem %q, this is %q: %w", req.FSName, s.fs.FSName, syscall.ENOENT)
	}
	mdts, err := s.mdtTable(ctx)
	if err != nil {
		return nil, err
	}
	var id uint64
	if req.Session != 0 {
		if err := s.resumeSession(ctx, req.Session, req.ClientID); err != nil {
			return nil, err
		}
		id = req.Session
	} else if id, err = s.newSession(ctx, req.ClientID); err != nil {
		return nil, err
	}
	return &proto.ConnectResp{
		Session:     id,
		LeaseMillis: s.lease.Milliseconds(),
		FSName:      s.fs.FSName,
		Root:        RootIno,
		MDTs:        mdts,
		OSTs:        s.targets.list(s.now()),
		Defaults:    s.fs.Default,
		Instance:    s.instance,
		Recovering:  s.recovering(),
	}, nil
}

// newSession records a new session in the store and here.
func (s *Service) newSession(ctx context.Context, clientID string) (uint64, error) {
	o := &s.open
	var id uint64
	err := s.update(ctx, func(t *mtx) error {
		for {
			id = rand.Uint64()
			o.mu.Lock()
			taken := id == 0 || o.sessions[id] != nil
			o.mu.Unlock()
			if taken {
				continue
			}
			if ok, err := t.getRecord(t.k.session(id), &sessionRecord{}); err != nil || !ok {
				if err != nil {
					return err
				}
				break
			}
		}
		return t.setRecord(t.k.session(id), &sessionRecord{ClientID: clientID, Created: t.now})
	})
	if err != nil {
		return 0, fmt.Errorf("mds: record new session: %w", err)
	}
	o.mu.Lock()
	o.sessions[id] = &session{id: id, clientID: clientID, expires: s.now().Add(s.lease), handles: map[uint64]struct{}{}}
	o.mu.Unlock()
	s.log.Info("mds: client connected", "session", fmt.Sprintf("%#x", id), "client", clientID)
	return id, nil
}

// resumeSession takes back a session after a broken connection or a
// restart: the lease starts again.
func (s *Service) resumeSession(ctx context.Context, id uint64, clientID string) error {
	now := s.now()
	o := &s.open
	o.mu.Lock()
	if ss := o.sessions[id]; ss != nil {
		if now.After(ss.expires) && !ss.recovering {
			o.mu.Unlock()
			return fmt.Errorf("mds: session %#x expired: reconnect: %w", id, syscall.ENOTCONN)
		}
		ss.expires = now.Add(s.lease)
		o.mu.Unlock()
		return nil
	}
	o.mu.Unlock()
	var rec sessionRecord
	var ok bool
	err := s.view(ctx, func(t *mtx) error {
		var err error
		ok, err = t.getRecord(t.k.session(id), &rec)
		return err
	})
	if err != nil {
		return fmt.Errorf("mds: read session %#x: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("mds: session %#x is gone (evicted): reconnect: %w", id, syscall.ENOTCONN)
	}
	o.mu.Lock()
	if o.sessions[id] == nil {
		o.sessions[id] = &session{id: id, clientID: rec.ClientID, expires: now.Add(s.lease), handles: map[uint64]struct{}{}}
	}
	o.mu.Unlock()
	s.log.Info("mds: client resumed its session", "session", fmt.Sprintf("%#x", id), "client", clientID)
	return nil
}

// Renew extends a session's lease and returns the current OST table. A
// session whose lease ran out is not revived, even if the reaper has not
// ended it yet: its locks may already have gone to others.
func (s *Service) Renew(ctx context.Context, req *proto.RenewReq) (*proto.RenewResp, error) {
	now := s.now()
	o := &s.open
	o.mu.Lock()
	err := o.liveLocked(req.Session, now)
	if err == nil {
		o.sessions[req.Session].expires = now.Add(s.lease)
	}
	o.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("mds: renew: %w", err)
	}
	return &proto.RenewResp{OSTs: s.targets.list(now), Instance: s.instance}, nil
}

// known reports whether session id is in memory.
func (o *openTable) known(id uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sessions[id] != nil
}

// live fails with ENOTCONN unless session id is connected and its lease
// has not run out at now.
func (o *openTable) live(id uint64, now time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.liveLocked(id, now)
}

// liveLocked is live with o.mu held.
func (o *openTable) liveLocked(id uint64, now time.Time) error {
	ss := o.sessions[id]
	if ss == nil || now.After(ss.expires) {
		return fmt.Errorf("mds: session %#x unknown or expired: reconnect: %w", id, syscall.ENOTCONN)
	}
	return nil
}

// Disconnect ends a session, releasing its locks and closing its open
// handles.
func (s *Service) Disconnect(ctx context.Context, req *proto.DisconnectReq) error {
	return s.endSession(ctx, req.Session, "disconnect")
}

// endSession forgets a session, then releases its locks and closes its
// handles. The session goes first, so that a request of it racing with
// the end either sees it gone or holds nothing the release misses (see
// Lock).
func (s *Service) endSession(ctx context.Context, id uint64, why string) error {
	o := &s.open
	if !o.known(id) {
		return nil
	}
	// The record goes first, so that no request racing with the end can
	// resume the session from the store (see Service.admit).
	forgetErr := s.forgetSession(ctx, id)
	o.mu.Lock()
	ss := o.sessions[id]
	var ids []uint64
	if ss != nil {
		delete(o.sessions, id)
		for h := range ss.handles {
			ids = append(ids, h)
		}
	}
	o.mu.Unlock()
	s.leases.drop(id)
	if ss == nil {
		return nil
	}
	s.locks.ReleaseSession(id)
	var closeErr error
	for _, h := range ids {
		if _, err := s.release(ctx, h, nil, proto.ReqTag{}); err != nil && closeErr == nil {
			closeErr = err
		}
	}
	if forgetErr != nil && closeErr == nil {
		closeErr = forgetErr
	}
	s.log.Info("mds: session ended", "session", fmt.Sprintf("%#x", id), "client", ss.clientID,
		"reason", why, "handles", len(ids))
	return closeErr
}

// reapSessions ends the sessions whose lease expired before now.
func (s *Service) reapSessions(ctx context.Context, now time.Time) {
	o := &s.open
	o.mu.Lock()
	var expired []uint64
	for id, ss := range o.sessions {
		if now.After(ss.expires) {
			expired = append(expired, id)
		}
	}
	o.mu.Unlock()
	for _, id := range expired {
		if err := s.endSession(ctx, id, "lease expired"); err != nil {
			s.log.Warn("mds: closing handles of expired session", "session", fmt.Sprintf("%#x", id), "err", err)
		}
	}
}

// runLeaseReaper ends expired sessions until ctx ends.
func (s *Service) runLeaseReaper(ctx context.Context) {
	tick := time.NewTicker(max(s.lease/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.reapSessions(ctx, s.now())
		}
	}
}
