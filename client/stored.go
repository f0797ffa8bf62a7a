package client

import "github.com/stratafs/strata/layout"

// Objects stored. The MDS keeps, per file, which objects of its layout
// were ever written, so that fsck can tell an object lost on its OST from a
// stripe never written (objects are created at their first write). A
// client names the objects it wrote since its last report in each size
// report and close; until then they wait in inode.stored.

// storedReport is what one size report or close names: the written objects
// of the layout, by index in layout order, and the layout's generation.
type storedReport struct {
	gen   uint32
	index []uint32
	ids   map[layout.ObjectID]struct{} // what was taken, to put back
}

// noteStoredLocked records that an OST acknowledged a write to (or an
// allocation in) object id. Call with mu held.
func (in *inode) noteStoredLocked(id layout.ObjectID) {
	if in.stored == nil {
		in.stored = map[layout.ObjectID]struct{}{}
	}
	in.stored[id] = struct{}{}
}

// takeStoredLocked returns the objects written since the last report as
// the current layout numbers them, and forgets them. Objects the current
// layout no longer holds (written under an older one) are dropped. Call
// with mu held.
func (in *inode) takeStoredLocked() storedReport {
	r := storedReport{gen: in.lay.Gen, ids: in.stored}
	if len(in.stored) == 0 {
		return r
	}
	i := uint32(0)
	for _, c := range in.lay.Components {
		for _, o := range c.Objects {
			if _, ok := in.stored[o.ID]; ok {
				r.index = append(r.index, i)
			}
			i++
		}
	}
	in.stored = nil
	return r
}

// restoreStoredLocked puts back what a report that failed took, so the next
// report names it. Call with mu held.
func (in *inode) restoreStoredLocked(r storedReport) {
	for id := range r.ids {
		in.noteStoredLocked(id)
	}
}
