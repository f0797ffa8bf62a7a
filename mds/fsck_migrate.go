package mds

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/stratafs/strata/proto"
)

// migrationChecker finds migrations abandoned by their client (past their
// deadline) and migrations of files that no longer exist: their new
// objects would otherwise stay allocated until the next migration of the
// file. Repair aborts them as the MDS does (the new objects are queued for
// destruction; a frozen file keeps its objects under the new generation).
type migrationChecker struct {
	cursor []byte
}

func (c *migrationChecker) name() string { return fsckMigrations }

func (c *migrationChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	start, end := r.s.keys.migrationRange()
	return r.s.fsckRecords(ctx, &c.cursor, start, end, func(t *mtx, key, v []byte) (*fsckFinding, error) {
		if len(key) < 8 {
			return nil, fmt.Errorf("mds: bad migration key %q", key)
		}
		ino := binary.BigEndian.Uint64(key[len(key)-8:])
		var rec migrationRecord
		if err := decode(v, &rec); err != nil {
			return nil, err
		}
		problem, err := migrationProblem(t, ino, &rec)
		if err != nil || problem == "" {
			return nil, err
		}
		return &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino, Problem: problem}, fix: rec.Layout.Gen}, nil
	})
}

// migrationProblem says what is wrong with a migration record, if anything.
func migrationProblem(t *mtx, ino uint64, rec *migrationRecord) (string, error) {
	_, err := t.inodeAttrs(ino)
	switch {
	case isErrno(err, syscall.ENOENT):
		return "a migration of a file that does not exist", nil
	case err != nil:
		return "", err
	case rec.Deadline < t.now:
		return fmt.Sprintf("a migration to layout generation %d abandoned %v ago", rec.Layout.Gen,
			time.Duration(t.now-rec.Deadline).Round(time.Second)), nil
	}
	return "", nil
}

func (c *migrationChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	gen := f.fix.(uint32)
	stale := false
	err := r.s.view(ctx, func(t *mtx) error {
		rec, err := t.migrationOf(f.Ino)
		if err != nil || rec == nil || rec.Layout.Gen != gen {
			return firstErr(err, errFsckVanished)
		}
		problem, err := migrationProblem(t, f.Ino, rec)
		stale = problem != ""
		return err
	})
	if err != nil {
		return "", err
	}
	if !stale {
		return "", errFsckVanished
	}
	if err := r.s.migrateAbort(ctx, f.Ino, gen, proto.ReqTag{}); err != nil {
		return "", err
	}
	return "aborted the migration: its new objects are queued for destruction", nil
}
