package hsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// Copytool defaults.
const (
	DefaultChunkSize = 32 << 20
	DefaultStreams   = 4
	DefaultActions   = 4
	// progressEvery is how often a running action reports: also its
	// agent's sign of life to the coordinator.
	progressEvery = 2 * time.Second
)

// CopytoolConfig configures an agent.
type CopytoolConfig struct {
	// Client is the agent's connection to the filesystem.
	Client *client.Client
	// Backend is the archive.
	Backend Backend
	// Archives are the archive ids served.
	Archives []uint32
	// Name is stable across restarts of this agent; "" means host and
	// backend.
	Name string
	// Streams is how many chunks of one file move at once.
	Streams int
	// Actions is how many files are handled at once.
	Actions int
	// ChunkSize is the unit of transfer and of checksums.
	ChunkSize int64
	// Logger receives the agent's logs.
	Logger *slog.Logger
}

// Copytool is an HSM agent: it claims the coordinator's actions for its
// archives and carries them out against its backend.
type Copytool struct {
	cfg   CopytoolConfig
	c     *client.Client
	log   *slog.Logger
	agent uint64
	bufs  sync.Pool
}

// NewCopytool checks cfg and fills its defaults.
func NewCopytool(cfg CopytoolConfig) (*Copytool, error) {
	if cfg.Client == nil || cfg.Backend == nil || len(cfg.Archives) == 0 {
		return nil, errors.New("hsm: copytool needs a client, a backend and archive ids")
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%s:%v", host, cfg.Backend, cfg.Archives)
	}
	if cfg.Streams <= 0 {
		cfg.Streams = DefaultStreams
	}
	if cfg.Actions <= 0 {
		cfg.Actions = DefaultActions
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ct := &Copytool{cfg: cfg, c: cfg.Client, log: cfg.Logger}
	ct.bufs.New = func() any { b := make([]byte, cfg.ChunkSize); return &b }
	return ct, nil
}

// Run registers the agent and serves actions until ctx ends. Actions in
// flight when it ends are left to the coordinator, which hands them to
// the next run of this agent (it registers under the same name) or, after
// the timeout, to another.
func (ct *Copytool) Run(ctx context.Context) error {
	if err := ct.register(ctx); err != nil {
		return err
	}
	slots := make(chan struct{}, ct.cfg.Actions)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		slots <- struct{}{}
		free := 1 + ct.cfg.Actions - len(slots)
		<-slots
		claims, err := ct.c.HsmClaim(ctx, ct.agent, ct.cfg.Archives, free)
		if errors.Is(err, syscall.ESTALE) {
			// Another run registered under this name: take it back.
			if err := ct.register(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		for _, cl := range claims {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				ct.handle(ctx, cl)
			}()
		}
	}
	return nil
}

func (ct *Copytool) register(ctx context.Context) error {
	id, err := ct.c.HsmRegister(ctx, ct.cfg.Name, ct.cfg.Archives)
	if err != nil {
		return err
	}
	ct.agent = id
	ct.log.Info("hsm: copytool registered", "name", ct.cfg.Name, "archives", ct.cfg.Archives, "backend", ct.cfg.Backend.String())
	return nil
}

// defaultKey is where an archive copy of ino goes.
func (ct *Copytool) defaultKey(fsname string, ino uint64) string {
	return joinKey(ct.cfg.Backend.Root(), fsname, fmt.Sprintf("%016x", ino))
}

// handle carries one claimed action out and completes it.
func (ct *Copytool) handle(ctx context.Context, cl proto.HsmClaim) {
	w, err := ct.c.HsmStart(ctx, cl)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, syscall.ESTALE) {
			ct.complete(ctx, &proto.HsmWork{Ino: cl.Ino, Seq: cl.Seq, Attempt: cl.Attempt, Kind: cl.Kind}, 0, "", err)
		}
		return
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var moved atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ct.reportProgress(actx, w, &moved, stop, cancel)
	}()
	began := time.Now()
	key := w.Key
	if key == "" {
		key = ct.defaultKey(w.FSName, w.Ino)
	}
	var digest string
	switch w.Kind {
	case proto.HsmArchive:
		digest, err = ct.archive(actx, w, key, &moved)
	case proto.HsmRestore:
		err = ct.restore(actx, w, key, &moved)
	case proto.HsmRemove:
		err = ct.remove(actx, w, key)
	default:
		err = fmt.Errorf("hsm: unknown action %d: %w", w.Kind, syscall.EINVAL)
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: the coordinator hands the action on
	}
	if actx.Err() != nil && err != nil {
		err = fmt.Errorf("hsm: %s of %#x canceled: %w", proto.HsmActionName(w.Kind), w.Ino, syscall.ECANCELED)
	}
	secs := time.Since(began).Seconds()
	if err != nil {
		ct.log.Warn("hsm: action failed", "action", proto.HsmActionName(w.Kind), "ino", fmt.Sprintf("%#x", w.Ino), "err", err)
	} else {
		ct.log.Info("hsm: action done", "action", proto.HsmActionName(w.Kind), "ino", fmt.Sprintf("%#x", w.Ino),
			"bytes", moved.Load(), "seconds", secs, "MBps", float64(moved.Load())/max(secs, 1e-9)/1e6)
	}
	ct.complete(ctx, w, uint64(moved.Load()), digest, err)
}

