package client

import (
	"context"
	"errors"
	"fmt"
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
	mdts := make(map[uint32]string, len(resp.MDTs))
	for _, m := range resp.MDTs {
		mdts[m.Index] = m.Addr
	}
	lease := time.Duration(resp.LeaseMillis) * time.Millisecond
	if lease <= 0 {
		lease = 30 * time.Second
	}
	c.mu.Lock()
	c.session = resp.Session
	c.instance = resp.Instance
	c.mdsAddr = addr
	c.root = resp.Root
	c.fsname = resp.FSName
	c.lease = lease
	c.mdts = mdts
	c.defaults = resp.Defaults
	c.mu.Unlock()
	c.setOSTs(resp.OSTs)
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

// renew extends the session's lease once, recovering the session if the
// MDS lost it or restarted.
func (c *Client) renew(ctx context.Context) error {
	gen := c.rec.gen.Load()
	c.mu.RLock()
	addr, sess, lease, instance := c.mdsAddr, c.session, c.lease, c.instance
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, max(lease/3, time.Second))
	defer cancel()
	var resp proto.RenewResp
	err := c.rpc.Call(ctx, addr, proto.OpRenew, &proto.RenewReq{Session: sess}, &resp)
	if err == nil {
		c.setOSTs(resp.OSTs)
		if resp.Instance == instance || resp.Instance == 0 {
			return nil
		}
	} else if !recoverable(err) {
		return err
	}
	if err != nil {
		c.beginOutage("MDT0000", err)
	}
	if err := c.recoverSession(ctx, gen); err != nil {
		return err
	}
	c.endOutage("MDT0000")
	return nil
}
