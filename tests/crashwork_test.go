package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The crash workload's shape: records of an odd size (so that they straddle
// 64 KiB stripes) appended to or rewritten in files of at most
// crashMaxRecords records, spread over crashDirs directories.
const (
	crashRecSize    = 40000
	crashMaxRecords = 12
	crashMinFiles   = 4
	crashMaxFiles   = 24
)

var crashDirs = []string{"d0", "d1", "d2"}

// crashFile is one file of the model: where it is and the version of each
// record it holds, as acknowledged.
type crashFile struct {
	id   int
	path string // relative to the mount root
	vers []int  // vers[i] is the version of record i; the size is len(vers) records
}

// crashModel is everything the workload has had acknowledged: a write by
// fsync of the file, a create by fsync of the file and its directory, a
// rename or unlink by fsync of the directories involved.
type crashModel struct {
	files  map[int]*crashFile
	nextID int
}

// crashRecord is the content of version v of record i of file id: bytes
// from a generator seeded by all three, so that a record from another
// file, place or version never passes for it.
func crashRecord(seed int64, id, i, v int) []byte {
	r := rand.New(rand.NewPCG(uint64(seed)^uint64(id)<<40, uint64(i)<<32|uint64(v)))
	b := make([]byte, crashRecSize)
	for j := 0; j < len(b); j += 8 {
		u := r.Uint64()
		for k := 0; k < 8 && j+k < len(b); k++ {
			b[j+k] = byte(u >> (8 * k))
		}
	}
	return b
}

// crashWorkload runs operations on a mount, one at a time, retrying each
// until it is acknowledged: an attempt that fails (a daemon is down) is not
// acknowledged and is repeated, idempotently, once the daemon is back.
type crashWorkload struct {
	seed int64
	rng  *rand.Rand
	mnt  string
	// gate is held for reading around every attempt and for writing while
	// the client is being remounted, so that no attempt runs on the bare
	// mount point.
	gate *sync.RWMutex

	// stopCh and done belong to the running goroutine (start, stop);
	// aborted, closed once by abort, ends even an unacknowledged retry.
	stopCh    chan struct{}
	done      chan error
	aborted   chan struct{}
	abortOnce sync.Once

	mu       sync.Mutex
	model    crashModel
	acked    int   // operations acknowledged
	ackBytes int64 // record bytes acknowledged
	failed   int   // attempts that failed (and were retried)
	lastErr  error // the last failed attempt's error
	fatal    error // a result no crash explains; the workload stops
	// retryFor bounds how long one operation may keep failing.
	retryFor time.Duration
}

func newCrashWorkload(seed int64, mnt string, gate *sync.RWMutex) *crashWorkload {
	return &crashWorkload{
		seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0xc4a54)), mnt: mnt, gate: gate,
		model: crashModel{files: map[int]*crashFile{}}, retryFor: 2 * time.Minute, aborted: make(chan struct{}),
	}
}

// start runs the workload on a goroutine of its own until stop.
func (w *crashWorkload) start() {
	w.stopCh, w.done = make(chan struct{}), make(chan error, 1)
	go func() { w.done <- w.run(w.stopCh) }()
}

// stop lets the operation in hand finish (until acknowledged) and returns
// the workload's fatal error, if any.
func (w *crashWorkload) stop() error {
	close(w.stopCh)
	err := <-w.done
	w.done = nil
	return err
}

// abort ends a running workload without waiting for acknowledgements, for
// a test that has failed; it returns once the goroutine has ended.
func (w *crashWorkload) abort() {
	w.abortOnce.Do(func() { close(w.aborted) })
	if w.done != nil {
		<-w.done
		w.done = nil
	}
}

// counts returns the acknowledged operations and the failed attempts.
func (w *crashWorkload) counts() (acked, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.failed
}

// run performs operations until stop is closed, finishing the one in hand.
// It returns the first fatal error.
func (w *crashWorkload) run(stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		case <-w.aborted:
			return errors.New("aborted")
		default:
		}
		if err := w.step(); err != nil {
			w.mu.Lock()
			w.fatal = err
			w.mu.Unlock()
			return err
		}
	}
}

// step draws one operation and performs it until acknowledged.
func (w *crashWorkload) step() error {
	w.mu.Lock()
	n := len(w.model.files)
	w.mu.Unlock()
	switch r := w.rng.IntN(100); {
	case n < crashMinFiles || (r < 20 && n < crashMaxFiles):
		return w.create()
	case r < 70:
		return w.write()
	case r < 85:
		return w.rename()
	default:
		return w.unlink()
	}
}

// pick returns a random file of the model.
func (w *crashWorkload) pick() *crashFile {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int, 0, len(w.model.files))
	for id := range w.model.files {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return w.model.files[ids[w.rng.IntN(len(ids))]]
}