// reportProgress reports the bytes moved every progressEvery until stop;
// it cancels the action when the MDS says it was cancelled or handed to
// another agent.
func (ct *Copytool) reportProgress(ctx context.Context, w *proto.HsmWork, moved *atomic.Int64, stop <-chan struct{}, cancel func()) {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		canceled, err := ct.c.HsmProgress(ctx, w, uint64(moved.Load()))
		if canceled || errors.Is(err, syscall.ESTALE) {
			cancel()
			return
		}
		if err != nil && ctx.Err() == nil {
			ct.log.Warn("hsm: progress report", "ino", fmt.Sprintf("%#x", w.Ino), "err", err)
		}
	}
}

// complete ends an action at the MDS with err's outcome.
func (ct *Copytool) complete(ctx context.Context, w *proto.HsmWork, bytes uint64, digest string, err error) {
	req := proto.HsmCompleteReq{Ino: w.Ino, Seq: w.Seq, Attempt: w.Attempt, Bytes: bytes, Checksum: digest}
	if err != nil {
		errno := client.Errno(err)
		if errno == 0 {
			errno = syscall.EIO
		}
		req.Errno, req.Error = int32(errno), err.Error()
	}
	if cerr := ct.c.HsmComplete(ctx, req); cerr != nil && !errors.Is(cerr, syscall.ESTALE) {
		ct.log.Warn("hsm: complete", "ino", fmt.Sprintf("%#x", w.Ino), "err", cerr)
	}
}

