package oss

import "sync/atomic"

// OpCounts counts object operations by type, failed ones included.
type OpCounts struct {
	Write   uint64 `json:"write"`
	Read    uint64 `json:"read"`
	Punch   uint64 `json:"punch"`
	Sync    uint64 `json:"sync"`
	Getattr uint64 `json:"getattr"`
	Destroy uint64 `json:"destroy"`
	Statfs  uint64 `json:"statfs"`
}

// add adds c to the counts.
func (o *OpCounts) add(c OpCounts) {
	o.Write += c.Write
	o.Read += c.Read
	o.Punch += c.Punch
	o.Sync += c.Sync
	o.Getattr += c.Getattr
	o.Destroy += c.Destroy
	o.Statfs += c.Statfs
}

// OSTStats are one OST's counters since it was opened.
type OSTStats struct {
	Index        int64    `json:"index"` // -1 until assigned
	UUID         string   `json:"uuid"`
	Dir          string   `json:"dir"`
	BytesRead    uint64   `json:"bytes_read"`
	BytesWritten uint64   `json:"bytes_written"`
	Ops          OpCounts `json:"ops"`
	Errors       uint64   `json:"errors"`       // operations that failed
	OpenHandles  int      `json:"open_handles"` // object files held open
}

// ostCounters are an OST's live counters.
type ostCounters struct {
	bytesRead, bytesWritten atomic.Uint64

	writes, reads, punches, syncs, getattrs, destroys, statfs atomic.Uint64

	errors atomic.Uint64
}

// Stats returns the OST's counters.
func (o *OST) Stats() OSTStats {
	c := &o.stats
	id := o.id.Load()
	return OSTStats{
		Index:        id.Index,
		UUID:         id.UUID,
		Dir:          o.dir,
		BytesRead:    c.bytesRead.Load(),
		BytesWritten: c.bytesWritten.Load(),
		Ops: OpCounts{
			Write:   c.writes.Load(),
			Read:    c.reads.Load(),
			Punch:   c.punches.Load(),
			Sync:    c.syncs.Load(),
			Getattr: c.getattrs.Load(),
			Destroy: c.destroys.Load(),
			Statfs:  c.statfs.Load(),
		},
		Errors:      c.errors.Load(),
		OpenHandles: o.handles.len(),
	}
}

// Stats are an OSS's counters: totals over its OSTs and the requests the
// server refused before they reached an OST.
type Stats struct {
	BytesRead    uint64     `json:"bytes_read"`
	BytesWritten uint64     `json:"bytes_written"`
	Ops          OpCounts   `json:"ops"`
	Errors       uint64     `json:"errors"`
	CapDenied    uint64     `json:"cap_denied"`   // requests with a bad or expired capability
	BadRequests  uint64     `json:"bad_requests"` // undecodable requests and unknown OSTs
	OSTs         []OSTStats `json:"osts"`
}

// serverCounters are the server's own live counters.
type serverCounters struct {
	capDenied, badRequests atomic.Uint64
}
