package wan

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalidBandwidth is wrapped by every error ParseBandwidth returns.
var ErrInvalidBandwidth = errors.New("invalid bandwidth")

// ParseBandwidth parses a rate such as "200Mbit", "200mbps", "25MB/s",
// "1.5Gbit/s", "512KiB/s" or "unlimited" and returns it in bytes per second,
// with 0 meaning unlimited ("0", "unlimited", "none" and "off").
//
// The unit must say whether it counts bits or bytes: "bit", "bits", "b",
// "bps" and "b/s" with a lower-case b are bits; "B", "Bps", "B/s", "byte"
// and "bytes" (optionally with "/s") are bytes. An optional prefix k, M, G
// or T (any case) multiplies by a power of 1000, or of 1024 when followed by
// "i" (KiB/s, Mibit). Spaces between number and unit are allowed.
func ParseBandwidth(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "0", "unlimited", "none", "off":
		return 0, nil
	}
	bad := func(reason string) error {
		return fmt.Errorf("wan: bandwidth %q: %s: %w", orig, reason, ErrInvalidBandwidth)
	}

	numLen := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if numLen < 0 {
		numLen = len(s)
	}
	if numLen == 0 {
		return 0, bad("want a number followed by a unit such as Mbit or MB/s")
	}
	value, err := strconv.ParseFloat(s[:numLen], 64)
	if err != nil {
		return 0, bad("bad number")
	}
	unit := strings.TrimSpace(s[numLen:])
	if unit == "" {
		if value == 0 {
			return 0, nil
		}
		return 0, bad("missing unit; say bits (Mbit, Mbps) or bytes (MB/s)")
	}

	mult, unit := splitPrefix(unit)
	bits, ok := unitIsBits(unit)
	if !ok {
		return 0, bad(fmt.Sprintf("unknown unit %q; want bit, bps, b/s, B, B/s or byte/s with an optional k, M, G, T or Ki, Mi, Gi, Ti prefix", unit))
	}
	rate := value * mult
	if bits {
		rate /= 8
	}
	switch {
	case rate >= math.MaxInt64:
		return 0, bad("too large")
	case value > 0 && rate < 1:
		return 0, bad("below 1 byte per second; use 0 for unlimited")
	}
	return int64(math.Round(rate)), nil
}

// splitPrefix removes a leading SI or binary prefix from unit and returns
// its multiplier and the rest.
func splitPrefix(unit string) (float64, string) {
	if unit == "" {
		return 1, unit
	}
	exp := strings.IndexByte("kmgt", lowerASCII(unit[0])) + 1
	if exp == 0 {
		return 1, unit
	}
	if len(unit) > 1 && lowerASCII(unit[1]) == 'i' {
		return math.Pow(1024, float64(exp)), unit[2:]
	}
	return math.Pow(1000, float64(exp)), unit[1:]
}

// unitIsBits reports whether unit (after the prefix) counts bits or bytes;
// ok is false for an unknown unit. Only the abbreviations b, bps and b/s
// depend on case: a lower-case b means bits.
func unitIsBits(unit string) (bits, ok bool) {
	switch strings.ToLower(unit) {
	case "bit", "bits", "bit/s", "bits/s":
		return true, true
	case "byte", "bytes", "byte/s", "bytes/s":
		return false, true
	case "b", "bps", "b/s":
		return unit[0] == 'b', true
	}
	return false, false
}

// lowerASCII returns the lower-case form of an ASCII letter.
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