// chunkJobs runs fn for every chunk index of a file of size in chunks of
// chunk bytes, Streams at a time, and returns the first error.
func (ct *Copytool) chunkJobs(ctx context.Context, size, chunk int64, fn func(ctx context.Context, i int, buf []byte) error) error {
	n := int((size + chunk - 1) / chunk)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := atomic.Int64{}
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(ct.cfg.Streams, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := ct.bufs.Get().(*[]byte)
			defer ct.bufs.Put(bp)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				length := min(chunk, size-int64(i)*chunk)
				if err := fn(ctx, i, (*bp)[:length]); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// archive copies the file to key in chunks, with their checksums in a
// manifest, and returns the copy's digest.
func (ct *Copytool) archive(ctx context.Context, w *proto.HsmWork, key string, moved *atomic.Int64) (string, error) {
	size, chunk := int64(w.Size), ct.cfg.ChunkSize
	m := manifest{FSName: w.FSName, Ino: w.Ino, DataVersion: w.DataVersion, Size: size, ChunkSize: chunk}
	m.CRC32C = make([]uint32, m.chunks())
	up, err := ct.cfg.Backend.Create(ctx, key, size, chunk)
	if err != nil {
		return "", err
	}
	lio := ct.c.LayoutIO(w.Layout, w.Cap)
	err = ct.chunkJobs(ctx, size, chunk, func(ctx context.Context, i int, buf []byte) error {
		if err := lio.ReadAt(ctx, buf, int64(i)*chunk); err != nil {
			return fmt.Errorf("hsm: archive %#x: read chunk %d: %w", w.Ino, i, err)
		}
		m.CRC32C[i] = chunkCRC(buf)
		if err := up.WritePart(ctx, i, buf); err != nil {
			return err
		}
		moved.Add(int64(len(buf)))
		return nil
	})
	if err == nil {
		err = up.Commit(ctx)
	}
	if err != nil {
		if aerr := up.Abort(context.WithoutCancel(ctx)); aerr != nil {
			ct.log.Warn("hsm: abort upload", "key", key, "err", aerr)
		}
		return "", err
	}
	data, err := jsonManifest(&m)
	if err != nil {
		return "", err
	}
	if err := ct.cfg.Backend.Put(ctx, key+manifestSuffix, data); err != nil {
		return "", err
	}
	return m.digest(), nil
}

// restore fills the new layout from the archive copy at key, checking
// every chunk before it is written (an imported object: that it is the
// object imported), and makes it durable before the MDS swaps it in.
func (ct *Copytool) restore(ctx context.Context, w *proto.HsmWork, key string, moved *atomic.Int64) error {
	size := int64(w.Size)
	chunk := ct.cfg.ChunkSize
	var crcs []uint32
	if w.Imported {
		info, err := ct.cfg.Backend.Stat(ctx, key)
		if err != nil {
			return err
		}
		if info.ETag != w.ETag || info.Size != size {
			return fmt.Errorf("hsm: restore %#x: %s changed since it was imported (etag %s size %d, was %s size %d): %w",
				w.Ino, key, info.ETag, info.Size, w.ETag, size, syscall.EIO)
		}
	} else {
		data, err := ct.cfg.Backend.Get(ctx, key+manifestSuffix)
		if err != nil {
			return fmt.Errorf("hsm: restore %#x: %w: %w", w.Ino, err, syscall.EIO)
		}
		m, err := parseManifest(data, w.Checksum, size)
		if err != nil {
			return fmt.Errorf("hsm: restore %#x from %s: %w: %w", w.Ino, key, err, syscall.EIO)
		}
		chunk, crcs = m.ChunkSize, m.CRC32C
		if chunk > ct.cfg.ChunkSize {
			return fmt.Errorf("hsm: restore %#x: chunks of %d bytes, this copytool's are %d: %w", w.Ino, chunk,
				ct.cfg.ChunkSize, syscall.EINVAL)
		}
	}
	lio := ct.c.LayoutIO(w.Layout, w.Cap)
	err := ct.chunkJobs(ctx, size, chunk, func(ctx context.Context, i int, buf []byte) error {
		if err := ct.cfg.Backend.ReadAt(ctx, key, buf, int64(i)*chunk); err != nil {
			return fmt.Errorf("hsm: restore %#x: %w: %w", w.Ino, err, syscall.EIO)
		}
		if crcs != nil && chunkCRC(buf) != crcs[i] {
			return fmt.Errorf("hsm: restore %#x: chunk %d of %s is corrupt (crc32c %08x, want %08x): %w",
				w.Ino, i, key, chunkCRC(buf), crcs[i], syscall.EIO)
		}
		if err := lio.WriteAt(ctx, buf, int64(i)*chunk); err != nil {
			return err
		}
		moved.Add(int64(len(buf)))
		return nil
	})
	if err != nil {
		return err
	}
	return lio.Sync(ctx)
}

// remove deletes the archive copy (never an imported object: the MDS does
// not queue those).
func (ct *Copytool) remove(ctx context.Context, w *proto.HsmWork, key string) error {
	if w.Imported {
		return nil
	}
	if err := ct.cfg.Backend.Delete(ctx, key+manifestSuffix); err != nil {
		return err
	}
	return ct.cfg.Backend.Delete(ctx, key)
}
