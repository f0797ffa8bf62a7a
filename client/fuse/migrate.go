package fuse

import (
	"encoding/json"
	"sync"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stratafs/strata/layout"
)

// strata migrate through the mount: setxattr user.strata.migrate on a
// file with the JSON of a MigrateRequest restripes it (client.Migrate) as
// the caller and returns when it is done; meanwhile getxattr of the same
// name reads the JSON of a MigrateStatus, for progress.
const xattrMigrate = "user.strata.migrate"

// MigrateRequest is the value that starts a migration: the new layout's
// fields (those left unset keep the file's).
type MigrateRequest struct {
	Spec layout.Spec `json:"spec"`
}

// MigrateStatus is how far a migration running through this mount is.
type MigrateStatus struct {
	Phase string `json:"phase"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// migrations are the migrations running through a mount, by inode.
type migrations struct {
	mu sync.Mutex
	m  map[uint64]*MigrateStatus
}

// setMigrateXattr runs a migration of ino.
func (fs *fileSystem) setMigrateXattr(cancel <-chan struct{}, h *gofuse.InHeader, ino uint64, data []byte) gofuse.Status {
	var req MigrateRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return gofuse.EINVAL
	}
	if err := req.Spec.Validate(); err != nil {
		return gofuse.EINVAL
	}
	st := &MigrateStatus{Phase: "starting"}
	fs.migrating.mu.Lock()
	if fs.migrating.m == nil {
		fs.migrating.m = map[uint64]*MigrateStatus{}
	}
	if fs.migrating.m[ino] != nil {
		fs.migrating.mu.Unlock()
		return gofuse.Status(syscall.EBUSY)
	}
	fs.migrating.m[ino] = st
	fs.migrating.mu.Unlock()
	defer func() {
		fs.migrating.mu.Lock()
		delete(fs.migrating.m, ino)
		fs.migrating.mu.Unlock()
	}()
	progress := func(phase string, done, total int64) {
		fs.migrating.mu.Lock()
		st.Phase, st.Done, st.Total = phase, done, total
		fs.migrating.mu.Unlock()
	}
	_, err := fs.c.Migrate(fs.ctx(cancel), fs.cred(h), ino, req.Spec, progress)
	fs.changed()
	return fs.status("migrate", err)
}

// getMigrateXattr reports the migration of ino running here.
func (fs *fileSystem) getMigrateXattr(ino uint64) ([]byte, error) {
	fs.migrating.mu.Lock()
	defer fs.migrating.mu.Unlock()
	st := fs.migrating.m[ino]
	if st == nil {
		return nil, syscall.ENODATA
	}
	return json.Marshal(st)
}
