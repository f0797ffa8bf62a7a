package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// Fallocate applies fallocate(2) to [off, off+length): mode 0 and
// FALLOC_FL_KEEP_SIZE preallocate on the OSTs (mode 0 also extends the
// file), FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE deallocates the range,
// which then reads as zeros, and FALLOC_FL_ZERO_RANGE zeroes it (extending
// the file unless KEEP_SIZE). Each object's share of the range, from the
// layout math, goes to its OSS. Other modes fail with EOPNOTSUPP.
func (f *File) Fallocate(ctx context.Context, mode uint32, off, length int64) error {
	if f.closed.Load() {
		return ErrClosed
	}
	if !f.canWrite() {
		return fmt.Errorf("client: fallocate %#x: not open for writing: %w", f.ino, syscall.EBADF)
	}
	if off < 0 || length <= 0 || off > layout.EOF-length {
		return fmt.Errorf("client: fallocate %#x at %d+%d: %w", f.ino, off, length, syscall.EINVAL)
	}
	keep := mode&unix.FALLOC_FL_KEEP_SIZE != 0
	var objMode uint32
	switch mode &^ unix.FALLOC_FL_KEEP_SIZE {
	case 0:
		objMode = proto.FallocAlloc
		if keep {
			objMode = proto.FallocKeepSize
		}
	case unix.FALLOC_FL_PUNCH_HOLE:
		if !keep {
			return fmt.Errorf("client: fallocate %#x: PUNCH_HOLE needs KEEP_SIZE: %w", f.ino, syscall.EOPNOTSUPP)
		}
		objMode = proto.FallocPunchHole
	case unix.FALLOC_FL_ZERO_RANGE:
		objMode = proto.FallocZeroRange
	default:
		return fmt.Errorf("client: fallocate %#x mode %#x: %w", f.ino, mode, syscall.EOPNOTSUPP)
	}
	in := f.in
	end := off + length
	// Buffered writes to the range land first, so the punch or the zeroes
	// come after them, as on a local disk.
	in.flushRange(off, end)
	in.mu.Lock()
	err := in.takeErr()
	in.invalidateLocked(off, end)
	size := in.size()
	in.mu.Unlock()
	if err != nil {
		return err
	}
	if keep && objMode != proto.FallocKeepSize {
		// Nothing past the end of file to punch or zero.
		end = min(end, size)
		if end <= off {
			return nil
		}
	}
	for attempt := 0; ; attempt++ {
		err = f.fallocateOnce(ctx, objMode, off, end-off)
		if !errors.Is(err, errLayoutChanged) || attempt >= layoutRetries {
			break
		}
	}
	if err != nil {
		return err
	}
	in.mu.Lock()
	if keep {
		// The size stays, but the data changed: mtime and the data
		// version move at the next report.
		in.lastWriteNow()
	} else {
		in.noteWrite(end)
	}
	in.mu.Unlock()
	if !keep && (f.strict || f.durableWrites()) {
		return f.reportSize(ctx, f.durableWrites())
	}
	return nil
}

// fallocateOnce is one attempt of Fallocate with the layout as it is now.
func (f *File) fallocateOnce(ctx context.Context, objMode uint32, off, length int64) error {
	f.in.mu.Lock()
	lay := f.in.lay
	f.in.mu.Unlock()
	exts := lay.Map(off, length, nil)
	return parallel(len(exts), func(i int) error {
		e := &exts[i]
		if e.Stripe < 0 {
			if objMode == proto.FallocPunchHole {
				return nil // nothing stored there to punch
			}
			return fmt.Errorf("client: fallocate %#x at %d: component %d has no objects: %w", f.ino, e.FileOffset, e.Comp, syscall.EIO)
		}
		ref := proto.ObjRef{OST: e.Object.OST, ID: e.Object.ID, Stripe: uint32(e.Stripe)}
		var resp proto.ObjWriteResp
		err := f.objCall(ctx, ref, func(cp proto.Capability, addr string) error {
			req := proto.ObjFallocateReq{Cap: cp, Obj: ref, Mode: objMode, Offset: e.ObjOffset, Length: e.Length}
			return f.c.rpc.Call(ctx, addr, proto.OpObjFalloc, &req, &resp)
		})
		if err != nil {
			return fmt.Errorf("client: fallocate %#x: object %s on OST %d: %w", f.ino, ref.ID, ref.OST, err)
		}
		f.in.mu.Lock()
		f.in.noteWritten(ref, resp.Verifier)
		f.in.mu.Unlock()
		return nil
	})
}

// lastWriteNow records a change of the file's data that leaves its size:
// the next report carries a new mtime. Call with mu held.
func (in *inode) lastWriteNow() {
	in.noteWrite(in.writeEnd)
}

