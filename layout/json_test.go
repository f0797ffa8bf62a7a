package layout

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestLayoutJSON(t *testing.T) {
	l := Layout{Gen: 3, Components: []Component{
		{Start: 0, End: 1 << 20, Pattern: PatternRAID0, StripeCount: 1, StripeSize: 1 << 20,
			Objects: []Object{{OST: 2, ID: ObjectID{Ino: 7, Seq: 0}}}},
		{Start: 1 << 20, End: EOF, Pattern: PatternRAID0, StripeCount: 2, StripeSize: 1 << 20, Pool: "fast",
			Objects: []Object{{OST: 0, ID: ObjectID{Ino: 7, Seq: 1}}, {OST: 1, ID: ObjectID{Ino: 7, Seq: 2}}}},
	}}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"End":-1`) || !strings.Contains(string(b), `"End":1048576`) {
		t.Fatalf("EOF not written as -1: %s", b)
	}
	var back Layout
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", back, l)
	}
	// A layout written by a Go program that kept EOF as a number still reads.
	raw := strings.Replace(string(b), `"End":-1`, `"End":9223372036854775807`, 1)
	if err := json.Unmarshal([]byte(raw), &back); err != nil || !reflect.DeepEqual(back, l) {
		t.Fatalf("EOF as a number: %v\n%+v", err, back)
	}
}

func TestSpecJSON(t *testing.T) {
	s := Spec{Components: []ComponentSpec{
		{End: 4 << 20, StripeCount: 1, StripeOffset: -1},
		{End: EOF, StripeCount: -1, StripeSize: 4 << 20, StripeOffset: -1, Pool: "p", OSTs: []uint32{1}},
	}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "9223372036854775807") {
		t.Fatalf("EOF not written as -1: %s", b)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("decoded spec invalid: %v", err)
	}
	if !reflect.DeepEqual(back.Resolve(Spec{}), s.Resolve(Spec{})) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", back, s)
	}
}
