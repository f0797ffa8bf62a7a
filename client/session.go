package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// minRenew bounds how often the lease is renewed, whatever the MDS says.
const minRenew = 100 * time.Millisecond

// connect opens a session at the first MDS of the configuration that
// answers and installs what it returns.
func (c *Client) connect(ctx context.Context) error {
	var errs []error
	for _, addr := range c.cfg.MDS {
		var resp proto.ConnectResp
		err := c.rpc.Call(ctx, addr, proto.OpConnect, &proto.ConnectReq{FSName: c.cfg.FSName, ClientID: c.id}, &resp)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.install(addr, &resp)
		c.log.Info("client: connected", "mds", addr, "fsname", resp.FSName,
			"session", fmt.Sprintf("%#x", resp.Session), "osts", len(resp.OSTs), "mdts", len(resp.MDTs))
		return nil
	}
	return fmt.Errorf("client: connect to %q: %w", c.cfg.FSName, errors.Join(errs...))
}

// install records a session and the routing tables from a connect reply.
func (c *Client) install(addr string, resp *proto.ConnectResp) {
	lease := time.Duration(resp.LeaseMillis) * time.Millisecond
	if lease <= 0 {
		lease = 30 * time.Second
	}
	c.mu.Lock()
	c.session = resp.Session
	c.mdsAddr = addr
	c.root = resp.Root
	c.fsname = resp.FSName
	c.lease = lease
	c.defaults = resp.Defaults
	c.mu.Unlock()
	c.setMDTs(resp.MDTs)
	c.setOSTs(resp.OSTs)
}

// setMDTs installs an MDT table and returns the MDTs whose owner changed
// (a new epoch) since the client last saw them: their new owners hold
// only what the store kept, and the client replays the rest to them.
func (c *Client) setMDTs(table []proto.MDT) []uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mdts == nil {
		c.mdts, c.epochs = map[uint32]string{}, map[uint32]uint64{}
	}
	var changed []uint32
	for _, m := range table {
		if m.Addr != "" {
			c.mdts[m.Index] = m.Addr
		}
		if old, ok := c.epochs[m.Index]; ok && m.Epoch != 0 && m.Epoch != old {
			changed = append(changed, m.Index)
		}
		if m.Epoch != 0 {
			c.epochs[m.Index] = m.Epoch
		}
	}
	return changed
}

// mdsOwners lists the distinct addresses of the MDT owners.
func (c *Client) mdsOwners() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, a := range c.mdts {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = append(out, c.mdsAddr)
	}
	return out
}

// renewLoop renews the session every lease/3 until the client closes. An
// MDS that no longer knows the session, or that is unreachable, or that is
// a new run, sends the client through recoverSession.
func (c *Client) renewLoop() {
	defer c.wg.Done()
	for {
		c.mu.RLock()
		every := max(c.lease/3, minRenew)
		c.mu.RUnlock()
		select {
		case <-c.bg.Done():
			return
		case <-time.After(every):
		}
		if err := c.renew(c.bg); err != nil && c.bg.Err() == nil {
			c.log.Debug("client: renew session", "err", err)
		}
	}
}

// renew extends the session's lease at every MDS that owns an MDT (each
// keeps the session's liveness in its memory), recovering if one is
// unreachable, restarted, or no longer knows the session.
func (c *Client) renew(ctx context.Context) error {
	gen := c.rec.gen.Load()
	c.mu.RLock()
	sess, lease := c.session, c.lease
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, max(lease/3, time.Second))
	defer cancel()
	var failed error
	for _, addr := range c.mdsOwners() {
		var resp proto.RenewResp
		err := c.rpc.Call(ctx, addr, proto.OpRenew, &proto.RenewReq{Session: sess}, &resp)
		switch {
		case err == nil:
			c.setOSTs(resp.OSTs)
		case errors.Is(err, syscall.ENOTCONN):
			return c.evicted(ctx, sess)
		case recoverable(err):
			failed = err
		default:
			return err
		}
	}
	// A restarted or moved MDS shows as a new epoch in the MDT table,
	// which recoverSession reads.
	if err := c.recoverSession(ctx, gen); err != nil {
		return errors.Join(failed, err)
	}
	return failed
}
