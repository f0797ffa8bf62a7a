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
	c.mdsAddr = addr
	c.root = resp.Root
	c.fsname = resp.FSName
	c.lease = lease
	c.mdts = mdts
	c.defaults = resp.Defaults
	c.mu.Unlock()
	c.setOSTs(resp.OSTs)
}

// renewLoop renews the session every lease/3 until the client closes. A
// session the MDS no longer knows (ENOTCONN: its lease expired, or the MDS
// restarted) is replaced by a new one; files opened under the old session
// keep working for data but their closes are refused by the MDS.
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
			c.log.Warn("client: renew session", "err", err)
		}
	}
}

// renew extends the session's lease once, reconnecting if the session is gone.
func (c *Client) renew(ctx context.Context) error {
	c.mu.RLock()
	addr, sess, lease := c.mdsAddr, c.session, c.lease
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, max(lease/3, time.Second))
	defer cancel()
	var resp proto.RenewResp
	err := c.rpc.Call(ctx, addr, proto.OpRenew, &proto.RenewReq{Session: sess}, &resp)
	if err == nil {
		c.setOSTs(resp.OSTs)
		return nil
	}
	if !errors.Is(err, syscall.ENOTCONN) {
		return err
	}
	return c.reconnect(ctx, sess, err)
}

// reconnect replaces session stale, which the MDS no longer knows (cause
// says how that was learnt), with a new session. Callers that find the same
// session gone at once share one new session: whoever comes second finds
// it already replaced.
func (c *Client) reconnect(ctx context.Context, stale uint64, cause error) error {
	c.reconnectMu.Lock()
	defer c.reconnectMu.Unlock()
	if c.sessionID() != stale {
		return nil
	}
	c.log.Warn("client: session lost; reconnecting", "session", fmt.Sprintf("%#x", stale), "err", cause)
	return c.connect(ctx)
}

// withSession runs call with the current session and, if the MDS no longer
// knows that session (ENOTCONN: its lease expired or the MDS restarted),
// once more with a new one.
func (c *Client) withSession(ctx context.Context, call func(session uint64) error) error {
	sess := c.sessionID()
	err := call(sess)
	if !errors.Is(err, syscall.ENOTCONN) {
		return err
	}
	if rerr := c.reconnect(ctx, sess, err); rerr != nil {
		return errors.Join(err, rerr)
	}
	return call(c.sessionID())
}
