package mds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/mds/kv"
	"github.com/stratafs/strata/mds/lock"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// ErrNotFormatted means the store holds no filesystem.
var ErrNotFormatted = errors.New("mds: store not formatted: run strata format")

// DefaultLease is the client session lease when none is configured.
const DefaultLease = 30 * time.Second

const (
	capabilityTTL = time.Hour // lifetime of the capabilities handed out
	inoBatch      = 1024      // inode numbers reserved per counter transaction
)

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// FSName selects the filesystem to serve; "" serves the only one in
	// the store.
	FSName string
	// Secret signs capabilities.
	Secret []byte
	// MDTs lists the metadata targets this service serves; empty means MDT 0.
	MDTs []uint32
	// ObjectIO reaches the OSTs for truncates and destroys; nil makes both
	// fail with EIO (a service without OSS access).
	ObjectIO ObjectIO
	// Lease is the client session lease; 0 means DefaultLease.
	Lease time.Duration
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it to expire leases.
	Now func() time.Time
	// KVDir is the embedded engine's directory, for MDT usage; "" if none.
	KVDir string
	// RecoveryWindow is how long after its start the MDS waits for the
	// clients of before to replay their opens and locks; 0 means the
	// lease plus a half.
	RecoveryWindow time.Duration
	// Standby starts the service owning no MDT: it takes over MDTs whose
	// owner's lease runs out (MDTs is ignored).
	Standby bool
	// MDTLease is the MDT ownership lease; 0 means DefaultMDTLease.
	MDTLease time.Duration
	// Addr is the address the service will serve at, if known: MDT
	// records naming it are its predecessor's, taken back at once.
	Addr string
	// MetaLease is the metadata lease term (see proto/lease.go); 0
	// means DefaultMetaLease.
	MetaLease time.Duration
	// Peers reaches the other MDSes (lease breaks for changes that touch
	// their inodes); nil: this service has no peers to tell.
	Peers *rpc.Client
	// HsmTimeout is how long an HSM action may run without a progress
	// report before another agent gets it; 0 means DefaultHsmTimeout.
	HsmTimeout time.Duration
}

// Service is the metadata service: the namespace, open files, layouts and
// the target tables, over a kv.DB. It knows nothing of the wire; Run wraps
// it in an rpc.Server, and tests call it directly.
type Service struct {
	db     *kv.DB
	keys   keys
	fs     clusterRecord
	secret []byte
	io     ObjectIO
	log    *slog.Logger
	now    func() time.Time
	lease  time.Duration
	kvDir  string
	start  time.Time
	own    ownership // the MDTs this service owns (ownership.go)
	// instance names this run (proto.ConnectResp.Instance).
	instance       uint64
	recov          recoveryState
	recoveryWindow time.Duration
	mdtLease       time.Duration

	alloc    layout.Allocator
	inos     inoAllocator
	targets  targetTable
	open     openTable
	gates    inodeGates
	truncMu  inodeLocks
	inoLocks inodeLocks
	rootDef  rootDefaultCache
	locks    *lock.Manager // fcntl and flock locks, in memory only
	lockWait time.Duration // how long a waiting lock request is held
	nextMDT  atomic.Uint64 // round robin of top-level directories
	kick     chan struct{} // wakes the destroy worker
	hints    destroyHints  // destroy-queue keys this service committed (destroy.go)
	fsck     fsckRuns      // filesystem checks in progress (fsck.go)
	migr     thawWaits     // waits for files frozen by a migration (migrate.go)
	clog     changelogs    // changelog numbering of the owned MDTs (changelog.go)
	quota    noLimits      // IDs known to have no quota limits (quota.go)
	hsm      hsmCoordinator
	leases   leaseTable   // metadata leases (mdlease.go)
	remote   remoteBreaks // lease breaks for other MDSes' changes
	peers    *rpc.Client
}