// maxCopy bounds one CopyRange call: FUSE answers copy_file_range with a
// 32-bit count, and the kernel calls again for the rest.
const maxCopy = 1 << 30

// CopyRange copies n bytes of src at srcOff to dst at dstOff
// (copy_file_range(2)) and returns how many it copied: fewer when src ends
// first. Where a piece of the range lies in objects of one OST in both
// files, that OSS copies it locally (OpObjCopy); other pieces are read and
// written through this client.
func CopyRange(ctx context.Context, dst *File, dstOff int64, src *File, srcOff, n int64) (int64, error) {
	switch {
	case dst.closed.Load() || src.closed.Load():
		return 0, ErrClosed
	case !dst.canWrite() || !src.canRead():
		return 0, fmt.Errorf("client: copy_file_range %#x to %#x: %w", src.ino, dst.ino, syscall.EBADF)
	case srcOff < 0 || dstOff < 0 || n < 0:
		return 0, fmt.Errorf("client: copy_file_range %#x to %#x: %w", src.ino, dst.ino, syscall.EINVAL)
	}
	n = min(n, maxCopy, max(0, src.Size()-srcOff))
	if n == 0 {
		return 0, nil
	}
	src.in.flushRange(srcOff, srcOff+n)
	dst.in.flushRange(dstOff, dstOff+n)
	dst.in.mu.Lock()
	dst.in.invalidateLocked(dstOff, dstOff+n)
	dst.in.mu.Unlock()
	for done := int64(0); done < n; {
		m, err := copyPiece(ctx, dst, dstOff+done, src, srcOff+done, n-done)
		if err != nil {
			return done, err
		}
		done += m
		dst.in.mu.Lock()
		dst.in.noteWrite(dstOff + done)
		dst.in.mu.Unlock()
	}
	if dst.strict || dst.durableWrites() {
		if err := dst.reportSize(ctx, dst.durableWrites()); err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyPiece copies the first stretch of [srcOff, srcOff+n) that lies in one
// object of src and one of dst, and returns its length.
func copyPiece(ctx context.Context, dst *File, dstOff int64, src *File, srcOff, n int64) (int64, error) {
	se, sok := firstExtent(src, srcOff, n)
	de, dok := firstExtent(dst, dstOff, n)
	length := min(n, maxObjectIO)
	if sok {
		length = min(length, se.Length)
	}
	if dok {
		length = min(length, de.Length)
	}
	if sok && dok && se.Stripe >= 0 && de.Stripe >= 0 && se.Object.OST == de.Object.OST {
		sref := proto.ObjRef{OST: se.Object.OST, ID: se.Object.ID, Stripe: uint32(se.Stripe)}
		dref := proto.ObjRef{OST: de.Object.OST, ID: de.Object.ID, Stripe: uint32(de.Stripe)}
		scap, err := src.capability(ctx, nil)
		if err != nil {
			return 0, err
		}
		var resp proto.ObjCopyResp
		err = dst.objCall(ctx, dref, func(cp proto.Capability, addr string) error {
			req := proto.ObjCopyReq{SrcCap: scap, Src: sref, SrcOffset: se.ObjOffset, Cap: cp, Dst: dref,
				DstOffset: de.ObjOffset, Length: length}
			return dst.c.rpc.Call(ctx, addr, proto.OpObjCopy, &req, &resp)
		})
		if err == nil {
			dst.in.mu.Lock()
			dst.in.noteWritten(dref, resp.Verifier)
			dst.in.mu.Unlock()
			if resp.Copied < length {
				// The source object ends inside the piece: what
				// lies past it reads as zeros, so the copy must
				// too.
				rest := make([]byte, length-resp.Copied)
				err = dst.transfer(ctx, true, rest, dstOff+resp.Copied, dst.durableWrites())
			}
			return length, err
		}
		if !errors.Is(err, errLayoutChanged) && !errors.Is(err, syscall.ESTALE) {
			return 0, err
		}
		// A layout changed under the copy: go the long way.
	}
	buf := getBuf(int(length))[:length]
	defer putBuf(buf)
	if err := src.transfer(ctx, false, buf, srcOff, false); err != nil {
		return 0, err
	}
	if err := dst.transfer(ctx, true, buf, dstOff, dst.durableWrites()); err != nil {
		return 0, err
	}
	return length, nil
}

// firstExtent maps the start of [off, off+n) in f's current layout.
func firstExtent(f *File, off, n int64) (layout.Extent, bool) {
	f.in.mu.Lock()
	lay := f.in.lay
	f.in.mu.Unlock()
	exts := lay.Map(off, n, nil)
	if len(exts) == 0 {
		return layout.Extent{}, false
	}
	return exts[0], true
}
