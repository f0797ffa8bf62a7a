package fake

import (
	"fmt"
	"syscall"
	"unsafe"

	"github.com/stratafs/strata/rdma"
)

// domain is a node's protection domain: the regions peers can reach by key.
type domain struct {
	node       *Node
	regions    map[uint32]*region
	registered int64
}

var _ rdma.Domain = (*domain)(nil)

// Register maps size bytes outside the Go heap and registers them.
func (d *domain) Register(size int, access rdma.Access) (rdma.Region, error) {
	if size <= 0 {
		return nil, fmt.Errorf("rdma: register %d bytes: size must be positive", size)
	}
	f := d.node.fab
	f.mu.Lock()
	if lim := d.node.memlock; lim > 0 && d.registered+int64(size) > lim {
		f.mu.Unlock()
		return nil, rdma.MemlockError(size, syscall.ENOMEM)
	}
	d.registered += int64(size)
	f.mu.Unlock()

	b, err := rdma.MapMemory(size)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		d.registered -= int64(size)
		return nil, err
	}
	f.nextKey += 0x101 // keys that are not consecutive catch off-by-one rkeys
	r := &region{dom: d, buf: b, key: f.nextKey, access: access}
	d.regions[r.key] = r
	return r, nil
}

// lookupLocked finds the region a peer's access to n bytes at rem falls in
// and checks it grants want; f.mu is held.
func (d *domain) lookupLocked(rem rdma.Remote, n int, want rdma.Access) ([]byte, bool) {
	r := d.regions[rem.Key]
	if r == nil || r.access&want != want || n > int(rem.Len) {
		return nil, false
	}
	base := uint64(uintptr(unsafe.Pointer(&r.buf[0])))
	if rem.Addr < base || rem.Addr+uint64(n) > base+uint64(len(r.buf)) {
		return nil, false
	}
	off := int(rem.Addr - base)
	return r.buf[off : off+n], true
}

// region is registered fake memory.
type region struct {
	dom    *domain
	buf    []byte
	key    uint32
	access rdma.Access
	closed bool
}

var _ rdma.Region = (*region)(nil)

// Bytes returns the region's memory.
func (r *region) Bytes() []byte { return r.buf }

// Remote describes the region for peers.
func (r *region) Remote() rdma.Remote {
	return rdma.Remote{Addr: uint64(uintptr(unsafe.Pointer(&r.buf[0]))), Key: r.key, Len: uint32(len(r.buf))}
}

// Close deregisters and unmaps the region.
func (r *region) Close() error {
	f := r.dom.node.fab
	f.mu.Lock()
	if r.closed {
		f.mu.Unlock()
		return nil
	}
	r.closed = true
	delete(r.dom.regions, r.key)
	r.dom.registered -= int64(len(r.buf))
	f.mu.Unlock()
	return rdma.UnmapMemory(r.buf)
}

// localLocked returns r[off:off+n] if r is an open region of d; f.mu is held.
func (d *domain) localLocked(r rdma.Region, off, n int) ([]byte, error) {
	fr, ok := r.(*region)
	if !ok || fr.dom != d {
		return nil, fmt.Errorf("rdma: region not registered in this domain")
	}
	if fr.closed {
		return nil, fmt.Errorf("rdma: region deregistered")
	}
	if off < 0 || n < 0 || off+n > len(fr.buf) {
		return nil, fmt.Errorf("rdma: range [%d,%d) outside a %d-byte region", off, off+n, len(fr.buf))
	}
	return fr.buf[off : off+n], nil
}
