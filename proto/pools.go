package proto

// OST pools (strata pool, Lustre's lctl pool_*). A pool is a named set of
// OSTs; a layout component naming a pool gets its objects only from the
// pool's active OSTs. Pools are filesystem-wide: any MDS serves these.

// Pool operations (PoolReq.Op).
const (
	PoolCreate  = "create"
	PoolAdd     = "add"
	PoolRemove  = "remove"
	PoolDestroy = "destroy"
	PoolList    = "list"
)

// PoolReq creates, changes, destroys or lists pools. Add and Remove name
// OSTs by index; Destroy refuses a pool that still has members (ENOTEMPTY).
// List with a Name lists that pool only.
type PoolReq struct {
	Op   string   `msgpack:"o"`
	Name string   `msgpack:"n,omitempty"`
	OSTs []uint32 `msgpack:"t,omitempty"`
}

// PoolResp lists the pools after the operation, in name order.
type PoolResp struct {
	Pools []Pool `msgpack:"p"`
}

// Pool is one pool and its member OSTs, in index order.
type Pool struct {
	Name string   `msgpack:"n" json:"name"`
	OSTs []uint32 `msgpack:"o" json:"osts"`
}
