// Package client is the Strata client library: a Go API that any program can
// use to work with a Strata filesystem (open, read, write, stat, readdir,
// setstripe), and the engine under the FUSE mount in client/fuse.
//
// The library talks to the MDS that owns each inode for metadata (routing by
// the MDT index in the inode number's high bits) and straight to the OSSes for
// file data: it splits every read and write per object with package layout,
// runs the pieces in parallel, keeps a bounded write-behind buffer and a
// readahead window per open file, and reports write errors at flush, fsync and
// close as POSIX expects.
//
// Consistency is close-to-open by default: a file opened after another client
// closed it sees that client's data and size. The "strict" mode gives up
// client-side data caching (no write-behind, no readahead) so that every write
// is on the OSS, and every extending write's size at the MDS, before the write
// returns; shared-file MPI-IO wants that.
//
// The package does not map errors to errno values for the kernel: errors come
// back wrapped with context, and errors.Is(err, syscall.ENOENT) works on them.
// The FUSE layer converts them once, at its edge.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Consistency modes (Config.Consistency).
const (
	// CloseToOpen buffers writes and reads ahead; a file opened after another
	// client closed it sees all of that client's data and size.
	CloseToOpen = "close-to-open"
	// Strict disables client data caching: writes reach the OSS (and an
	// extending write's size the MDS) before they return, and reads always go
	// to the OSS.
	Strict = "strict"
)

// Defaults for Config fields left zero.
const (
	DefaultReadAhead        = 8 << 20
	DefaultWriteBehind      = 16 << 20
	DefaultWriteBehindTotal = 256 << 20
	DefaultReadAheadTotal   = 256 << 20
)

// ErrClosed is returned by operations on a closed Client or File.
var ErrClosed = errors.New("client: closed")

// Config configures a Client.
type Config struct {
	// MDS lists MDS addresses; the first that answers serves the session.
	MDS []string
	// FSName is the filesystem to mount; empty accepts whatever the MDS serves.
	FSName string
	// Secret is the cluster secret every connection proves knowledge of.
	Secret []byte
	// Consistency is CloseToOpen (the default when empty) or Strict.
	Consistency string
	// Logger receives the client's logs; nil means slog.Default().
	Logger *slog.Logger
	// ReadAhead is how many bytes a sequential reader prefetches per open
	// file; 0 means DefaultReadAhead and a negative value disables readahead.
	ReadAhead int64
	// ReadAheadTotal bounds the prefetched bytes held over all files
	// (many files read at once share it, and read directly past it); 0
	// means DefaultReadAheadTotal.
	ReadAheadTotal int64
	// WriteBehind bounds the dirty bytes buffered per file; 0 means
	// DefaultWriteBehind and a negative value makes every write synchronous.
	WriteBehind int64
	// WriteBehindTotal bounds the dirty bytes buffered over all files; 0
	// means DefaultWriteBehindTotal.
	WriteBehindTotal int64
	// RecoveryTimeout is how long a request waits through an outage of
	// its server (an MDS or OSS restarting, a failover) before it fails
	// with EIO; 0 means DefaultRecoveryTimeout.
	RecoveryTimeout time.Duration
	// MetaLeases caches metadata under leases from the MDS (callbacks
	// keep it coherent; see mdlease.go), as EnableMetaLeases does (the
	// FUSE mount, in close-to-open mode). Strict mode never caches.
	MetaLeases bool
}

// Client is a connection to one Strata filesystem: a session at the MDS, the
// routing tables, and the open files. It is safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	rpc    *rpc.Client
	strict bool
	cred   proto.Cred // the process's own identity, for the path-level API
	id     string     // hostname:pid:random, sent at connect

	rec recovery // resends, session recovery and replay (recovery.go)

	mu       sync.RWMutex
	session  uint64
	mdsAddr  string // the MDS that serves the session
	root     uint64
	fsname   string
	lease    time.Duration
	mdts     map[uint32]string // MDT -> address of its owner
	epochs   map[uint32]uint64 // MDT -> owner epoch the client last replayed to
	osts     map[uint32]proto.OST
	defaults layout.Spec

	openMu sync.Mutex
	open   map[uint64]*inode // inodes with open Files

	budget budget       // dirty bytes over all files
	raHeld atomic.Int64 // prefetched bytes over all files (readahead.go)

	locks lockOwners // who may hold locks, so close releases only those

	leases leaseCache // metadata held under leases (mdlease.go)
	rel    releaser   // deferred releases of read-only handles (release.go)

	bg   context.Context // lives until Close; owns background work
	stop context.CancelFunc
	wg   sync.WaitGroup
	once sync.Once
}

