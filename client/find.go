package client

import (
	"context"
	"fmt"

	"github.com/stratafs/strata/proto"
)

// FindPageLimit is how many matches a find page asks the MDS for.
const FindPageLimit = 1000

// Find is a search running at the MDSes (strata find): each call to Next
// asks for one page of the walk, from the MDS that owns the directory the
// walk is in, and subdirectories on other MDTs are searched at their
// owners once the walk of this part is done. It is not safe for
// concurrent use.
type Find struct {
	c      *Client
	cred   proto.Cred
	filter proto.FindFilter
	// next is the request for the next page of the current part of the
	// walk; nil when that part is done.
	next *proto.FindReq
	// remote lists the parts of the walk still to do: subdirectories on
	// other MDTs, as pages reported them.
	remote   []proto.FindFrame
	requests int
}

// NewFind starts a search of the subtree of start (an inode found under
// the name startName) for entries that satisfy filter, as cred. Nothing is
// asked of the MDS before the first Next.
func (c *Client) NewFind(cred proto.Cred, start uint64, startName string, filter proto.FindFilter) *Find {
	return &Find{c: c, cred: cred, filter: filter, next: &proto.FindReq{Cred: cred, Start: start, StartName: startName,
		Filter: filter, Limit: FindPageLimit}}
}

// Next returns the next page of the search, or nil when the search is
// done. A page may hold no entries (a part of the walk that matched
// nothing) and is still worth asking past.
func (f *Find) Next(ctx context.Context) (*proto.FindResp, error) {
	if f.next == nil {
		if len(f.remote) == 0 {
			return nil, nil
		}
		fr := f.remote[0]
		f.remote = f.remote[1:]
		f.next = &proto.FindReq{Cred: f.cred, Stack: []proto.FindFrame{fr}, Filter: f.filter, Limit: FindPageLimit}
	}
	req := f.next
	route := req.Start
	if len(req.Stack) > 0 {
		route = req.Stack[len(req.Stack)-1].Dir
	}
	var resp proto.FindResp
	f.requests++
	if err := f.c.mdsCall(ctx, route, proto.OpFind, req, &resp); err != nil {
		return nil, fmt.Errorf("client: find in %#x: %w", route, err)
	}
	f.remote = append(f.remote, resp.Remote...)
	if len(resp.Stack) == 0 {
		f.next = nil
	} else {
		f.next = &proto.FindReq{Cred: f.cred, Stack: resp.Stack, Filter: f.filter, Limit: FindPageLimit}
	}
	return &resp, nil
}

// Done reports whether the search has nothing more to ask for.
func (f *Find) Done() bool { return f.next == nil && len(f.remote) == 0 }

// Requests returns how many page requests the search has sent.
func (f *Find) Requests() int { return f.requests }
