package fuse

import (
	"context"
	"math"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// Locks reach the mount because it asks for them (MountOptions.EnableLocks):
// fcntl locks come as GETLK, SETLK and SETLKW, flock(2) as SETLK and SETLKW
// with FUSE_LK_FLOCK, and the MDS keeps both for the whole cluster (see the
// client package). The kernel keeps no lock of its own, so it tells the
// mount when locks go with a close: FLUSH carries the closing process's
// lock owner, whose fcntl locks on the file POSIX releases at any close of
// it, and the last RELEASE of an open file that took a flock lock carries
// FUSE_RELEASE_FLOCK_UNLOCK.

// kernelOffsetMax is the kernel's OFFSET_MAX: a lock range to the end of the
// file, which the wire and the library write as End -1.
const kernelOffsetMax = math.MaxInt64

// lockOf converts a kernel lock request.
func lockOf(in *gofuse.LkIn) client.Lock {
	lk := client.Lock{
		Type:  uint8(in.Lk.Typ),
		Start: int64(min(in.Lk.Start, kernelOffsetMax)),
		End:   -1,
		Pid:   in.Lk.Pid,
		Flock: in.LkFlags&gofuse.FUSE_LK_FLOCK != 0,
	}
	if in.Lk.End < kernelOffsetMax {
		lk.End = int64(in.Lk.End)
	}
	if lk.Pid == 0 {
		lk.Pid = in.Pid
	}
	return lk
}

// GetLk serves F_GETLK: the first conflicting lock, with the pid of its
// holder on whichever client it is, or F_UNLCK.
func (fs *fileSystem) GetLk(cancel <-chan struct{}, in *gofuse.LkIn, out *gofuse.LkOut) gofuse.Status {
	c, err := fs.c.GetLk(fs.ctx(cancel), fs.ino(in.NodeId), in.Owner, lockOf(in))
	if err != nil {
		return fs.status("getlk", err)
	}
	out.Lk = gofuse.FileLock{Typ: uint32(c.Type)}
	if c.Type == proto.LockUnlock {
		return gofuse.OK
	}
	out.Lk.Start, out.Lk.End, out.Lk.Pid = uint64(c.Start), kernelOffsetMax, c.Pid
	if c.End >= 0 {
		out.Lk.End = uint64(c.End)
	}
	return gofuse.OK
}

// SetLk serves F_SETLK and flock with LOCK_NB: a conflict is EAGAIN.
func (fs *fileSystem) SetLk(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	return fs.status("setlk", fs.c.SetLk(fs.ctx(cancel), fs.ino(in.NodeId), in.Owner, lockOf(in), false))
}

// SetLkw serves F_SETLKW and blocking flock: it waits until the lock is
// granted, EDEADLK, or the kernel interrupts the request (a signal), which
// fails it with EINTR once the MDS has answered the request in flight. The
// kernel turns that EINTR into a restart for callers whose signal handler
// has SA_RESTART, as POSIX wants.
func (fs *fileSystem) SetLkw(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	ctx, stop := context.WithCancel(fs.ctx(cancel))
	defer stop()
	go func() {
		select {
		case <-cancel:
			stop()
		case <-ctx.Done():
		}
	}()
	return fs.status("setlkw", fs.c.SetLk(ctx, fs.ino(in.NodeId), in.Owner, lockOf(in), true))
}

// releaseLocks releases the fcntl locks (flock false) or the flock lock of
// a lock owner on a node after a close.
func (fs *fileSystem) releaseLocks(nodeID, owner uint64, flock bool) {
	if err := fs.c.Unlock(fs.ctx(nil), fs.ino(nodeID), owner, flock); err != nil {
		fs.log.Warn("fuse: release locks at close", "ino", fs.ino(nodeID), "owner", owner, "flock", flock, "err", err)
	}
}
