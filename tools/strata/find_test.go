package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/stratafs/strata/proto"
)

func TestParseFind(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	base := proto.FindFilter{MaxDepth: -1, Now: now.Unix()}
	with := func(fn func(f *proto.FindFilter)) proto.FindFilter {
		f := base
		fn(&f)
		return f
	}
	cases := []struct {
		args []string
		want proto.FindFilter
	}{
		{[]string{"/m"}, base},
		{[]string{"/m", "--type", "f"}, with(func(f *proto.FindFilter) { f.Type = proto.ModeRegular })},
		{[]string{"-type", "d", "/m"}, with(func(f *proto.FindFilter) { f.Type = proto.ModeDir })},
		{[]string{"/m", "-name", "*.c", "-maxdepth", "2"}, with(func(f *proto.FindFilter) { f.Name, f.MaxDepth = "*.c", 2 })},
		{[]string{"/m", "--size", "+10M"}, with(func(f *proto.FindFilter) { f.Size = proto.FindCmp{Set: true, Sign: 1, N: 10, Unit: 1 << 20} })},
		{[]string{"/m", "-size", "-3k"}, with(func(f *proto.FindFilter) { f.Size = proto.FindCmp{Set: true, Sign: -1, N: 3, Unit: 1024} })},
		{[]string{"/m", "-size", "7"}, with(func(f *proto.FindFilter) { f.Size = proto.FindCmp{Set: true, N: 7, Unit: 1} })},
		{[]string{"/m", "-size", "2b"}, with(func(f *proto.FindFilter) { f.Size = proto.FindCmp{Set: true, N: 2, Unit: 512} })},
		{[]string{"/m", "--mtime", "+5"}, with(func(f *proto.FindFilter) { f.Mtime = proto.FindCmp{Set: true, Sign: 1, N: 5, Unit: 86400} })},
		{[]string{"/m", "--mtime=-2h"}, with(func(f *proto.FindFilter) { f.Mtime = proto.FindCmp{Set: true, Sign: -1, N: 2, Unit: 3600} })},
		{[]string{"/m", "-c", "+1", "-S", "1M"}, with(func(f *proto.FindFilter) {
			f.StripeCount = proto.FindCmp{Set: true, Sign: 1, N: 1, Unit: 1}
			f.StripeSize = proto.FindCmp{Set: true, N: 1, Unit: 1 << 20}
		})},
		{[]string{"/m", "--ost", "1,3-4", "--pool", "fs.fast", "--layout", "released"}, with(func(f *proto.FindFilter) {
			f.OSTs, f.Pool, f.HasPool, f.Layout = []uint32{1, 3, 4}, "fast", true, "released"
		})},
		{[]string{"/m", "-O", "OST0002", "-user", "0"}, with(func(f *proto.FindFilter) { f.OSTs, f.HasUid = []uint32{2}, true })},
	}
	for _, c := range cases {
		fa, err := parseFind(c.args, now)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if !reflect.DeepEqual(fa.filter, c.want) || len(fa.paths) != 1 || fa.paths[0] != "/m" {
			t.Errorf("%v: got %+v %v, want %+v", c.args, fa.filter, fa.paths, c.want)
		}
	}
	for _, bad := range [][]string{{"/m", "--type", "x"}, {"/m", "--size", "1Q"}, {"/m", "--bogus"}, {"--type", "f"},
		{"/m", "--layout", "mdt"}, {"/m", "-maxdepth", "-1"}, {"/m", "--mtime", "3x"}} {
		if _, err := parseFind(bad, now); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	fa, err := parseFind([]string{"/a", "/b", "-print0", "--json"}, now)
	if err != nil || !fa.print0 || !fa.asJSON || len(fa.paths) != 2 {
		t.Errorf("print0/json: %+v %v", fa, err)
	}
}