// New connects to the filesystem: it opens a session at the first MDS in
// cfg.MDS that answers, learns the root, the MDT and OST tables, and starts
// renewing the session's lease. Close releases everything.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.MDS) == 0 {
		return nil, errors.New("client: no MDS address configured")
	}
	switch cfg.Consistency {
	case "":
		cfg.Consistency = CloseToOpen
	case CloseToOpen, Strict:
	default:
		return nil, fmt.Errorf("client: unknown consistency mode %q (want %q or %q)", cfg.Consistency, CloseToOpen, Strict)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadAheadTotal <= 0 {
		cfg.ReadAheadTotal = DefaultReadAheadTotal
	}
	if cfg.ReadAhead == 0 {
		cfg.ReadAhead = DefaultReadAhead
	}
	if cfg.WriteBehind == 0 {
		cfg.WriteBehind = DefaultWriteBehind
	}
	if cfg.WriteBehindTotal <= 0 {
		cfg.WriteBehindTotal = DefaultWriteBehindTotal
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = DefaultRecoveryTimeout
	}
	c := &Client{
		cfg:    cfg,
		log:    cfg.Logger,
		rpc:    rpc.NewClient(rpc.ClientConfig{Secret: cfg.Secret, Logger: cfg.Logger}),
		strict: cfg.Consistency == Strict,
		cred:   processCred(),
		id:     clientID(),
		open:   map[uint64]*inode{},
	}
	c.budget.init(cfg.WriteBehindTotal)
	c.rec.init()
	c.leases.init()
	c.rel.init()
	if err := c.connect(ctx); err != nil {
		c.rpc.Close()
		return nil, err
	}
	c.bg, c.stop = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.renewLoop()
	go c.releaseLoop()
	if cfg.MetaLeases {
		c.EnableMetaLeases()
	}
	return c, nil
}

// processCred returns the identity of this process.
func processCred() proto.Cred {
	cr := proto.Cred{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Pid: uint32(os.Getpid())}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			cr.Groups = append(cr.Groups, uint32(g))
		}
	}
	return cr
}

// clientID names this client in MDS logs: hostname:pid:random.
func clientID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Close flushes and closes every open file, ends the session and closes the
// connections. It returns the first error met on the way.
func (c *Client) Close() error {
	var first error
	c.once.Do(func() {
		c.openMu.Lock()
		var files []*File
		for _, ino := range c.open {
			ino.mu.Lock()
			for f := range ino.files {
				files = append(files, f)
			}
			ino.mu.Unlock()
		}
		c.openMu.Unlock()
		for _, f := range files {
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.flushReleases(ctx)
		c.stop()
		c.wg.Wait()
		c.mu.RLock()
		addr, sess := c.mdsAddr, c.session
		c.mu.RUnlock()
		if err := c.rpc.Call(ctx, addr, proto.OpDisconnect, &proto.DisconnectReq{Session: sess}, nil); err != nil {
			c.log.Warn("client: disconnect", "mds", addr, "err", err)
		}
		if err := c.rpc.Close(); err != nil && first == nil {
			first = err
		}
	})
	return first
}

// Root returns the inode number of the filesystem's root directory.
func (c *Client) Root() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.root
}

// FSName returns the name of the mounted filesystem.
func (c *Client) FSName() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fsname
}

// MDSAddr returns the address of the MDS that serves the session.
func (c *Client) MDSAddr() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mdsAddr
}

// Logger returns the client's logger.
func (c *Client) Logger() *slog.Logger { return c.log }

// Consistency returns the client's consistency mode (CloseToOpen or Strict).
func (c *Client) Consistency() string { return c.cfg.Consistency }

// SessionID returns the client's session at the MDS (it changes when an
// MDS evicts the client and it connects again).
func (c *Client) SessionID() uint64 { return c.sessionID() }

// Defaults returns the filesystem's default layout as the MDS reported it at
// connect.
func (c *Client) Defaults() layout.Spec {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.defaults
}

// sessionID returns the current session.
func (c *Client) sessionID() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.session
}

// mdsFor returns the address of the MDS serving the MDT that owns ino (its
// high 16 bits), falling back to the session's MDS.
func (c *Client) mdsFor(ino uint64) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if a := c.mdts[uint32(ino>>48)]; a != "" {
		return a
	}
	return c.mdsAddr
}

// ossFor returns the address of the OSS serving ost, asking the MDS for a
// fresh target table once if the OST is not known yet.
func (c *Client) ossFor(ctx context.Context, ost uint32) (string, error) {
	c.mu.RLock()
	o, ok := c.osts[ost]
	c.mu.RUnlock()
	if ok && o.Addr != "" {
		return o.Addr, nil
	}
	if _, err := c.Targets(ctx); err != nil {
		return "", err
	}
	c.mu.RLock()
	o, ok = c.osts[ost]
	c.mu.RUnlock()
	if !ok || o.Addr == "" {
		return "", fmt.Errorf("client: OST %d has no OSS address: %w", ost, syscall.EIO)
	}
	return o.Addr, nil
}

// setOSTs replaces the OST table.
func (c *Client) setOSTs(osts []proto.OST) {
	m := make(map[uint32]proto.OST, len(osts))
	for _, o := range osts {
		m[o.Index] = o
	}
	c.mu.Lock()
	c.osts = m
	c.mu.Unlock()
}

// transient reports whether err is a transport failure worth one retry.
func transient(err error) bool {
	for _, e := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Errno returns the POSIX error number an error from this package carries:
// the errno of a failed call, a syscall.Errno it wraps, EINTR for a cancelled
// context, ETIMEDOUT for an expired one, EBADF for a closed file and EIO for
// anything else. It returns 0 for nil.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var re *rpc.Error
	if errors.As(err, &re) && re.Errno != 0 {
		return re.Errno
	}
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return en
	}
	switch {
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	case errors.Is(err, ErrClosed):
		return syscall.EBADF
	}
	return syscall.EIO
}
