package client

import "github.com/stratafs/strata/proto"

// Hooks into the lease cache for the external tests.

// LeaseGenForTest returns the lease cache's generation.
func (c *Client) LeaseGenForTest() uint64 { return c.leaseGen() }

// RaiseLeaseFloorForTest moves the floor past every generation taken so
// far, as an overflow of the change marks does: replies in flight are not
// cached.
func (c *Client) RaiseLeaseFloorForTest() {
	c.leases.mu.Lock()
	c.leases.floor = c.leases.touchLocked()
	c.leases.mu.Unlock()
}

// LeasedForTest applies a reply's lease as the namespace calls do.
func (c *Client) LeasedForTest(gen uint64, lease uint32, dir uint64, names map[string]uint64, attrs ...proto.Attr) {
	c.leased(gen, lease, dir, names, attrs...)
}

// CachedAbsentForTest reports whether a lookup of name in parent would be
// answered "no such file" from the cache.
func (c *Client) CachedAbsentForTest(parent uint64, name string) bool {
	return c.cachedAbsent(parent, name)
}
