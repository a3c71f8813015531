package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Range is a set of semantic versions written the way npm's node-semver
// writes ranges, so that a range a developer already knows means the same
// thing here:
//
//	>=1.2.0 <2.0.0     comparators separated by spaces must all hold
//	1.2.3 || >=2.1.0   "||" separates alternatives, any of which may hold
//	1.2.3, =1.2.3      exactly that version
//	1.x, 1.2.*, 1      X-ranges: >=1.0.0 <2.0.0, >=1.2.0 <1.3.0, >=1.0.0 <2.0.0
//	*, x               any version
//	~1.2.3, ~1.2, ~1   patch updates: >=1.2.3 <1.3.0, >=1.2.0 <1.3.0, >=1.0.0 <2.0.0
//	^1.2.3, ^0.2.3     no change of the leftmost non-zero number:
//	                   >=1.2.3 <2.0.0, >=0.2.3 <0.3.0 (^0.0.3 is >=0.0.3 <0.0.4)
//	1.2.3 - 2.3        hyphen ranges, inclusive: >=1.2.3 <2.4.0
//	>1.2, <=1          partial versions: >=1.3.0, <2.0.0
//
// Pre-releases are excluded unless a comparator of the same alternative
// names a pre-release of the same MAJOR.MINOR.PATCH: ">=1.2.3-rc.1" matches
// 1.2.3-rc.2 but not 1.3.0-rc.1, and ">=1.0.0" matches neither. A Range is
// immutable and safe for concurrent use.
type Range struct {
	raw  string
	sets [][]comparator // alternatives, each a list of comparators that must all hold
}

// comparator is one bound: op is "<", "<=", ">", ">=" or "="; any matches
// every version and carries no bound.
type comparator struct {
	op  string
	v   Version
	any bool
}

// maxRangeLen bounds the length of a range string.
const maxRangeLen = 1024

// ParseRange parses a range (see Range). An empty string is an error (write
// "*" for any version); errors wrap ErrInvalidRange.
func ParseRange(s string) (*Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidRange, s, err)
	}
	return r, nil
}

func parseRange(s string) (*Range, error) {
	if len(s) > maxRangeLen {
		return nil, fmt.Errorf("longer than %d characters", maxRangeLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty range; write * for any version")
	}
	r := &Range{raw: s}
	for i, alt := range strings.Split(s, "||") {
		if strings.TrimSpace(alt) == "" {
			return nil, fmt.Errorf("alternative %d is empty", i+1)
		}
		set, err := parseComparatorSet(alt)
		if err != nil {
			return nil, err
		}
		r.sets = append(r.sets, set)
	}
	return r, nil
}

// rangeOperators lists the operators in the order they must be tried
// (longest first).
func rangeOperators() []string { return []string{"~>", ">=", "<=", ">", "<", "=", "~", "^"} }

func isOperator(s string) bool {
	for _, op := range rangeOperators() {
		if s == op {
			return true
		}
	}
	return false
}

// parseComparatorSet parses one alternative: a hyphen range or a list of
// space-separated comparators.
func parseComparatorSet(s string) ([]comparator, error) {
	fields := strings.Fields(s)
	for i, f := range fields {
		if f == "-" && (len(fields) != 3 || i != 1) {
			return nil, fmt.Errorf("a hyphen range is VERSION - VERSION, got %q", strings.TrimSpace(s))
		}
	}
	if len(fields) == 3 && fields[1] == "-" {
		return hyphenRange(fields[0], fields[2])
	}
	var set []comparator
	for i := 0; i < len(fields); i++ {
		tok := fields[i]
		if isOperator(tok) { // ">= 1.2.3": the operator stands alone
			if i+1 == len(fields) {
				return nil, fmt.Errorf("operator %q has no version after it", tok)
			}
			i++
			tok += fields[i]
		}
		cs, err := parseComparator(tok)
		if err != nil {
			return nil, err
		}
		set = append(set, cs...)
	}
	return set, nil
}

// parseComparator parses one operator and partial version into the
// comparators it stands for.
func parseComparator(tok string) ([]comparator, error) {
	op := ""
	for _, o := range rangeOperators() {
		if strings.HasPrefix(tok, o) {
			op, tok = o, tok[len(o):]
			break
		}
	}
	p, err := parsePartial(tok)
	if err != nil {
		return nil, err
	}
	switch op {
	case "~", "~>":
		return tildeRange(p)
	case "^":
		return caretRange(p)
	case "", "=":
		return xRange(p)
	default:
		return primitive(op, p)
	}
}

// test reports whether v meets the comparator, pre-releases aside.
func (c comparator) test(v Version) bool {
	if c.any {
		return true
	}
	d := v.Compare(c.v)
	switch c.op {
	case "<":
		return d < 0
	case "<=":
		return d <= 0
	case ">":
		return d > 0
	case ">=":
		return d >= 0
	}
	return d == 0
}

// Contains reports whether v is in the range.
func (r *Range) Contains(v Version) bool {
	for _, set := range r.sets {
		if setContains(set, v) {
			return true
		}
	}
	return false
}

func setContains(set []comparator, v Version) bool {
	for _, c := range set {
		if !c.test(v) {
			return false
		}
	}
	if len(v.Pre) == 0 {
		return true
	}
	for _, c := range set {
		if !c.any && len(c.v.Pre) > 0 && c.v.sameCore(v) {
			return true
		}
	}
	return false
}

// String returns the range as written.
func (r *Range) String() string { return r.raw }

// Canonical returns the range as plain comparators, each alternative's
// comparators separated by spaces and alternatives by " || ", e.g.
// "^1.2" gives ">=1.2.0 <2.0.0-0". The "-0" bounds keep pre-releases of
// the next version out.
func (r *Range) Canonical() string {
	alts := make([]string, len(r.sets))
	for i, set := range r.sets {
		cs := make([]string, len(set))
		for j, c := range set {
			if c.any {
				cs[j] = "*"
			} else {
				cs[j] = c.op + c.v.String()
			}
		}
		alts[i] = strings.Join(cs, " ")
	}
	return strings.Join(alts, " || ")
}
