package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as text: Go's units (ms, s, m, h)
// plus d (24 h) and w (7 d), combined as in "1d12h" or "90m". In JSON it
// is such a string; a bare JSON number is read as seconds.
type Duration time.Duration

// ParseDuration parses a duration in Duration's syntax. A leading "-"
// makes it negative; callers that need a positive duration check.
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %s", s, err)
	}
	return d, nil
}

// durationUnit is one unit of Duration's syntax.
type durationUnit struct {
	name string
	d    time.Duration
}

// durationUnits lists the units, "ms" before "m" so that it is not read
// as minutes.
func durationUnits() []durationUnit {
	return []durationUnit{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute},
		{"h", time.Hour}, {"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}}
}

func parseDuration(s string) (time.Duration, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return 0, errors.New("empty")
	}
	if s == "0" {
		return 0, nil
	}
	var total float64
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("expected a number at %q", s)
		}
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", s[:i])
		}
		s = s[i:]
		unit := time.Duration(0)
		for _, u := range durationUnits() {
			if strings.HasPrefix(s, u.name) {
				unit, s = u.d, s[len(u.name):]
				break
			}
		}
		if unit == 0 {
			return 0, errors.New("missing or unknown unit (use ms, s, m, h, d or w)")
		}
		total += n * float64(unit)
	}
	if total >= math.MaxInt64 {
		return 0, errors.New("too long")
	}
	if neg {
		total = -total
	}
	return time.Duration(total), nil
}

// String formats d compactly: "30m", "1h30m", "36h", "1.5s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText writes d in the compact form of String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads d in Duration's syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalJSON reads a duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.UnmarshalText([]byte(s))
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("a duration is a string like \"30m\" or a number of seconds, not %s", b)
	}
	if math.Abs(secs) > float64(math.MaxInt64)/float64(time.Second) {
		return fmt.Errorf("duration of %v seconds is too long", secs)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}
