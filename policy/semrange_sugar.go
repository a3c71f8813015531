package policy

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// This file turns the short forms of npm ranges (partial versions, X-ranges,
// ~, ^ and hyphen ranges) into plain comparators.

// partial is a version whose trailing numbers may be missing or wildcards:
// n says how many numbers were given (0 for "*").
type partial struct {
	num [3]uint64
	n   int
	pre []string
}

func parsePartial(s string) (partial, error) {
	orig := s
	if s != "" && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	if s == "" {
		return partial{}, fmt.Errorf("missing version in %q", orig)
	}
	var p partial
	core, build, hasBuild := strings.Cut(s, "+")
	if hasBuild {
		if err := checkIdentifiers(build, false); err != nil {
			return partial{}, fmt.Errorf("version %q: build metadata: %s", orig, err)
		}
	}
	core, pre, hasPre := strings.Cut(core, "-")
	if hasPre {
		if err := checkIdentifiers(pre, true); err != nil {
			return partial{}, fmt.Errorf("version %q: pre-release: %s", orig, err)
		}
		p.pre = strings.Split(pre, ".")
	}
	parts := strings.Split(core, ".")
	if len(parts) > 3 {
		return partial{}, fmt.Errorf("version %q has more than three numbers", orig)
	}
	wild := false
	for i, part := range parts {
		if part == "x" || part == "X" || part == "*" {
			wild = true
			continue
		}
		n, err := parseNumber(part)
		if err != nil {
			return partial{}, fmt.Errorf("version %q: %s", orig, err)
		}
		if wild {
			return partial{}, fmt.Errorf("version %q has a number after a wildcard", orig)
		}
		p.num[i] = n
		p.n = i + 1
	}
	if (hasPre || hasBuild) && p.n < 3 {
		return partial{}, fmt.Errorf("version %q: a pre-release or build needs MAJOR.MINOR.PATCH", orig)
	}
	return p, nil
}

// version returns the lowest version p stands for: missing numbers are 0.
func (p partial) version() Version {
	return Version{Major: p.num[0], Minor: p.num[1], Patch: p.num[2], Pre: p.pre}
}

// next returns the lowest version above everything p stands for, as a
// "-0" pre-release so that no pre-release of it slips in: 1.2 gives
// 1.3.0-0, 1 gives 2.0.0-0, 1.2.3 gives 1.2.4-0.
func (p partial) next() (Version, error) {
	v := Version{Pre: []string{"0"}}
	switch p.n {
	case 1:
		v.Major = p.num[0]
		return v, bump(&v.Major)
	case 2:
		v.Major, v.Minor = p.num[0], p.num[1]
		return v, bump(&v.Minor)
	default:
		v.Major, v.Minor, v.Patch = p.num[0], p.num[1], p.num[2]
		return v, bump(&v.Patch)
	}
}

func bump(n *uint64) error {
	if *n == math.MaxUint64 {
		return errors.New("version number too large")
	}
	*n++
	return nil
}

// anyVersion returns the comparator list that matches every version.
func anyVersion() []comparator { return []comparator{{any: true}} }

// span returns >=lo <hi.
func span(lo, hi Version) []comparator {
	return []comparator{{op: ">=", v: lo}, {op: "<", v: hi}}
}

// xRange handles a bare or "=" partial: exact for a full version, else
// everything it leaves open.
func xRange(p partial) ([]comparator, error) {
	switch p.n {
	case 0:
		return anyVersion(), nil
	case 3:
		return []comparator{{op: "=", v: p.version()}}, nil
	}
	hi, err := p.next()
	return span(p.version(), hi), err
}

// tildeRange: ~1.2.3 is >=1.2.3 <1.3.0, ~1.2 is >=1.2.0 <1.3.0, ~1 is
// >=1.0.0 <2.0.0.
func tildeRange(p partial) ([]comparator, error) {
	if p.n == 0 {
		return anyVersion(), nil
	}
	q := p
	if q.n == 3 {
		q.n = 2
	}
	hi, err := q.next()
	return span(p.version(), hi), err
}

// caretRange: the leftmost non-zero number of those given stays fixed.
func caretRange(p partial) ([]comparator, error) {
	if p.n == 0 {
		return anyVersion(), nil
	}
	q := p
	switch {
	case p.num[0] > 0 || p.n == 1:
		q.n = 1
	case p.num[1] > 0 || p.n == 2:
		q.n = 2
	}
	hi, err := q.next()
	return span(p.version(), hi), err
}

// primitive handles <, <=, > and >= with a partial version.
func primitive(op string, p partial) ([]comparator, error) {
	if p.n == 0 {
		if op == "<" || op == ">" {
			// Nothing is below or above every version.
			return []comparator{{op: "<", v: Version{Pre: []string{"0"}}}}, nil
		}
		return anyVersion(), nil
	}
	if p.n == 3 {
		return []comparator{{op: op, v: p.version()}}, nil
	}
	switch op {
	case ">=":
		return []comparator{{op: ">=", v: p.version()}}, nil
	case "<":
		v := p.version()
		v.Pre = []string{"0"}
		return []comparator{{op: "<", v: v}}, nil
	}
	// >1.2 is >=1.3.0 and <=1.2 is <1.3.0; the "-0" of next is dropped for
	// the lower bound, which must not admit pre-releases.
	hi, err := p.next()
	if op == ">" {
		hi.Pre = nil
		return []comparator{{op: ">=", v: hi}}, err
	}
	return []comparator{{op: "<", v: hi}}, err
}

// hyphenRange: "A - B" is >=A <=B, where a partial B covers all it leaves
// open.
func hyphenRange(from, to string) ([]comparator, error) {
	lo, err := parsePartial(from)
	if err != nil {
		return nil, err
	}
	hi, err := parsePartial(to)
	if err != nil {
		return nil, err
	}
	var set []comparator
	if lo.n > 0 {
		set = append(set, comparator{op: ">=", v: lo.version()})
	}
	switch hi.n {
	case 0:
	case 3:
		set = append(set, comparator{op: "<=", v: hi.version()})
	default:
		v, err := hi.next()
		if err != nil {
			return nil, err
		}
		set = append(set, comparator{op: "<", v: v})
	}
	if len(set) == 0 {
		return anyVersion(), nil
	}
	return set, nil
}
