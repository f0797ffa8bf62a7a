package oss

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
	"github.com/stratafs/strata/rpc"
)

// Registration retries back off from minBackoff to maxBackoff.
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 5 * time.Second
	callTimeout = 10 * time.Second // per registration or heartbeat call
)

// registerLoop registers with the MDS, trying each address in turn with
// backoff until one accepts, refuses for good or ctx ends. It returns the
// address that accepted.
func (s *Server) registerLoop(ctx context.Context) (string, error) {
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		mds := s.cfg.MDS[attempt%len(s.cfg.MDS)]
		err := s.register(ctx, mds)
		if err == nil {
			return mds, nil
		}
		if permanent(err) {
			return "", err
		}
		s.log.Warn("oss: registration with the MDS failed; retrying", "mds", mds, "attempt", attempt+1, "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(backoff + rand.N(backoff/4)):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// permanent reports whether the MDS refused the registration for a reason
// retrying cannot fix (wrong secret, another filesystem, an index clash).
func permanent(err error) bool {
	if errors.Is(err, ErrFSMismatch) || errors.Is(err, ErrIndexMismatch) {
		return true
	}
	var rerr *rpc.Error
	if !errors.As(err, &rerr) {
		return false
	}
	switch rerr.Errno {
	case syscall.EACCES, syscall.EPERM, syscall.EINVAL, syscall.EXDEV, syscall.EEXIST:
		return true
	}
	return false
}

// register announces the OSS and its OSTs to one MDS and records the
// indices it assigns to new OSTs.
func (s *Server) register(ctx context.Context, mds string) error {
	if err := s.learnFSName(ctx, mds); err != nil {
		return err
	}
	fsname, err := s.fsName()
	if err != nil {
		return err
	}
	req := proto.RegisterOSSReq{FSName: fsname, Addr: s.Addr()}
	for _, o := range s.osts {
		ann, err := announce(o)
		if err != nil {
			return err
		}
		req.OSTs = append(req.OSTs, ann)
	}
	var resp proto.RegisterOSSResp
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := s.client.Call(cctx, mds, proto.OpRegisterOSS, &req, &resp); err != nil {
		return fmt.Errorf("oss: register with %s: %w", mds, err)
	}
	if len(resp.Indices) != len(s.osts) {
		return fmt.Errorf("oss: register with %s: %d indices for %d OSTs: %w", mds, len(resp.Indices), len(s.osts), syscall.EPROTO)
	}
	for i, o := range s.osts {
		if err := o.SetIndex(resp.Indices[i]); err != nil {
			return err
		}
	}
	if err := s.indexOSTs(); err != nil {
		return err
	}
	for _, o := range s.osts {
		s.log.Info("oss: registered", "mds", mds, "ost", o.String(), "dir", o.Dir(), "uuid", o.UUID())
	}
	return nil
}

// learnFSName asks the MDS for its filesystem name (OpTargets) and records
// it in every OST, refusing an OST of another filesystem. The MDS accepts a
// registration only under its own name, so a failed question fails the
// attempt; an MDS that does not serve OpTargets (ENOSYS) or names no
// filesystem leaves the OSTs' names as they are.
func (s *Server) learnFSName(ctx context.Context, mds string) error {
	var resp proto.TargetsResp
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := s.client.Call(cctx, mds, proto.OpTargets, &proto.TargetsReq{}, &resp)
	if errors.Is(err, syscall.ENOSYS) || err == nil && resp.FSName == "" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("oss: ask %s for its filesystem: %w", mds, err)
	}
	for _, o := range s.osts {
		if err := o.SetFSName(resp.FSName); err != nil {
			return err
		}
	}
	return nil
}

// heartbeatLoop reports the OSTs' usage to the MDS every heartbeat
// interval until ctx ends. It moves to the next MDS address when one stops
// answering, and registers again when the MDS no longer knows this OSS.
func (s *Server) heartbeatLoop(ctx context.Context, mds string) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	next := 0
	for i, a := range s.cfg.MDS {
		if a == mds {
			next = i
		}
	}
	failing := false
	// The first heartbeat goes out at once: the MDS counts an OST as active
	// (and allocates objects on it) only once its OSS has recorded the
	// index and says so with a heartbeat.
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		err := s.heartbeat(ctx, mds)
		if err != nil && ctx.Err() == nil && errors.Is(err, syscall.ENOENT) {
			s.log.Info("oss: the MDS does not know this OSS; registering again", "mds", mds)
			err = s.register(ctx, mds)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.log.Warn("oss: heartbeat to the MDS failed", "mds", mds, "err", err)
			}
			failing = true
			next = (next + 1) % len(s.cfg.MDS)
			mds = s.cfg.MDS[next]
		case failing:
			s.log.Info("oss: heartbeats reach the MDS again", "mds", mds)
			failing = false
		}
	}
}

// heartbeat sends one OSSHeartbeat with the usage of every indexed OST.
func (s *Server) heartbeat(ctx context.Context, mds string) error {
	req := proto.OSSHeartbeatReq{Addr: s.Addr()}
	for _, o := range s.osts {
		if o.Index() < 0 {
			continue
		}
		ann, err := announce(o)
		if err != nil {
			s.log.Error("oss: statfs failed", "ost", o.String(), "err", err)
			continue
		}
		req.OSTs = append(req.OSTs, ann)
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return s.client.Call(cctx, mds, proto.OpOSSHeartbeat, &req, nil)
}

// advertiseAddr picks the address clients reach the server at: the
// configured one, else the listen address, with a wildcard host replaced
// by the local address this host uses to reach the MDS (or the hostname).
func advertiseAddr(configured, listen string, mds []string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen
	}
	for _, m := range mds {
		// Connecting a UDP socket sends nothing; it only asks the kernel
		// which source address routes to the MDS.
		c, err := net.Dial("udp", m)
		if err != nil {
			continue
		}
		local := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		return net.JoinHostPort(local.String(), port)
	}
	if h, err := os.Hostname(); err == nil {
		return net.JoinHostPort(h, port)
	}
	return listen
}
