package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TagTemplate names the tag a promotion or mirror writes, as DTR's tag
// templates do: "%n" is the original tag and the strftime codes below
// stand for parts of the time of the copy; "%%" is a literal "%". Codes
// follow C and Python's strftime in the C locale:
//
//	%n  original tag      1.2.0         %A  weekday       Monday
//	%a  weekday, short    Mon           %w  weekday, 0=Sunday  1
//	%d  day of month      05            %B  month         January
//	%b  month, short      Jan           %m  month         01
//	%Y  year              2024          %y  year, 2 digits     24
//	%H  hour, 00-23       14            %I  hour, 01-12   02
//	%p  AM or PM          PM            %M  minute        07
//	%S  second            09            %f  microsecond   000042
//	%Z  time zone         UTC           %j  day of year   005
//	%W  week of the year, Monday first, 00-53 (days before the first
//	    Monday are week 00)
//
// Times are in UTC unless In sets another location. An empty template
// keeps the tag. Since no tag may contain "%", a template with "%%" is
// refused when parsed rather than failing at every copy. A TagTemplate is immutable and safe for concurrent use.
type TagTemplate struct {
	raw   string
	parts []templatePart
	loc   *time.Location
}

// templatePart is a literal run of text, or one code (code != 0).
type templatePart struct {
	lit  string
	code byte
}

// minWidth returns the fewest characters code c expands to, or 0 if c is
// not a code.
func minWidth(c byte) int {
	switch c {
	case 'n', 'w', 'Z':
		return 1
	case 'd', 'm', 'y', 'H', 'I', 'p', 'M', 'S', 'W':
		return 2
	case 'a', 'B', 'b', 'j':
		return 3
	case 'Y':
		return 4
	case 'A', 'f':
		return 6
	}
	return 0
}

// maxTagLen is the longest tag OCI allows.
const maxTagLen = 128

// ParseTagTemplate parses a tag template. Positions in its errors count
// characters from 1. It refuses unknown codes, a lone "%" at the end, and
// literal text that can never be part of a tag (a character outside
// [A-Za-z0-9._-], a leading "." or "-", more than 128 characters in all).
// Errors wrap ErrInvalidTagTemplate.
func ParseTagTemplate(s string) (*TagTemplate, error) {
	t := &TagTemplate{raw: s, loc: time.UTC}
	fail := func(format string, args ...any) (*TagTemplate, error) {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidTagTemplate, s, fmt.Sprintf(format, args...))
	}
	var lit strings.Builder
	width, pos := 0, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		pos++
		if r != '%' {
			if !tagChar(r) {
				return fail("character %q at position %d cannot appear in a tag", r, pos)
			}
			if width == 0 && (r == '.' || r == '-') {
				return fail("a tag cannot start with %q (position %d)", r, pos)
			}
			lit.WriteRune(r)
			width++
			i += size
			continue
		}
		if i+1 == len(s) {
			return fail("lone %% at position %d; write %%%% for a literal %%", pos)
		}
		c := s[i+1]
		switch {
		case c == '%':
			return fail("%%%% at position %d is a literal %%, which cannot appear in a tag", pos)
		case minWidth(c) == 0:
			r2, _ := utf8.DecodeRuneInString(s[i+1:])
			return fail("unknown code %%%c at position %d", r2, pos)
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, templatePart{lit: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, templatePart{code: c})
		width += minWidth(c)
		i += 2
		pos++
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, templatePart{lit: lit.String()})
	}
	if width > maxTagLen {
		return fail("it always gives at least %d characters; a tag has at most %d", width, maxTagLen)
	}
	return t, nil
}

// In returns a copy of t that evaluates times in loc instead of UTC.
func (t *TagTemplate) In(loc *time.Location) *TagTemplate {
	c := *t
	c.loc = loc
	return &c
}

// String returns the template as written.
func (t *TagTemplate) String() string { return t.raw }

// Expand returns the tag the template gives for tag at time at (converted
// to the template's location). A nil or empty template returns tag
// unchanged. The result must be a valid OCI tag,
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}; otherwise the error, wrapping
// ErrInvalidTag, names the template, the tag and the result.
//
// A template with time codes gives a different tag at a different time:
// callers expand it once, when the copy is triggered, and keep the result
// for every retry of that copy.
func (t *TagTemplate) Expand(tag string, at time.Time) (string, error) {
	if t == nil || len(t.parts) == 0 {
		return tag, nil
	}
	at = at.In(t.loc)
	var b strings.Builder
	for _, p := range t.parts {
		if p.code == 0 {
			b.WriteString(p.lit)
			continue
		}
		b.WriteString(expandCode(p.code, tag, at))
	}
	out := b.String()
	if !ValidTag(out) {
		return "", fmt.Errorf("%w: template %q on tag %q gives %q, which is not a tag (tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127})",
			ErrInvalidTag, t.raw, tag, out)
	}
	return out, nil
}

// expandCode expands one strftime code.
func expandCode(c byte, tag string, t time.Time) string {
	two := func(n int) string { return fmt.Sprintf("%02d", n) }
	switch c {
	case 'n':
		return tag
	case 'A':
		return t.Weekday().String()
	case 'a':
		return t.Weekday().String()[:3]
	case 'w':
		return strconv.Itoa(int(t.Weekday()))
	case 'd':
		return two(t.Day())
	case 'B':
		return t.Month().String()
	case 'b':
		return t.Month().String()[:3]
	case 'm':
		return two(int(t.Month()))
	case 'Y':
		return fmt.Sprintf("%04d", t.Year())
	case 'y':
		return two(t.Year() % 100)
	case 'H':
		return two(t.Hour())
	case 'I':
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		return two(h)
	case 'p':
		if t.Hour() < 12 {
			return "AM"
		}
		return "PM"
	case 'M':
		return two(t.Minute())
	case 'S':
		return two(t.Second())
	case 'f':
		return fmt.Sprintf("%06d", t.Nanosecond()/1000)
	case 'Z':
		// The abbreviation, or +0300 style for a zone without one.
		return t.Format("MST")
	case 'j':
		return fmt.Sprintf("%03d", t.YearDay())
	case 'W':
		// C's formula: days before the year's first Monday are week 0.
		monday0 := (int(t.Weekday()) + 6) % 7
		return two((t.YearDay() - 1 + 7 - monday0) / 7)
	}
	return ""
}

// tagChar reports whether r may appear in a tag.
func tagChar(r rune) bool {
	return r < utf8.RuneSelf && (isAlnum(byte(r)) || r == '_' || r == '.' || r == '-')
}

// ValidTag reports whether s is a valid OCI tag:
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func ValidTag(s string) bool {
	if s == "" || len(s) > maxTagLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tagChar(rune(s[i])) {
			return false
		}
	}
	return true
}
