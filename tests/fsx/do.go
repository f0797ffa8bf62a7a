package fsx

import (
	"fmt"
	"math/rand/v2"

	"golang.org/x/sys/unix"
)

// setup writes the source file and creates the file under test empty.
func (e *engine) setup() error {
	e.src = make([]byte, e.cfg.SourceSize)
	r := rand.New(rand.NewPCG(uint64(e.cfg.Seed), 0x50c))
	for i := range e.src {
		e.src[i] = byte(r.Uint32())
	}
	fd, err := openRetry(e.cfg.SourcePath, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create source %s: %w", e.cfg.SourcePath, err)
	}
	if err := pwriteFull(fd, e.src, 0); err != nil {
		unix.Close(fd)
		return fmt.Errorf("write source: %w", err)
	}
	if err := retry(func() error { return unix.Fsync(fd) }); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fsync source: %w", err)
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close source: %w", err)
	}
	if e.srcFd, err = openRetry(e.cfg.SourcePath, unix.O_RDONLY, 0); err != nil {
		return fmt.Errorf("open source: %w", err)
	}
	got := make([]byte, len(e.src))
	if n, err := preadFull(e.srcFd, got, 0); err != nil || n != len(got) || string(got) != string(e.src) {
		return fmt.Errorf("source file reads back wrong (%d of %d bytes, err %v)", n, len(got), err)
	}
	if e.fd, err = openRetry(e.path(), unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0o644); err != nil {
		return fmt.Errorf("create %s: %w", e.path(), err)
	}
	return e.openPeer()
}

// openPeer opens the current file on the peer, for a peer that checks
// after every step.
func (e *engine) openPeer() error {
	if e.cfg.Peer == "" || !e.cfg.PeerEveryStep {
		return nil
	}
	var err error
	if e.peerFd, err = openRetry(e.peerPath(), unix.O_RDONLY, 0); err != nil {
		return fmt.Errorf("open on the peer %s: %w", e.peerPath(), err)
	}
	return nil
}

// do performs op on the file and the model. A wrong result of the call
// itself (a short read, wrong bytes read) is a *mismatch.
func (e *engine) do(op *Op) error {
	switch op.Kind {
	case Read:
		buf := make([]byte, op.Len)
		n, err := preadFull(e.fd, buf, op.Off)
		if err != nil {
			return fmt.Errorf("pread: %w", err)
		}
		op.Result = fmt.Sprintf("n=%#x", n)
		e.stats.BytesChecked += int64(n)
		return e.compareRead("pread", op.Off, op.Len, buf[:n])
	case Write:
		p := make([]byte, op.Len)
		pattern(p, op.Step, op.Off)
		if err := pwriteFull(e.fd, p, op.Off); err != nil {
			return fmt.Errorf("pwrite: %w", err)
		}
		e.m.write(op.Off, p)
	case MapRead:
		got, err := mapRead(e.fd, op.Off, op.Len)
		if err != nil {
			return err
		}
		e.stats.BytesChecked += int64(len(got))
		return e.compareRead("mapped read", op.Off, op.Len, got)
	case MapWrite:
		return e.mapWrite(op)
	case Truncate:
		if err := retry(func() error { return unix.Ftruncate(e.fd, op.Len) }); err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
		e.m.truncate(op.Len)
	case Fallocate:
		err := retry(func() error { return unix.Fallocate(e.fd, op.Mode, op.Off, op.Len) })
		if err != nil {
			if e.missing(op, FeatureFallocate, err) {
				return nil
			}
			return fmt.Errorf("fallocate(%s): %w", fallocName(op.Mode), err)
		}
		e.m.fallocate(op.Mode, op.Off, op.Len)
	case CopyFrom:
		want := e.src[op.SrcOff:min(op.SrcOff+op.Len, int64(len(e.src)))]
		return e.copyRange(op, e.srcFd, append([]byte(nil), want...))
	case CopyWithin:
		return e.copyRange(op, e.fd, e.m.slice(op.SrcOff, op.Len))
	case Reopen:
		if err := closeFd(&e.fd); err != nil {
			return fmt.Errorf("close: %w", err)
		}
		if e.cfg.Peer != "" && !e.cfg.PeerEveryStep {
			if err := e.peerCheck(op, true); err != nil {
				return err
			}
		}
		fd, err := openRetry(e.path(), unix.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("reopen: %w", err)
		}
		e.fd = fd
	case Recreate:
		return e.recreate(op)
	case Fsync:
		sync := unix.Fsync
		if op.Mode == 1 {
			sync = unix.Fdatasync
		}
		if err := retry(func() error { return sync(e.fd) }); err != nil {
			return fmt.Errorf("fsync: %w", err)
		}
	}
	return nil
}

