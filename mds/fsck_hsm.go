package mds

import (
	"context"
	"fmt"
	"syscall"

	"github.com/stratafs/strata/proto"
)

// fsckHsmQueue is the class of the HSM queue checker's findings.
const fsckHsmQueue = "hsm-queue"

// hsmQueueChecker finds HSM actions queued for files that no longer exist
// (the file went while its action was neither claimed nor finished by an
// agent), and restores of files that are not released any more: no agent
// would ever finish them usefully. Repair drops them, queueing a restore's
// objects for destruction.
type hsmQueueChecker struct {
	cursor []byte
}

func (c *hsmQueueChecker) name() string { return fsckHsmQueue }

func (c *hsmQueueChecker) step(ctx context.Context, r *fsckRun) ([]*fsckFinding, int, bool, error) {
	k := r.s.keys
	start, end := k.hsmQueueRange()
	return r.s.fsckRecords(ctx, &c.cursor, start, end, func(t *mtx, key, _ []byte) (*fsckFinding, error) {
		ino, err := k.idOf(key, tagHsmQueue)
		if err != nil {
			return nil, err
		}
		problem, err := hsmQueueProblem(t, ino)
		if err != nil || problem == "" {
			return nil, err
		}
		return &fsckFinding{FsckFinding: proto.FsckFinding{Ino: ino, Problem: problem}}, nil
	})
}

// hsmQueueProblem says what is wrong with the queued action of ino, if
// anything. A running action is left to its agent and the coordinator.
func hsmQueueProblem(t *mtx, ino uint64) (string, error) {
	act, err := t.hsmAction(ino)
	if err != nil || act == nil || act.Status != proto.HsmWaiting {
		return "", err
	}
	in, err := t.inodeAttrs(ino)
	switch {
	case isErrno(err, syscall.ENOENT):
		return fmt.Sprintf("%s queued for a file that does not exist", proto.HsmActionName(act.Kind)), nil
	case err != nil:
		return "", err
	case act.Kind == proto.HsmRestore && !in.released():
		return "RESTORE queued for a file that is not released", nil
	}
	return "", nil
}

func (c *hsmQueueChecker) repair(ctx context.Context, r *fsckRun, f *fsckFinding) (string, error) {
	queued := false
	err := r.s.update(ctx, func(t *mtx) error {
		queued = false
		problem, err := hsmQueueProblem(t, f.Ino)
		if err != nil || problem == "" {
			return firstErr(err, errFsckVanished)
		}
		act, err := t.hsmAction(f.Ino)
		if err != nil {
			return err
		}
		if act.Layout != nil {
			if queued, err = t.queueDestroy(f.Ino, layoutObjects(act.Layout)); err != nil {
				return err
			}
		}
		return t.kv.Delete(t.k.hsmAction(f.Ino))
	})
	if queued {
		r.s.kickDestroy()
	}
	return "dropped the queued action", err
}
