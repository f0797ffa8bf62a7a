package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// HSM, the client's side. A released file (its layout says so) is restored
// before it is read or written: the first reader asks its MDS for a restore
// and waits, in slices, for the agent to finish it; every other reader's
// request finds that restore queued and waits for the same one. A waiter
// stops between slices when its caller is interrupted. A restore that
// failed leaves the file released and its readers get EIO: nothing is ever
// read from a released layout (it has no objects; mapping it would read
// zeros).

// errReleased means a transfer met a released layout: the file must be
// restored and the transfer mapped again.
var errReleased = errors.New("client: the file is released to the archive")

// HsmState returns a file's HSM state. It never triggers a restore.
func (c *Client) HsmState(ctx context.Context, ino uint64) (proto.HsmState, error) {
	var resp proto.HsmStateResp
	if err := c.mdsCall(ctx, ino, proto.OpHsmState, &proto.HsmStateReq{Ino: ino}, &resp); err != nil {
		return proto.HsmState{}, fmt.Errorf("client: hsm state of %#x: %w", ino, err)
	}
	return resp.State, nil
}

// HsmRequest sends an HSM request (archive, restore, release, remove,
// cancel, set flags) for ino under cred. With req.Wait it returns only once
// the action finished, asking again after every wait slice, and fails with
// EINTR if ctx's interrupt (WithInterrupt) fires meanwhile.
func (c *Client) HsmRequest(ctx context.Context, cred proto.Cred, req proto.HsmRequestReq) (proto.HsmRequestResp, error) {
	req.Cred = cred
	for {
		var resp proto.HsmRequestResp
		err := c.mdsCall(ctx, req.Ino, proto.OpHsmRequest, &req, &resp)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, syscall.EAGAIN) || !req.Wait {
			return resp, fmt.Errorf("client: hsm %s of %#x: %w", proto.HsmActionName(req.Action), req.Ino, err)
		}
		if err := interrupted(ctx); err != nil {
			return resp, fmt.Errorf("client: waiting for hsm %s of %#x: %w", proto.HsmActionName(req.Action), req.Ino, err)
		}
		// Keep waiting for the action the first request queued or found.
		if req.Seq == 0 {
			st, serr := c.HsmState(ctx, req.Ino)
			if serr != nil {
				return resp, serr
			}
			req.Seq = st.Action.Seq
		}
		req.Action = proto.HsmWait
	}
}

// interrupted reports EINTR if the caller behind ctx gave up.
func interrupted(ctx context.Context) error {
	intr, _ := ctx.Value(interruptKey{}).(<-chan struct{})
	select {
	case <-intr:
		return syscall.EINTR
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// Restore brings a released file back (transparent restore): it returns at
// once for a file that is not released, else once the file's data is on
// the OSTs again, with the new layout. It fails with EIO if the restore
// failed (the file stays released) and EINTR if the caller is interrupted.
func (c *Client) Restore(ctx context.Context, ino uint64) error {
	resp, err := c.HsmRequest(ctx, c.cred, proto.HsmRequestReq{Ino: ino, Action: proto.HsmRestore, Wait: true})
	if err != nil {
		return err
	}
	if resp.State.Flags&proto.HsmReleased != 0 {
		return fmt.Errorf("client: restore of %#x failed (%s): %w", ino, resp.State.Action.Error, syscall.EIO)
	}
	return nil
}

// Released reports whether the file's layout, as this client knows it, is
// released: reading or writing it needs a restore first.
func (f *File) Released() bool {
	f.in.mu.Lock()
	defer f.in.mu.Unlock()
	return f.in.lay.Released
}

// Restore restores the file if it is released (see Client.Restore) and
// takes in the restored layout. The FUSE mount calls it before a read or
// write, with the request's interrupt in ctx.
func (f *File) Restore(ctx context.Context) error {
	if !f.Released() {
		return nil
	}
	if err := f.c.Restore(ctx, f.ino); err != nil {
		return err
	}
	f.capMu.Lock()
	defer f.capMu.Unlock()
	_, err := f.refreshLocked(ctx)
	return err
}

// noteAccess records, in the background, a read-open of a file whose atime
// is older than proto.HsmAccessGrain (HSM release policies pick the least
// recently used files; reads never reach the MDS).
func (c *Client) noteAccess(cred proto.Cred, a *proto.Attr) {
	if !a.IsRegular() || time.Since(time.Unix(0, a.Atime)) <= proto.HsmAccessGrain*time.Second || c.bg.Err() != nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if _, err := c.HsmRequest(c.bg, cred, proto.HsmRequestReq{Ino: a.Ino, Action: proto.HsmAccess}); err != nil {
			c.log.Debug("client: record an access", "ino", fmt.Sprintf("%#x", a.Ino), "err", err)
		}
	}()
}

// HsmImport creates in parent a released stub of an archived object (see
// proto.HsmImportReq).
func (c *Client) HsmImport(ctx context.Context, cred proto.Cred, req proto.HsmImportReq) (proto.Attr, error) {
	req.Cred = cred
	var resp proto.EntryResp
	if err := c.mdsCall(ctx, req.Parent, proto.OpHsmImport, &req, &resp); err != nil {
		return proto.Attr{}, fmt.Errorf("client: hsm import %q into %#x: %w", req.Name, req.Parent, err)
	}
	return resp.Attr, nil
}

// HsmScan reads one page of the regular files of an MDT from the MDS that
// serves it (HSM policies).
func (c *Client) HsmScan(ctx context.Context, mdt uint32, after uint64, limit int) (proto.HsmScanResp, error) {
	var resp proto.HsmScanResp
	err := c.mdsCall(ctx, uint64(mdt)<<48, proto.OpHsmScan, &proto.HsmScanReq{MDT: mdt, After: after, Limit: limit}, &resp)
	if err != nil {
		return resp, fmt.Errorf("client: hsm scan of MDT%04x: %w", mdt, err)
	}
	return resp, nil
}

// MDTIndexes lists the MDTs of the filesystem.
func (c *Client) MDTIndexes() []uint32 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]uint32, 0, len(c.mdts))
	for m := range c.mdts {
		out = append(out, m)
	}
	return out
}

