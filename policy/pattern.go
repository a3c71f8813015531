package policy

import (
	"errors"
	"strings"
)

// pattern is a compiled repository pattern: a slash-separated path whose
// segments are matched one by one. In a segment, * matches any run of
// characters (no '/'); a segment that is exactly ** matches any number of
// whole segments, none included. A pattern without wildcards matches one
// repository name exactly.
type pattern struct {
	raw  string
	segs []string
}

// compilePattern checks the syntax of s and splits it into segments.
func compilePattern(s string) (pattern, error) {
	if s == "" {
		return pattern{}, errors.New("empty pattern")
	}
	if strings.ContainsAny(s, "?[]{}\\") {
		return pattern{}, errors.New("only * and ** are wildcards; ?, [], {} and \\ are not supported")
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		switch {
		case seg == "":
			return pattern{}, errors.New("empty path segment (leading, trailing or double '/')")
		case seg != "**" && strings.Contains(seg, "**"):
			return pattern{}, errors.New("** must be a whole path segment")
		}
	}
	return pattern{raw: s, segs: segs}, nil
}

// match reports whether repo matches the pattern.
func (p pattern) match(repo string) bool {
	return matchSegments(p.segs, strings.Split(repo, "/"))
}

// matchSegments matches names against segs, where a "**" segment matches
// any run of names. It is the classic wildcard algorithm: on a mismatch,
// backtrack to the last ** and let it swallow one more name. Every other
// segment consumes exactly one name, so only the last ** ever needs to
// grow, and the work is O(len(segs)·len(names)) segment matches.
func matchSegments(segs, names []string) bool {
	si, ni := 0, 0
	star, starNi := -1, 0
	for ni < len(names) {
		switch {
		case si < len(segs) && segs[si] == "**":
			star, starNi = si, ni
			si++
		case si < len(segs) && matchSegment(segs[si], names[ni]):
			si++
			ni++
		case star >= 0:
			starNi++
			si, ni = star+1, starNi
		default:
			return false
		}
	}
	for si < len(segs) && segs[si] == "**" {
		si++
	}
	return si == len(segs)
}

// matchSegment matches one name against one segment, where * matches any
// run of bytes. The same algorithm as matchSegments, on bytes.
func matchSegment(seg, name string) bool {
	pi, ni := 0, 0
	star, starNi := -1, 0
	for ni < len(name) {
		switch {
		case pi < len(seg) && seg[pi] == '*':
			star, starNi = pi, ni
			pi++
		case pi < len(seg) && seg[pi] == name[ni]:
			pi++
			ni++
		case star >= 0:
			starNi++
			pi, ni = star+1, starNi
		default:
			return false
		}
	}
	for pi < len(seg) && seg[pi] == '*' {
		pi++
	}
	return pi == len(seg)
}

// validRepoName reports whether repo is a plausible repository name: not
// empty, no empty, "." or ".." segments. The registry validates the full
// grammar; this only keeps odd paths from matching broad patterns.
func validRepoName(repo string) bool {
	if repo == "" {
		return false
	}
	for _, seg := range strings.Split(repo, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
