package mds

import (
	"fmt"

	"github.com/stratafs/strata/proto"
)

// Exactly-once execution (see proto.ReqTag). A modifying request looks its
// tag up at the start of its transaction: if the slot holds the tag's id,
// the request committed before and its recorded reply is the answer, and
// the transaction writes nothing. Otherwise the request runs and records
// its reply in the same transaction, so the reply is durable exactly when
// the change is. Reading and writing the slot key in one transaction also
// makes two copies of one request racing (a resend overtaking the original)
// conflict, so only one commits.

// replayed reports whether tag's request already committed, decoding its
// recorded reply into resp (which may be nil when the reply is empty).
func replayed(t *mtx, tag proto.ReqTag, op uint16, resp any) (bool, error) {
	if tag.IsZero() {
		return false, nil
	}
	var rec replyRecord
	ok, err := t.getRecord(t.k.reply(tag.Session, tag.Slot), &rec)
	if err != nil {
		return false, fmt.Errorf("mds: read reply slot %d of session %#x: %w", tag.Slot, tag.Session, err)
	}
	if !ok || rec.ID != tag.ID {
		return false, nil
	}
	if rec.Op != op {
		return false, fmt.Errorf("mds: reply slot %d of session %#x holds op %d, not %d", tag.Slot, tag.Session, rec.Op, op)
	}
	if resp != nil && len(rec.Reply) > 0 {
		if err := decode(rec.Reply, resp); err != nil {
			return false, err
		}
	}
	t.replay = true
	return true, nil
}

// remember records resp as the reply of tag's request.
func (t *mtx) remember(tag proto.ReqTag, op uint16, resp any) error {
	if tag.IsZero() {
		return nil
	}
	rec := replyRecord{ID: tag.ID, Op: op}
	if resp != nil {
		b, err := encode(resp)
		if err != nil {
			return err
		}
		rec.Reply = b
	}
	return t.setRecord(t.k.reply(tag.Session, tag.Slot), &rec)
}

// tagged wraps the transaction body fn of the request tagged tag, whose
// reply is resp (nil for an empty reply): a resend of a request that
// committed gets the recorded reply in resp and changes nothing, and a
// first execution records resp with its changes.
func (s *Service) tagged(tag proto.ReqTag, op uint16, resp any, fn func(t *mtx) error) func(t *mtx) error {
	return func(t *mtx) error {
		if done, err := replayed(t, tag, op, resp); done || err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		return t.remember(tag, op, resp)
	}
}
