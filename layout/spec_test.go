package layout

import (
	"errors"
	"reflect"
	"testing"
)

func TestValidate(t *testing.T) {
	c := func(end int64, count int32, size int64) ComponentSpec {
		return ComponentSpec{End: end, StripeCount: count, StripeSize: size, StripeOffset: -1}
	}
	spec := func(cs ...ComponentSpec) Spec { return Spec{Components: cs} }
	withOSTs := func(cs ComponentSpec, osts ...uint32) ComponentSpec { cs.OSTs = osts; return cs }
	withOffset := func(cs ComponentSpec, off int32) ComponentSpec { cs.StripeOffset = off; return cs }
	const K, M = 1 << 10, 1 << 20
	tests := []struct {
		name string
		spec Spec
		want error
	}{
		{"empty inherits", Spec{}, nil},
		{"all zero", spec(ComponentSpec{}), nil},
		{"plain", spec(c(EOF, 4, M)), nil},
		{"end 0 is EOF", spec(c(0, 1, 0)), nil},
		{"end -1 is EOF", spec(c(-1, 1, 0)), nil},
		{"192K stripes", spec(c(EOF, 2, 192*K)), nil},
		{"all OSTs", spec(c(EOF, -1, M)), nil},
		{"max count", spec(c(EOF, MaxStripeCount, M)), nil},
		{"stripe size not aligned", spec(c(EOF, 1, 100*K)), ErrStripeSize},
		{"stripe size negative", spec(c(EOF, 1, -64*K)), ErrStripeSize},
		{"stripe size small", spec(c(EOF, 1, 4*K)), ErrStripeSize},
		{"count -2", spec(c(EOF, -2, M)), ErrStripeCount},
		{"count too large", spec(c(EOF, MaxStripeCount+1, M)), ErrStripeCount},
		{"offset -2", spec(withOffset(c(EOF, 1, M), -2)), ErrUnknownOST},
		{"offset 0 is OST 0", spec(withOffset(c(EOF, 1, M), 0)), nil},
		{"OST list", spec(withOSTs(c(EOF, 0, M), 3, 1, 2)), nil},
		{"OST list count smaller", spec(withOSTs(c(EOF, 2, M), 3, 1, 2)), nil},
		{"OST list count larger", spec(withOSTs(c(EOF, 4, M), 3, 1, 2)), ErrStripeCount},
		{"OST listed twice", spec(withOSTs(c(EOF, 0, M), 3, 1, 3)), ErrDuplicateOST},
		{"PFL", spec(c(M, 1, M), c(16*M, 4, M), c(EOF, -1, 4*M)), nil},
		{"PFL inherited sizes", spec(c(M, 0, 0), c(0, 0, 0)), nil},
		{"PFL 192K aligned end", spec(c(384*K, 1, 192*K), c(EOF, 1, M)), nil},
		{"end not multiple of stripe size", spec(c(320*K, 1, 192*K), c(EOF, 1, M)), ErrExtent},
		{"end not 64K aligned", spec(c(100*K, 1, 0), c(EOF, 1, M)), ErrExtent},
		{"ends not increasing", spec(c(2*M, 1, M), c(M, 1, M), c(EOF, 1, M)), ErrExtent},
		{"ends equal", spec(c(M, 1, M), c(M, 1, M), c(EOF, 1, M)), ErrExtent},
		{"last not EOF", spec(c(M, 1, M), c(2*M, 1, M)), ErrExtent},
		{"EOF before last", spec(c(EOF, 1, M), c(EOF, 1, M)), ErrExtent},
		{"negative end", spec(c(-64*K, 1, M), c(EOF, 1, M)), ErrExtent},
		{"bad field in second component", spec(c(M, 1, M), c(EOF, 1, 3*K)), ErrStripeSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	const M = 1 << 20
	fsDefault := Spec{Components: []ComponentSpec{{End: EOF, StripeCount: 2, StripeSize: 4 * M, StripeOffset: -1, Pool: "fast"}}}
	tests := []struct {
		name      string
		spec, def Spec
		want      Spec
	}{
		{"nothing at all", Spec{}, Spec{}, DefaultSpec(DefaultStripeCount, DefaultStripeSize)},
		{"inherit default", Spec{}, fsDefault, fsDefault},
		{
			"inherit PFL default whole, zero fields from package defaults",
			Spec{},
			Spec{Components: []ComponentSpec{{End: M, StripeOffset: -1}, {StripeCount: 4, StripeSize: 2 * M, StripeOffset: -1}}},
			Spec{Components: []ComponentSpec{
				{End: M, StripeCount: 1, StripeSize: M, StripeOffset: -1},
				{End: EOF, StripeCount: 4, StripeSize: 2 * M, StripeOffset: -1},
			}},
		},
		{
			"zero fields from default",
			Spec{Components: []ComponentSpec{{StripeOffset: -1}}},
			fsDefault,
			fsDefault,
		},
		{
			"explicit fields kept",
			Spec{Components: []ComponentSpec{{End: -1, StripeCount: -1, StripeSize: 192 << 10, StripeOffset: 3, Pool: "slow"}}},
			fsDefault,
			Spec{Components: []ComponentSpec{{End: EOF, StripeCount: -1, StripeSize: 192 << 10, StripeOffset: 3, Pool: "slow"}}},
		},
		{
			"OST list sets the count and keeps the pool out",
			Spec{Components: []ComponentSpec{{OSTs: []uint32{5, 2, 7}}}},
			fsDefault,
			Spec{Components: []ComponentSpec{{End: EOF, StripeCount: 3, StripeSize: 4 * M, OSTs: []uint32{5, 2, 7}}}},
		},
		{
			"PFL spec from first default component",
			Spec{Components: []ComponentSpec{{End: 4 * M, StripeCount: 1, StripeOffset: -1}, {StripeOffset: -1}}},
			fsDefault,
			Spec{Components: []ComponentSpec{
				{End: 4 * M, StripeCount: 1, StripeSize: 4 * M, StripeOffset: -1, Pool: "fast"},
				{End: EOF, StripeCount: 2, StripeSize: 4 * M, StripeOffset: -1, Pool: "fast"},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.Resolve(tt.def)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resolve() =\n%+v\nwant\n%+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("resolved spec invalid: %v", err)
			}
		})
	}
}

func TestResolveDoesNotAlias(t *testing.T) {
	spec := Spec{Components: []ComponentSpec{{OSTs: []uint32{1, 2}}}}
	def := DefaultSpec(2, 1<<20)
	got := spec.Resolve(def)
	got.Components[0].OSTs[0] = 9
	got.Components[0].StripeSize = 1
	if spec.Components[0].OSTs[0] != 1 || spec.Components[0].StripeSize != 0 {
		t.Fatalf("Resolve result aliases its receiver: %+v", spec)
	}
	inherited := Spec{}.Resolve(def)
	inherited.Components[0].StripeCount = 7
	if def.Components[0].StripeCount != 2 {
		t.Fatalf("Resolve result aliases the default: %+v", def)
	}
}

func TestDefaultSpec(t *testing.T) {
	s := DefaultSpec(0, 0)
	want := Spec{Components: []ComponentSpec{{End: EOF, StripeCount: DefaultStripeCount, StripeSize: DefaultStripeSize, StripeOffset: -1}}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("DefaultSpec(0, 0) = %+v, want %+v", s, want)
	}
	if err := DefaultSpec(4, 192<<10).Validate(); err != nil {
		t.Fatal(err)
	}
}
