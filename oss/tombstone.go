package oss

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stratafs/strata/layout"
)

// Tombstones. A destroyed object must not come back as a hole: a client
// still holding an old layout (after an unlink, a release or a migrate)
// would read zeros where data was, or write into an object no file owns.
// So an OST remembers what it destroyed, in an append-only log beside its
// objects, and answers ESTALE for any I/O to a remembered object; the
// client then asks the MDS for the current layout.
//
// A tombstone is needed only while a capability issued before the destroy
// can still be presented: the MDS signs capabilities for an hour, so
// tombstones older than TombstoneTTL are dropped (the log is rewritten
// without them once they are most of it).
const (
	tombstoneFile = "tombstones"
	// TombstoneTTL is how long a destroyed object is remembered: longer
	// than any capability the MDS issues lives.
	TombstoneTTL = 3 * time.Hour
	// tombstoneRecord is the size of one log record: ino u64, seq u32,
	// unix nanoseconds i64, big-endian.
	tombstoneRecord = 20
)

// tombstones is an OST's memory of destroyed objects.
type tombstones struct {
	fs   vfs
	dir  string
	path string

	mu      sync.Mutex
	f       vfile
	size    int64                     // bytes in the log
	records int                       // records in the log
	dead    map[layout.ObjectID]int64 // destroy time, unix nanoseconds
}

// openTombstones loads the log of an OST directory, dropping what expired
// before now and rewriting the log if that is most of it.
func openTombstones(fs vfs, dir string, now time.Time) (*tombstones, error) {
	t := &tombstones{fs: fs, dir: dir, path: filepath.Join(dir, tombstoneFile), dead: map[layout.ObjectID]int64{}}
	f, err := fs.OpenFile(t.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("oss: open %s: %w", t.path, err)
	}
	t.f = f
	// The log's own entry must be durable before any record in it counts.
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("oss: sync %s: %w", dir, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("oss: read %s: %w", t.path, err)
	}
	// A torn last record (a crash mid-append) is ignored and overwritten.
	whole := len(buf) / tombstoneRecord * tombstoneRecord
	cutoff := now.Add(-TombstoneTTL).UnixNano()
	for off := 0; off < whole; off += tombstoneRecord {
		r := buf[off : off+tombstoneRecord]
		id := layout.ObjectID{Ino: binary.BigEndian.Uint64(r[0:8]), Seq: binary.BigEndian.Uint32(r[8:12])}
		at := int64(binary.BigEndian.Uint64(r[12:20]))
		t.records++
		if at >= cutoff {
			t.dead[id] = at
		}
	}
	t.size = int64(whole)
	if err := t.compactLocked(cutoff, true); err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// isDead reports whether id was destroyed within TombstoneTTL.
func (t *tombstones) isDead(id layout.ObjectID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.dead[id]
	return ok
}

// add records ids as destroyed at now and makes the records durable before
// it returns, so that a crash after the objects' files are gone never
// forgets that they were destroyed.
func (t *tombstones) add(ids []layout.ObjectID, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	buf := make([]byte, 0, len(ids)*tombstoneRecord)
	at := now.UnixNano()
	for _, id := range ids {
		buf = binary.BigEndian.AppendUint64(buf, id.Ino)
		buf = binary.BigEndian.AppendUint32(buf, id.Seq)
		buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	}
	if _, err := t.f.WriteAt(buf, t.size); err != nil {
		return fmt.Errorf("oss: append to %s: %w", t.path, err)
	}
	if err := t.f.Datasync(); err != nil {
		return fmt.Errorf("oss: sync %s: %w", t.path, err)
	}
	t.size += int64(len(buf))
	t.records += len(ids)
	for _, id := range ids {
		t.dead[id] = at
	}
	return t.compactLocked(now.Add(-TombstoneTTL).UnixNano(), false)
}

// compactLocked forgets tombstones older than cutoff and, when the log
// holds more than twice the live records (or always, if force and any
// expired), rewrites it with the live ones only: a new file, synced, renamed
// over the old one, the directory synced. Call with mu held.
func (t *tombstones) compactLocked(cutoff int64, force bool) error {
	for id, at := range t.dead {
		if at < cutoff {
			delete(t.dead, id)
		}
	}
	live := len(t.dead)
	if t.records == live || !force && t.records < 2*live+1024 {
		return nil
	}
	buf := make([]byte, 0, live*tombstoneRecord)
	for id, at := range t.dead {
		buf = binary.BigEndian.AppendUint64(buf, id.Ino)
		buf = binary.BigEndian.AppendUint32(buf, id.Seq)
		buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	}
	tmp := t.path + ".tmp"
	nf, err := t.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("oss: compact %s: %w", t.path, err)
	}
	if _, err = nf.WriteAt(buf, 0); err == nil {
		err = nf.Datasync()
	}
	if err == nil {
		err = t.fs.Rename(tmp, t.path)
	}
	if err == nil {
		err = t.fs.SyncDir(t.dir)
	}
	if err != nil {
		nf.Close()
		t.fs.Remove(tmp)
		return fmt.Errorf("oss: compact %s: %w", t.path, err)
	}
	t.f.Close()
	t.f, t.size, t.records = nf, int64(len(buf)), live
	return nil
}

// close closes the log.
func (t *tombstones) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