// recreate closes the file (the peer checks it then, as after any close),
// unlinks it and creates the next one, empty.
func (e *engine) recreate(op *Op) error {
	if err := closeFd(&e.fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if e.cfg.Peer != "" && !e.cfg.PeerEveryStep {
		if err := e.peerCheck(op, true); err != nil {
			return err
		}
	}
	if err := closeFd(&e.peerFd); err != nil {
		return fmt.Errorf("peer close: %w", err)
	}
	if err := retry(func() error { return unix.Unlink(e.path()) }); err != nil {
		return fmt.Errorf("unlink %s: %w", e.path(), err)
	}
	e.fileNo++
	op.Mode = uint32(e.fileNo)
	fd, err := openRetry(e.path(), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", e.path(), err)
	}
	e.fd = fd
	e.m.truncate(0)
	return e.openPeer()
}

// mapWrite stores the step's pattern through a shared mapping, extending
// the file first as fsx does (a store past the end would fault).
func (e *engine) mapWrite(op *Op) error {
	if end := op.Off + op.Len; end > e.m.size() {
		if err := retry(func() error { return unix.Ftruncate(e.fd, end) }); err != nil {
			return fmt.Errorf("ftruncate before mapped write: %w", err)
		}
		e.m.truncate(end)
		op.Result = fmt.Sprintf("(extended to %#x first)", end)
	}
	p := make([]byte, op.Len)
	pattern(p, op.Step, op.Off)
	if err := mapWrite(e.fd, op.Off, p); err != nil {
		return err
	}
	e.m.write(op.Off, p)
	return nil
}

// copyRange copies op.Len bytes from op.SrcOff of in to op.Off of the file
// with copy_file_range, which may copy less per call; want is what the
// source range holds (shorter than op.Len where it runs past the end).
func (e *engine) copyRange(op *Op, in int, want []byte) error {
	roff, woff := op.SrcOff, op.Off
	done := 0
	for done < int(op.Len) {
		var n int
		err := retry(func() (err error) {
			n, err = unix.CopyFileRange(in, &roff, e.fd, &woff, int(op.Len)-done, 0)
			return err
		})
		if err != nil {
			if done == 0 && e.missing(op, FeatureCopyFileRange, err) {
				return e.copyByHand(op, want)
			}
			return fmt.Errorf("copy_file_range after %#x bytes: %w", done, err)
		}
		if n == 0 {
			break
		}
		done += n
	}
	op.Result = fmt.Sprintf("n=%#x", done)
	if done != len(want) {
		return &mismatch{reason: fmt.Sprintf("copy_file_range copied %#x bytes, want %#x", done, len(want))}
	}
	e.m.write(op.Off, want)
	return nil
}

// copyByHand is what cp(1) does where copy_file_range is refused.
func (e *engine) copyByHand(op *Op, want []byte) error {
	if err := pwriteFull(e.fd, want, op.Off); err != nil {
		return fmt.Errorf("pwrite (copy fallback): %w", err)
	}
	e.m.write(op.Off, want)
	return nil
}

// compareRead checks what a read of n bytes at off returned.
func (e *engine) compareRead(what string, off, n int64, got []byte) error {
	want := e.m.slice(off, n)
	if len(got) != len(want) {
		return &mismatch{reason: fmt.Sprintf("%s of %#x at %#x returned %#x bytes, want %#x (size %#x)", what, n, off, len(got), len(want), e.m.size())}
	}
	if bad := firstDiff(got, want); bad >= 0 {
		return &mismatch{
			reason: fmt.Sprintf("%s returned wrong data at %#x", what, off+int64(bad)),
			detail: e.describe(off, got, want, bad),
		}
	}
	return nil
}
