package mds

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The inode record's msgpack codec, written out by hand: every operation
// reads and writes inodes, and reflection spent most of a getattr decoding
// one. It writes exactly the bytes msgpack.Marshal's reflection encoder
// writes for the struct tags of inode (a map of the fields present, in
// declaration order; integers at their declared width; omitempty fields
// left out when empty, a DirLayout also when it IsZero), so records read
// alike whichever wrote them. TestInodeCodec holds it to that.

var (
	_ msgpack.CustomEncoder = (*inode)(nil)
	_ msgpack.CustomDecoder = (*inode)(nil)
)

// EncodeMsgpack writes the record.
func (in *inode) EncodeMsgpack(e *msgpack.Encoder) error {
	if in.partial {
		return fmt.Errorf("mds: inode %#x was read without its layout and cannot be written", in.Ino)
	}
	hasDirLayout := in.DirLayout != nil && !in.DirLayout.IsZero()
	n := 7 // mode, uid, gid, nlink and the three times are always present
	for _, present := range [...]bool{in.Size != 0, in.Rdev != 0, in.Flags != 0, len(in.ACL) > 0, in.Parent != 0,
		hasDirLayout, len(in.DefACL) > 0, in.Layout != nil, in.NextObjSeq != 0, in.DataVersion != 0, in.TruncEpoch != 0,
		len(in.Written) > 0, in.HSM != nil, in.Target != "", in.Project != 0, in.ProjInherit} {
		if present {
			n++
		}
	}
	w := recordWriter{e: e}
	w.err = e.EncodeMapLen(n)
	w.uint32("m", in.Mode)
	w.uint32("u", in.Uid)
	w.uint32("g", in.Gid)
	w.uint32("n", in.Nlink)
	if in.Size != 0 {
		w.uint64("s", in.Size)
	}
	if in.Rdev != 0 {
		w.uint32("r", in.Rdev)
	}
	w.int64("a", in.Atime)
	w.int64("M", in.Mtime)
	w.int64("c", in.Ctime)
	if in.Flags != 0 {
		w.uint32("F", in.Flags)
	}
	if len(in.ACL) > 0 {
		w.value("A", in.ACL)
	}
	if in.Parent != 0 {
		w.uint64("p", in.Parent)
	}
	if hasDirLayout {
		w.value("d", in.DirLayout)
	}
	if len(in.DefACL) > 0 {
		w.value("D", in.DefACL)
	}
	if in.Layout != nil {
		w.value("l", in.Layout)
	}
	if in.NextObjSeq != 0 {
		w.uint32("q", in.NextObjSeq)
	}
	if in.DataVersion != 0 {
		w.uint64("v", in.DataVersion)
	}
	if in.TruncEpoch != 0 {
		w.uint64("e", in.TruncEpoch)
	}
	if len(in.Written) > 0 {
		w.value("w", in.Written)
	}
	if in.HSM != nil {
		w.value("H", in.HSM)
	}
	if in.Target != "" {
		w.key("T")
		if w.err == nil {
			w.err = e.EncodeString(in.Target)
		}
	}
	if in.Project != 0 {
		w.uint32("j", in.Project)
	}
	if in.ProjInherit {
		w.key("J")
		if w.err == nil {
			w.err = e.EncodeBool(true)
		}
	}
	return w.err
}

// recordWriter writes the key-value pairs of a record map, keeping the
// first error.
type recordWriter struct {
	e   *msgpack.Encoder
	err error
}

func (w *recordWriter) key(k string) {
	if w.err == nil {
		w.err = w.e.EncodeString(k)
	}
}

func (w *recordWriter) uint32(k string, v uint32) {
	if w.key(k); w.err == nil {
		w.err = w.e.EncodeUint32(v)
	}
}

func (w *recordWriter) uint64(k string, v uint64) {
	if w.key(k); w.err == nil {
		w.err = w.e.EncodeUint64(v)
	}
}

func (w *recordWriter) int64(k string, v int64) {
	if w.key(k); w.err == nil {
		w.err = w.e.EncodeInt64(v)
	}
}

func (w *recordWriter) value(k string, v any) {
	if w.key(k); w.err == nil {
		w.err = w.e.Encode(v)
	}
}

// DecodeMsgpack reads the whole record.
func (in *inode) DecodeMsgpack(d *msgpack.Decoder) error { return in.decodeFields(d, false) }

// decodeFields reads a record into in, which holds no fields yet; with
// skipLayout it leaves a regular file's layout undecoded (nil) and marks
// the inode partial.
func (in *inode) decodeFields(d *msgpack.Decoder, skipLayout bool) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	for range n {
		k, err := d.DecodeString()
		if err != nil {
			return err
		}
		switch k {
		case "m":
			in.Mode, err = d.DecodeUint32()
		case "u":
			in.Uid, err = d.DecodeUint32()
		case "g":
			in.Gid, err = d.DecodeUint32()
		case "n":
			in.Nlink, err = d.DecodeUint32()
		case "s":
			in.Size, err = d.DecodeUint64()
		case "r":
			in.Rdev, err = d.DecodeUint32()
		case "a":
			in.Atime, err = d.DecodeInt64()
		case "M":
			in.Mtime, err = d.DecodeInt64()
		case "c":
			in.Ctime, err = d.DecodeInt64()
		case "F":
			in.Flags, err = d.DecodeUint32()
		case "A":
			err = d.Decode(&in.ACL)
		case "p":
			in.Parent, err = d.DecodeUint64()
		case "d":
			err = d.Decode(&in.DirLayout)
		case "D":
			err = d.Decode(&in.DefACL)
		case "l":
			if skipLayout {
				in.partial = true
				err = d.Skip()
			} else {
				err = d.Decode(&in.Layout)
			}
		case "q":
			in.NextObjSeq, err = d.DecodeUint32()
		case "v":
			in.DataVersion, err = d.DecodeUint64()
		case "e":
			in.TruncEpoch, err = d.DecodeUint64()
		case "w":
			in.Written, err = d.DecodeBytes()
		case "H":
			err = d.Decode(&in.HSM)
		case "T":
			in.Target, err = d.DecodeString()
		case "j":
			in.Project, err = d.DecodeUint32()
		case "J":
			in.ProjInherit, err = d.DecodeBool()
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	return nil
}

// decodeInodeAttrs decodes a record without its layout (see decodeFields).
func decodeInodeAttrs(b []byte, in *inode) error {
	d := msgpack.GetDecoder()
	d.Reset(bytes.NewReader(b))
	err := in.decodeFields(d, true)
	msgpack.PutDecoder(d)
	if err != nil {
		return fmt.Errorf("mds: decode %T: %w", in, err)
	}
	return nil
}
