// Package units parses the quantities of dtrcache's configuration files
// and flags: byte sizes ("200GiB", "10GB", "4096") and durations ("24h",
// "7d", or a bare integer of nanoseconds, DTR's blobttl form).
//
// It is a leaf (standard library only) so that every program of the
// module — the dtrcache command's configuration, the test environment's
// seeder and demo — reads a size the same way without importing one
// another. Size and Duration implement encoding.TextUnmarshaler, which
// YAML and JSON decoders and flag.TextVar use.
package units

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written as "200GiB", "10GB", "512MiB", "4096" …
type Size int64

// sizeUnits are the multipliers of the size units, lower case.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize parses a byte size: an integer or decimal with an optional
// unit B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024), case-insensitive, optional space. Negative sizes and sizes above
// 2^62 bytes are refused.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("invalid size %q (want a number with an optional unit such as 512MiB or 200GB)", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	b := v * mult
	if b > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(b), nil
}

// UnmarshalText parses the forms of ParseSize.
func (z *Size) UnmarshalText(b []byte) error { return parseText(z, ParseSize, b) }

// parseText sets *dst to parse(b), or leaves it and returns the error.
func parseText[T any](dst *T, parse func(string) (T, error), b []byte) error {
	v, err := parse(string(b))
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// MarshalText writes the size as String does.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

// String writes the size in the largest binary unit that divides it
// ("48MiB", "1536KiB"), or in bytes ("1000").
func (z Size) String() string {
	for _, u := range []struct {
		name  string
		bytes Size
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if z != 0 && z%u.bytes == 0 {
			return strconv.FormatInt(int64(z/u.bytes), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

// Duration is a time.Duration written as "24h", "90s", "1h30m", "7d"
// (days), or (DTR's blobttl form) a bare integer of nanoseconds.
type Duration time.Duration

// ParseDuration parses a Duration. Negative durations are refused.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		return Duration(n), nil // bare number: nanoseconds, as DTR documents
	}
	if days, ok := strings.CutSuffix(t, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n >= 0 && n < 1e5 {
			return Duration(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(t)
	if err == nil && d < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 24h, 90s, 7d)", s)
	}
	return Duration(d), nil
}

// UnmarshalText parses the forms of ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error { return parseText(d, ParseDuration, b) }

// MarshalText writes the duration as time.Duration's String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D().String()), nil }

// String is time.Duration's String.
func (d Duration) String() string { return d.D().String() }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