// NewService loads the filesystem's cluster record and target tables from
// db and returns a service for it, registering the MDTs it serves. It fails
// with ErrNotFormatted if the store holds no filesystem. The caller runs
// Background for the housekeeping (destroys, lease and orphan reaping).
func NewService(ctx context.Context, db *kv.DB, opts ServiceOptions) (*Service, error) {
	name, err := findFS(ctx, db, opts.FSName)
	if err != nil {
		return nil, err
	}
	s := &Service{
		db:       db,
		keys:     newKeys(name),
		secret:   opts.Secret,
		io:       opts.ObjectIO,
		log:      opts.Logger,
		now:      opts.Now,
		lease:    opts.Lease,
		kvDir:    opts.KVDir,
		kick:     make(chan struct{}, 1),
		locks:    lock.NewManager(),
		lockWait: proto.LockWaitSlice * time.Millisecond,
	}
	if s.io == nil {
		s.io = noObjectIO{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	s.recoveryWindow = opts.RecoveryWindow
	if s.recoveryWindow <= 0 {
		s.recoveryWindow = s.lease + s.lease/2
	}
	s.mdtLease = opts.MDTLease
	if s.mdtLease <= 0 {
		s.mdtLease = DefaultMDTLease
	}
	s.instance = rand.Uint64() | 1
	s.start = s.now()
	s.open.init()
	term := opts.MetaLease
	if term <= 0 {
		term = DefaultMetaLease
	}
	// Leases are real time whatever the service's clock: they bound real
	// waits, on both sides.
	s.leases.init(term, time.Now, s.evictForLease)
	s.leases.gone = func(session, mark uint64) { go s.unmarkLeasing(session, mark) }
	s.peers = opts.Peers
	s.hsm.init(opts.HsmTimeout)
	addr := opts.Addr
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		addr = "" // a port to be chosen names no predecessor
	}
	s.own = ownership{owned: map[uint32]ownedMDT{}, addr: addr, gaveUp: map[uint32]bool{}}
	if !opts.Standby {
		s.own.want = slices.Clone(opts.MDTs)
		if len(s.own.want) == 0 {
			s.own.want = []uint32{0}
		}
	}
	err = s.db.View(ctx, func(tx kv.Txn) error {
		t := s.newMtx(ctx, tx)
		ok, err := t.getRecord(s.keys.cluster(), &s.fs)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFormatted
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.registerMDTs(ctx, s.own.want); err != nil {
		return nil, err
	}
	if err := s.targets.load(ctx, s); err != nil {
		return nil, err
	}
	s.targets.presumeAlive(s.now())
	s.recov.init()
	took, err := s.acquire(ctx, s.own.want)
	if err != nil {
		return nil, err
	}
	if err := s.recoverMDTs(ctx, took); err != nil {
		return nil, err
	}
	return s, nil
}

// findFS returns the filesystem to serve: want if it is registered, or the
// only registered one when want is "".
func findFS(ctx context.Context, db *kv.DB, want string) (string, error) {
	var names []string
	err := db.View(ctx, func(tx kv.Txn) error {
		start, end := registryRange()
		return tx.Scan(ctx, start, end, 0, func(k, _ []byte) bool {
			if name, err := decodeRegistryKey(k); err == nil {
				names = append(names, name)
			}
			return true
		})
	})
	if err != nil {
		return "", fmt.Errorf("mds: read filesystem registry: %w", err)
	}
	switch {
	case len(names) == 0:
		return "", ErrNotFormatted
	case want != "" && slices.Contains(names, want):
		return want, nil
	case want != "":
		return "", fmt.Errorf("mds: filesystem %q not in store (it holds %v): %w", want, names, ErrNotFormatted)
	case len(names) > 1:
		return "", fmt.Errorf("mds: store holds filesystems %v: name the one to serve", names)
	}
	return names[0], nil
}

// FSName returns the name of the filesystem served.
func (s *Service) FSName() string { return s.fs.FSName }

// inoAllocator hands out inode numbers from batches reserved in the store,
// so a create does not contend on the counter key.
type inoAllocator struct {
	mu   sync.Mutex
	next map[uint32]uint64
	end  map[uint32]uint64
}

// newIno returns an unused inode number on mdt.
func (s *Service) newIno(ctx context.Context, mdt uint32) (uint64, error) {
	a := &s.inos
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == nil {
		a.next, a.end = map[uint32]uint64{}, map[uint32]uint64{}
	}
	if a.next[mdt] >= a.end[mdt] {
		var first uint64
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			b, err := tx.Get(ctx, s.keys.counter(mdt))
			if err != nil {
				return err
			}
			first = RootIno + 1
			if b != nil {
				if first, err = decodeU64(b); err != nil {
					return err
				}
			}
			if first+inoBatch > inoSeqMask {
				return fmt.Errorf("mds: MDT %d has run out of inode numbers", mdt)
			}
			return tx.Set(s.keys.counter(mdt), encodeU64(first+inoBatch))
		})
		if err != nil {
			return 0, fmt.Errorf("mds: reserve inode numbers on MDT %d: %w", mdt, err)
		}
		a.next[mdt], a.end[mdt] = first, first+inoBatch
	}
	seq := a.next[mdt]
	a.next[mdt]++
	return makeIno(mdt, seq), nil
}

// inodeGates serialize, per inode, the decision to destroy a file that lost
// its last link against new opens of it: an open holds its gate shared while
// it registers its handle and reads the inode; unlink, rename and last close
// hold it exclusively from the open-count check until their transaction
// committed. One gate covers many inodes; no operation holds two.
type inodeGates [256]sync.RWMutex

func (g *inodeGates) of(ino uint64) *sync.RWMutex { return &g[(ino^ino>>17)%uint64(len(g))] }

// inodeLocks serialize operations on one inode: truncates (punch then
// commit, in truncMu) and single-inode transactions (in inoLocks).
type inodeLocks [1024]sync.Mutex

func (l *inodeLocks) of(ino uint64) *sync.Mutex { return &l[(ino^ino>>17)%uint64(len(l))] }

// gateHold is the one exclusive gate an operation holds while it decides
// to destroy an inode; its body may run several times (conflict retries),
// each time perhaps for another inode.
type gateHold struct {
	s   *Service
	ino uint64
	mu  *sync.RWMutex
}

// hold takes ino's gate exclusively, releasing any other held before.
func (h *gateHold) hold(ino uint64) {
	mu := h.s.gates.of(ino)
	if h.mu == mu {
		h.ino = ino
		return
	}
	h.release()
	mu.Lock()
	h.mu, h.ino = mu, ino
}

// release drops the gate if one is held.
func (h *gateHold) release() {
	if h.mu != nil {
		h.mu.Unlock()
		h.mu = nil
	}
}
