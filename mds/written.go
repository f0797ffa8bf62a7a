package mds

import "github.com/stratafs/strata/layout"

// Written objects. Objects are created lazily, at a stripe's first write,
// so a missing object is normally a stripe never written and reads as a
// hole. To tell that from data lost on an OST, the inode keeps a bitmap
// (inode.Written) of the objects of its current layout that writers
// reported writing: bit i stands for the i-th object in layout order (the
// objects of the first component, then of the next...), the order of
// layoutObjects. Clients report the objects they wrote at each size report
// and close (proto.CloseReq.Written), naming the layout generation they
// wrote under; fsck's missing-objects check looks for objects marked written
// but absent from their OST.

// noteWritten marks the objects at indices of layout generation gen as
// written. Indices of another generation (a writer that has not learnt of
// a new layout) or past the layout's objects are ignored.
func (in *inode) noteWritten(gen uint32, indices []uint32) {
	if len(indices) == 0 || in.Layout == nil || in.Layout.Gen != gen {
		return
	}
	n := uint32(objectCount(in.Layout))
	for _, i := range indices {
		if i >= n {
			continue
		}
		for uint32(len(in.Written)) <= i/8 {
			in.Written = append(in.Written, 0)
		}
		in.Written[i/8] |= 1 << (i % 8)
	}
}

// wroteObject reports whether the object at index i was marked written.
func (in *inode) wroteObject(i int) bool {
	return i/8 < len(in.Written) && in.Written[i/8]&(1<<(i%8)) != 0
}

// forgetWritten clears the written mark of the object at index i,
// dropping the bitmap once it is empty.
func (in *inode) forgetWritten(i int) {
	if i/8 >= len(in.Written) {
		return
	}
	in.Written[i/8] &^= 1 << (i % 8)
	for len(in.Written) > 0 && in.Written[len(in.Written)-1] == 0 {
		in.Written = in.Written[:len(in.Written)-1]
	}
	if len(in.Written) == 0 {
		in.Written = nil
	}
}

// objectCount is the number of objects of a layout.
func objectCount(l *layout.Layout) int {
	n := 0
	for _, c := range l.Components {
		n += len(c.Objects)
	}
	return n
}
