package layout

import (
	"fmt"
	"strconv"
)

// ParseSize parses a byte count as lfs does: a non-negative decimal number
// with an optional suffix k, M, G or T (either case) for KiB, MiB, GiB or
// TiB. "-1" and "eof" are not sizes; callers that accept them (setstripe
// -E) check for them first.
func ParseSize(s string) (int64, error) {
	digits, shift := s, 0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift != 0 {
			digits = s[:n-1]
		}
	}
	if digits == "" || digits[0] < '0' || digits[0] > '9' {
		return 0, fmt.Errorf("layout: invalid size %q", s)
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("layout: invalid size %q: %w", s, err)
	}
	if v > EOF>>shift {
		return 0, fmt.Errorf("layout: size %q out of range", s)
	}
	return v << shift, nil
}
