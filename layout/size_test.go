package layout

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"64k", 64 << 10, true},
		{"64K", 64 << 10, true},
		{"1m", 1 << 20, true},
		{"192K", 192 << 10, true},
		{"4M", 4 << 20, true},
		{"2g", 2 << 30, true},
		{"3G", 3 << 30, true},
		{"1t", 1 << 40, true},
		{"8T", 8 << 40, true},
		{"8388607T", 8388607 << 40, true},
		{"9223372036854775807", EOF, true},
		{"8388608T", 0, false},
		{"9223372036854775808", 0, false},
		{"", 0, false},
		{"k", 0, false},
		{"-1", 0, false},
		{"-1M", 0, false},
		{"+1M", 0, false},
		{"1.5M", 0, false},
		{"1MB", 0, false},
		{"1P", 0, false},
		{" 1M", 0, false},
		{"eof", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "64k", "1M", "8388607T", "-1", "1.5g", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if err != nil && n != 0 {
			t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
		}
	})
}
