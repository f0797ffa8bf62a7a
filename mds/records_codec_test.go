package mds

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratafs/strata/layout"
	"github.com/stratafs/strata/proto"
)

// plainInode is inode without its codec: msgpack encodes it by reflection.
type plainInode inode

// randomInode fills each field of an inode, or leaves it empty, at random,
// including the empty-but-not-nil values omitempty drops.
func randomInode(r *rand.Rand) *inode {
	some := func() bool { return r.IntN(2) == 0 }
	in := &inode{Ino: r.Uint64(), Mode: r.Uint32(), Uid: r.Uint32(), Gid: r.Uint32(), Nlink: r.Uint32(),
		Atime: r.Int64() - 1<<62, Mtime: r.Int64(), Ctime: -r.Int64()}
	if some() {
		in.Size = r.Uint64()
	}
	if some() {
		in.Rdev = r.Uint32N(300)
	}
	if some() {
		in.Flags = proto.AttrFlagStrict
	}
	switch r.IntN(3) {
	case 0:
		in.ACL = acl{{Tag: 1, Perm: 7}, {Tag: 2, Perm: 5, ID: r.Uint32()}, {Tag: 0x10, Perm: 4}}
	case 1:
		in.ACL = acl{}
	}
	if some() {
		in.Parent = r.Uint64N(1 << 50)
	}
	switch r.IntN(3) {
	case 0:
		in.DirLayout = &layout.Spec{Components: []layout.ComponentSpec{{StripeCount: -1, StripeSize: 1 << 20, Pool: "fast"}}}
	case 1:
		in.DirLayout = &layout.Spec{}
	}
	if some() {
		in.DefACL = acl{{Tag: 1, Perm: 6}, {Tag: 4, Perm: 4}, {Tag: 0x20, Perm: 0}}
	}
	if some() {
		in.Layout = &layout.Layout{Gen: r.Uint32N(4), Components: []layout.Component{{
			End: -1, Pattern: "raid0", StripeCount: 2, StripeSize: 1 << 20,
			Objects: []layout.Object{{OST: 1, ID: layout.ObjectID{Ino: in.Ino, Seq: 1}}, {OST: 3, ID: layout.ObjectID{Ino: in.Ino, Seq: 2}}},
		}}}
	}
	if some() {
		in.NextObjSeq = r.Uint32()
	}
	if some() {
		in.DataVersion = r.Uint64()
	}
	if some() {
		in.Written = []byte{0x05, byte(r.Uint32())}
	}
	if some() {
		in.Target = "../some/target"
	}
	return in
}

// TestInodeCodec holds the hand-written inode codec to the reflection
// encoding: the same bytes out, the same record back in.
func TestInodeCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		in := randomInode(r)
		got, err := msgpack.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := msgpack.Marshal((*plainInode)(in))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("inode %d: encoded\n%x\nwant\n%x", i, got, want)
		}

		var back, ref inode
		if err := msgpack.Unmarshal(want, &back); err != nil {
			t.Fatalf("inode %d: decode: %v", i, err)
		}
		if err := msgpack.Unmarshal(want, (*plainInode)(&ref)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, ref) {
			t.Fatalf("inode %d: decoded\n%+v\nwant\n%+v", i, back, ref)
		}

		var attrs inode
		if err := decodeInodeAttrs(want, &attrs); err != nil {
			t.Fatalf("inode %d: decode attributes: %v", i, err)
		}
		if attrs.partial != (in.Layout != nil) {
			t.Fatalf("inode %d: partial = %v with layout %v", i, attrs.partial, in.Layout != nil)
		}
		attrs.partial, ref.Layout = false, nil
		if !reflect.DeepEqual(attrs, ref) {
			t.Fatalf("inode %d: attributes\n%+v\nwant\n%+v", i, attrs, ref)
		}
	}
}

// fillAll sets every exported field reachable from v (a pointer) to a
// non-zero value: pointers allocated, slices given two elements, numbers
// and strings derived from seed.
func fillAll(v reflect.Value, seed *uint64) {
	*seed++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(v.Elem(), seed)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillAll(v.Field(i), seed)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fillAll(v.Index(i), seed)
		}
	case reflect.String:
		v.SetString(fmt.Sprint("s", *seed))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*seed))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(*seed)
	case reflect.Bool:
		v.SetBool(true)
	}
}

// TestInodeCodecCoversEveryField catches a field added to inode but not to
// its codec, which would drop it from every record written.
func TestInodeCodecCoversEveryField(t *testing.T) {
	var in inode
	seed := uint64(0)
	fillAll(reflect.ValueOf(&in).Elem(), &seed)
	in.partial = false
	got, err := msgpack.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := msgpack.Marshal((*plainInode)(&in))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	var back inode
	if err := msgpack.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	back.Ino = in.Ino
	if !reflect.DeepEqual(back, in) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", back, in)
	}
}

// TestPartialInodeNotWritten checks that a record read without its layout
// cannot be written back, which would drop the layout.
func TestPartialInodeNotWritten(t *testing.T) {
	in := randomInode(rand.New(rand.NewPCG(3, 4)))
	in.partial = true
	if _, err := encode(in); err == nil {
		t.Fatal("a partial inode encoded")
	}
}
