package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version as semver.org 2.0.0 defines it.
type Version struct {
	Major, Minor, Patch uint64
	// Pre holds the dot-separated pre-release identifiers ("rc.1" is
	// ["rc", "1"]); nil for a release.
	Pre []string
	// Build is the build metadata after "+", ignored when comparing.
	Build string
}

// ParseVersion parses a full semantic version, MAJOR.MINOR.PATCH with an
// optional -pre-release and +build, allowing one leading "v" as image tags
// often carry ("v1.2.3"). Numbers have no leading zeros. Anything else
// ("latest", "1.2", "1.2.3.4", "01.2.3") is an error wrapping
// ErrInvalidVersion.
func ParseVersion(s string) (Version, error) {
	v, err := parseVersion(s)
	if err != nil {
		return Version{}, fmt.Errorf("%w %q: %s", ErrInvalidVersion, s, err)
	}
	return v, nil
}

func parseVersion(s string) (Version, error) {
	if s != "" && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	var v Version
	if core, build, ok := strings.Cut(s, "+"); ok {
		if err := checkIdentifiers(build, false); err != nil {
			return Version{}, fmt.Errorf("build metadata: %s", err)
		}
		s, v.Build = core, build
	}
	if core, pre, ok := strings.Cut(s, "-"); ok {
		if err := checkIdentifiers(pre, true); err != nil {
			return Version{}, fmt.Errorf("pre-release: %s", err)
		}
		s, v.Pre = core, strings.Split(pre, ".")
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("want MAJOR.MINOR.PATCH, got %d part(s)", len(parts))
	}
	nums := [3]*uint64{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		n, err := parseNumber(p)
		if err != nil {
			return Version{}, err
		}
		*nums[i] = n
	}
	return v, nil
}

// parseNumber parses a version number: digits, no sign, no leading zero.
func parseNumber(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	if !allDigits(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("number %q has a leading zero", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("number %q is too large", s)
	}
	return n, nil
}

// checkIdentifiers checks a dot-separated list of pre-release or build
// identifiers: each non-empty, of [0-9A-Za-z-]; numeric pre-release
// identifiers have no leading zero.
func checkIdentifiers(s string, pre bool) error {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return fmt.Errorf("empty identifier in %q", s)
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !isAlnum(c) && c != '-' {
				return fmt.Errorf("identifier %q has character %q", id, c)
			}
		}
		if pre && len(id) > 1 && id[0] == '0' && allDigits(id) {
			return fmt.Errorf("numeric identifier %q has a leading zero", id)
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// String formats v without a "v" prefix, e.g. "1.2.3-rc.1+build.5".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than
// w in semver precedence: numbers first, then a pre-release is lower than
// its release, then identifiers one by one (numeric ones numerically and
// below alphanumeric ones). Build metadata is ignored.
func (v Version) Compare(w Version) int {
	for _, d := range [3][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(v.Pre) == 0 && len(w.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1
	case len(w.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(w.Pre); i++ {
		if c := compareIdentifier(v.Pre[i], w.Pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(v.Pre) < len(w.Pre):
		return -1
	case len(v.Pre) > len(w.Pre):
		return 1
	}
	return 0
}

// compareIdentifier compares two pre-release identifiers.
func compareIdentifier(a, b string) int {
	an, bn := allDigits(a), allDigits(b)
	switch {
	case an && bn:
		// No leading zeros, so the longer number is the larger; equal
		// lengths compare as strings. This also works beyond uint64.
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
	case an:
		return -1
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}

// sameCore reports whether v and w have the same MAJOR.MINOR.PATCH.
func (v Version) sameCore(w Version) bool {
	return v.Major == w.Major && v.Minor == w.Minor && v.Patch == w.Patch
}