// HsmRegister registers an HSM agent with the coordinator.
func (c *Client) HsmRegister(ctx context.Context, name string, archives []uint32) (uint64, error) {
	var resp proto.HsmRegisterResp
	if err := c.mdsCall(ctx, c.Root(), proto.OpHsmRegister, &proto.HsmRegisterReq{Name: name, Archives: archives}, &resp); err != nil {
		return 0, fmt.Errorf("client: hsm register %q: %w", name, err)
	}
	return resp.Agent, nil
}

// HsmClaim claims up to max queued actions for an agent, waiting up to a
// slice for some.
func (c *Client) HsmClaim(ctx context.Context, agent uint64, archives []uint32, max int) ([]proto.HsmClaim, error) {
	var resp proto.HsmClaimResp
	req := proto.HsmClaimReq{Agent: agent, Archives: archives, Max: max}
	if err := c.mdsCall(ctx, c.Root(), proto.OpHsmClaim, &req, &resp); err != nil {
		return nil, fmt.Errorf("client: hsm claim: %w", err)
	}
	return resp.Actions, nil
}

// HsmStart asks the file's MDS for what a claimed action needs.
func (c *Client) HsmStart(ctx context.Context, cl proto.HsmClaim) (*proto.HsmWork, error) {
	var w proto.HsmWork
	req := proto.HsmStartReq{Ino: cl.Ino, Seq: cl.Seq, Attempt: cl.Attempt}
	if err := c.mdsCall(ctx, cl.Ino, proto.OpHsmStart, &req, &w); err != nil {
		return nil, fmt.Errorf("client: hsm start of %s on %#x: %w", proto.HsmActionName(cl.Kind), cl.Ino, err)
	}
	return &w, nil
}

// HsmProgress reports the bytes an action moved; it returns whether the
// action was cancelled.
func (c *Client) HsmProgress(ctx context.Context, w *proto.HsmWork, bytes uint64) (bool, error) {
	var resp proto.HsmProgressResp
	req := proto.HsmProgressReq{Ino: w.Ino, Seq: w.Seq, Attempt: w.Attempt, Bytes: bytes}
	if err := c.mdsCall(ctx, w.Ino, proto.OpHsmProgress, &req, &resp); err != nil {
		return false, fmt.Errorf("client: hsm progress of %#x: %w", w.Ino, err)
	}
	return resp.Cancel, nil
}

// HsmComplete ends an action (req.Ino, Seq and Attempt name it).
func (c *Client) HsmComplete(ctx context.Context, req proto.HsmCompleteReq) error {
	if err := c.mdsCall(ctx, req.Ino, proto.OpHsmComplete, &req, nil); err != nil {
		return fmt.Errorf("client: hsm complete of %#x: %w", req.Ino, err)
	}
	return nil
}

// HsmList lists the coordinator's queue and agents.
func (c *Client) HsmList(ctx context.Context) (proto.HsmListResp, error) {
	var resp proto.HsmListResp
	if err := c.mdsCall(ctx, c.Root(), proto.OpHsmList, &proto.HsmListReq{}, &resp); err != nil {
		return resp, fmt.Errorf("client: hsm list: %w", err)
	}
	return resp, nil
}