// attempt runs op until it succeeds; a fatal result (errFatal) ends the
// run at once. Every failed attempt is counted; between attempts it waits
// a little, for the daemon being restarted.
func (w *crashWorkload) attempt(what string, op func(retry bool) error) error {
	start := time.Now()
	for retry := false; ; retry = true {
		w.gate.RLock()
		err := op(retry)
		w.gate.RUnlock()
		if err == nil {
			return nil
		}
		var f errFatal
		if errors.As(err, &f) {
			return fmt.Errorf("%s: %w", what, err)
		}
		w.mu.Lock()
		w.failed++
		w.lastErr = fmt.Errorf("%s: %w", what, err)
		w.mu.Unlock()
		if time.Since(start) > w.retryFor {
			return fmt.Errorf("%s still failing after %v: %w", what, w.retryFor, err)
		}
		select {
		case <-w.aborted:
			return fmt.Errorf("%s: aborted while retrying: %w", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errFatal marks a result that no crash or retry explains.
type errFatal struct{ msg string }

func (e errFatal) Error() string { return e.msg }

func (w *crashWorkload) abs(rel string) string { return filepath.Join(w.mnt, rel) }

// create makes a new file with one record, durable with its entry.
func (w *crashWorkload) create() error {
	w.mu.Lock()
	id := w.model.nextID
	w.model.nextID++
	w.mu.Unlock()
	f := &crashFile{id: id, path: filepath.Join(crashDirs[w.rng.IntN(len(crashDirs))], fmt.Sprintf("f%05d", id)), vers: []int{1}}
	data := crashRecord(w.seed, id, 0, 1)
	err := w.attempt("create "+f.path, func(retry bool) error {
		flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL
		if retry {
			// The failed attempt may have created it.
			flags &^= unix.O_EXCL
		}
		fd, err := unix.Open(w.abs(f.path), flags|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			return errFatal{"a fresh name exists before its first create"}
		}
		if err != nil {
			return err
		}
		return writeSyncClose(fd, data, 0, filepath.Dir(w.abs(f.path)))
	})
	if err != nil {
		return err
	}
	w.ack(func(m *crashModel) { m.files[id] = f }, crashRecSize)
	return nil
}

// write appends a record or rewrites one with a new version, then fsyncs.
func (w *crashWorkload) write() error {
	f := w.pick()
	i := w.rng.IntN(len(f.vers) + 1)
	if i >= crashMaxRecords {
		i = w.rng.IntN(len(f.vers))
	}
	v := 1
	if i < len(f.vers) {
		v = f.vers[i] + 1
	}
	data := crashRecord(w.seed, f.id, i, v)
	err := w.attempt(fmt.Sprintf("write %s record %d version %d", f.path, i, v), func(bool) error {
		fd, err := unix.Open(w.abs(f.path), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return errFatal{"an acknowledged file is missing"}
		}
		if err != nil {
			return err
		}
		return writeSyncClose(fd, data, int64(i)*crashRecSize, "")
	})
	if err != nil {
		return err
	}
	w.ack(func(*crashModel) {
		if i == len(f.vers) {
			f.vers = append(f.vers, v)
		} else {
			f.vers[i] = v
		}
	}, crashRecSize)
	return nil
}

// rename moves a file to a fresh name or over another file, in the same or
// another directory, then fsyncs both directories.
func (w *crashWorkload) rename() error {
	f := w.pick()
	var victim *crashFile
	to := filepath.Join(crashDirs[w.rng.IntN(len(crashDirs))], fmt.Sprintf("f%05d.r%d", f.id, w.rng.IntN(1000)))
	if w.rng.IntN(3) == 0 {
		if v := w.pick(); v != f {
			victim, to = v, v.path
		}
	}
	if to == f.path {
		return nil
	}
	err := w.attempt(fmt.Sprintf("rename %s %s", f.path, to), func(retry bool) error {
		err := unix.Rename(w.abs(f.path), w.abs(to))
		if !retry && errors.Is(err, unix.ENOENT) {
			return errFatal{"an acknowledged file is missing"}
		}
		if retry && errors.Is(err, unix.ENOENT) {
			// The failed attempt may have renamed it: then the target
			// is there, and its contents are checked later.
			if _, serr := os.Lstat(w.abs(to)); serr != nil {
				return errFatal{fmt.Sprintf("after a failed rename neither name exists (%v, %v)", err, serr)}
			}
			err = nil
		}
		if err != nil {
			return err
		}
		if err := fsyncPath(filepath.Dir(w.abs(f.path))); err != nil {
			return err
		}
		return fsyncPath(filepath.Dir(w.abs(to)))
	})
	if err != nil {
		return err
	}
	w.ack(func(m *crashModel) {
		if victim != nil {
			delete(m.files, victim.id)
		}
		f.path = to
	}, 0)
	return nil
}

// unlink removes a file and fsyncs its directory.
func (w *crashWorkload) unlink() error {
	f := w.pick()
	err := w.attempt("unlink "+f.path, func(retry bool) error {
		err := unix.Unlink(w.abs(f.path))
		if errors.Is(err, unix.ENOENT) {
			if !retry {
				return errFatal{"an acknowledged file is missing"}
			}
			err = nil // the failed attempt did it
		}
		if err != nil {
			return err
		}
		return fsyncPath(filepath.Dir(w.abs(f.path)))
	})
	if err != nil {
		return err
	}
	w.ack(func(m *crashModel) { delete(m.files, f.id) }, 0)
	return nil
}

// ack records an acknowledged operation in the model.
func (w *crashWorkload) ack(apply func(*crashModel), bytes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	apply(&w.model)
	w.acked++
	w.ackBytes += bytes
}

// writeSyncClose writes data at off, fsyncs and closes fd, then fsyncs
// dir if one is named: only then is the write acknowledged.
func writeSyncClose(fd int, data []byte, off int64, dir string) error {
	for done := 0; done < len(data); {
		n, err := unix.Pwrite(fd, data[done:], off+int64(done))
		if err != nil {
			unix.Close(fd)
			return err
		}
		done += n
	}
	if err := unix.Fsync(fd); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Close(fd); err != nil {
		return err
	}
	if dir != "" {
		return fsyncPath(dir)
	}
	return nil
}

// fsyncPath opens a directory and fsyncs it.
func fsyncPath(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.Fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// verify checks, through the mount at mnt, that the namespace and contents
// are exactly the model: every acknowledged entry and byte is there, and
// nothing acknowledged as removed has come back. It returns the bytes read.
func (w *crashWorkload) verify(mnt string) (int64, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	want := map[string][]string{}
	for _, f := range w.model.files {
		dir, name := filepath.Split(f.path)
		want[filepath.Clean(dir)] = append(want[filepath.Clean(dir)], name)
	}
	for _, d := range crashDirs {
		ents, err := os.ReadDir(filepath.Join(mnt, d))
		if err != nil {
			problems = append(problems, fmt.Sprintf("readdir %s: %v", d, err))
			continue
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		slices.Sort(got)
		slices.Sort(want[d])
		if !slices.Equal(got, want[d]) {
			problems = append(problems, fmt.Sprintf("%s holds %v, want %v (missing %v, extra %v)", d, got, want[d], minus(want[d], got), minus(got, want[d])))
		}
	}
	var read int64
	ids := make([]int, 0, len(w.model.files))
	for id := range w.model.files {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		f := w.model.files[id]
		n, p := w.verifyFile(mnt, f)
		read += n
		problems = append(problems, p...)
	}
	return read, problems
}

// verifyFile checks one file's size and every record.
func (w *crashWorkload) verifyFile(mnt string, f *crashFile) (int64, []string) {
	b, err := os.ReadFile(filepath.Join(mnt, f.path))
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", f.path, err)}
	}
	var problems []string
	if want := len(f.vers) * crashRecSize; len(b) != want {
		problems = append(problems, fmt.Sprintf("%s (file %d): size %d, want %d (%d records)", f.path, f.id, len(b), want, len(f.vers)))
	}
	for i, v := range f.vers {
		off := i * crashRecSize
		if off+crashRecSize > len(b) {
			problems = append(problems, fmt.Sprintf("%s: record %d (version %d) beyond the end", f.path, i, v))
			continue
		}
		got := b[off : off+crashRecSize]
		if want := crashRecord(w.seed, f.id, i, v); string(got) != string(want) {
			problems = append(problems, fmt.Sprintf("%s: record %d holds %s, want version %d", f.path, i, w.identify(f.id, i, v, got), v))
		}
	}
	return int64(len(b)), problems
}

// identify says what a wrong record holds: an older version, zeros, or
// something else, and where the first wrong byte is.
func (w *crashWorkload) identify(id, i, v int, got []byte) string {
	for old := v - 1; old >= 1; old-- {
		if string(got) == string(crashRecord(w.seed, id, i, old)) {
			return fmt.Sprintf("version %d (an acknowledged rewrite was lost)", old)
		}
	}
	want := crashRecord(w.seed, id, i, v)
	first := 0
	for first < len(got) && got[first] == want[first] {
		first++
	}
	zeros := strings.Count(string(got[first:]), "\x00")
	return fmt.Sprintf("other bytes from offset %d of the record on (%d of the %d after it zero)", first, zeros, len(got)-first)
}

// minus is a without the elements of b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
