package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	valid := []struct {
		in   string
		want string
	}{
		{"1.2.3", "1.2.3"},
		{"v1.2.3", "1.2.3"},
		{"V0.0.0", "0.0.0"},
		{"1.2.3-rc.1", "1.2.3-rc.1"},
		{"1.2.3-0.3.7", "1.2.3-0.3.7"},
		{"1.2.3-x-y-z.--", "1.2.3-x-y-z.--"},
		{"1.2.3+build.5", "1.2.3+build.5"},
		{"1.2.3-beta+exp.sha.5114f85", "1.2.3-beta+exp.sha.5114f85"},
		{"18446744073709551615.0.0", "18446744073709551615.0.0"},
	}
	for _, tc := range valid {
		t.Run(tc.in, func(t *testing.T) {
			v, err := ParseVersion(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
	invalid := []struct {
		in, msg string
	}{
		{"", "want MAJOR.MINOR.PATCH, got 1 part(s)"},
		{"latest", "want MAJOR.MINOR.PATCH, got 1 part(s)"},
		{"1.2", "want MAJOR.MINOR.PATCH, got 2 part(s)"},
		{"1.2.3.4", "got 4 part(s)"},
		{"01.2.3", `number "01" has a leading zero`},
		{"1.2.3-01", `numeric identifier "01" has a leading zero`},
		{"1.2.3-", `empty identifier`},
		{"1.2.3-rc..1", `empty identifier`},
		{"1.2.3+", `build metadata: empty identifier`},
		{"1.2.3-rc_1", `identifier "rc_1" has character '_'`},
		{"vv1.2.3", `"v1" is not a number`},
		{"1.-2.3", "got 2 part(s)"},
		{"1..3", "empty number"},
		{"18446744073709551616.0.0", `number "18446744073709551616" is too large`},
	}
	for _, tc := range invalid {
		t.Run("invalid "+tc.in, func(t *testing.T) {
			_, err := ParseVersion(tc.in)
			if !errors.Is(err, ErrInvalidVersion) {
				t.Fatalf("err = %v, want ErrInvalidVersion", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}

// TestVersionCompare checks the precedence example of semver.org, 11.4.
func TestVersionCompare(t *testing.T) {
	ordered := []string{
		"0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			va, vb := mustVersion(t, a), mustVersion(t, b)
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := va.Compare(vb); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, want)
			}
		}
	}
	if c := mustVersion(t, "1.0.0+a").Compare(mustVersion(t, "1.0.0+b")); c != 0 {
		t.Errorf("build metadata changed the order: %d", c)
	}
	// Numeric identifiers beyond uint64 still compare numerically.
	if c := mustVersion(t, "1.0.0-99999999999999999999").Compare(mustVersion(t, "1.0.0-100000000000000000000")); c != -1 {
		t.Errorf("long numeric identifiers: %d, want -1", c)
	}
}

func mustVersion(t *testing.T, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRangeContains(t *testing.T) {
	tests := []struct {
		rng  string
		in   []string
		out  []string
		canl string
	}{
		{">=1.2.0 <2.0.0", []string{"1.2.0", "1.9.9", "v1.5.0"}, []string{"1.1.9", "2.0.0", "2.0.0-rc.1", "1.5.0-rc.1"}, ">=1.2.0 <2.0.0"},
		{">= 1.2.0 < 2.0.0", []string{"1.2.0"}, []string{"2.0.0"}, ">=1.2.0 <2.0.0"},
		{">=1.0.0", []string{"1.0.0", "1.2.0", "99.0.0"}, []string{"0.9.0", "1.3.0-rc1", "1.0.0-rc.1"}, ">=1.0.0"},
		{"1.2.3", []string{"1.2.3", "v1.2.3", "1.2.3+build"}, []string{"1.2.4", "1.2.3-rc.1"}, "=1.2.3"},
		{"=1.2.3", []string{"1.2.3"}, []string{"1.2.2"}, "=1.2.3"},
		{"*", []string{"0.0.0", "1.2.3"}, []string{"1.2.3-rc.1"}, "*"},
		{"x", []string{"5.0.0"}, nil, "*"},
		{"1.x", []string{"1.0.0", "1.99.99"}, []string{"0.9.9", "2.0.0", "1.5.0-beta"}, ">=1.0.0 <2.0.0-0"},
		{"1", []string{"1.0.0", "1.9.0"}, []string{"2.0.0"}, ">=1.0.0 <2.0.0-0"},
		{"1.2.*", []string{"1.2.0", "1.2.9"}, []string{"1.3.0", "1.1.0"}, ">=1.2.0 <1.3.0-0"},
		{"1.2", []string{"1.2.0", "1.2.9"}, []string{"1.3.0"}, ">=1.2.0 <1.3.0-0"},
		{"~1.2.3", []string{"1.2.3", "1.2.9"}, []string{"1.3.0", "1.2.2"}, ">=1.2.3 <1.3.0-0"},
		{"~1.2", []string{"1.2.0", "1.2.9"}, []string{"1.3.0"}, ">=1.2.0 <1.3.0-0"},
		{"~1", []string{"1.0.0", "1.9.0"}, []string{"2.0.0"}, ">=1.0.0 <2.0.0-0"},
		{"~>1.2.3", []string{"1.2.4"}, []string{"1.3.0"}, ">=1.2.3 <1.3.0-0"},
		{"~1.2.3-beta.2", []string{"1.2.3-beta.2", "1.2.3-beta.4", "1.2.3", "1.2.5"}, []string{"1.2.3-beta.1", "1.2.4-beta.2"}, ">=1.2.3-beta.2 <1.3.0-0"},
		{"^1.2.3", []string{"1.2.3", "1.9.9"}, []string{"2.0.0", "1.2.2", "2.0.0-0"}, ">=1.2.3 <2.0.0-0"},
		{"^1.2", []string{"1.2.0", "1.9.0"}, []string{"2.0.0", "1.1.0"}, ">=1.2.0 <2.0.0-0"},
		{"^0.2.3", []string{"0.2.3", "0.2.9"}, []string{"0.3.0"}, ">=0.2.3 <0.3.0-0"},
		{"^0.0.3", []string{"0.0.3"}, []string{"0.0.4"}, ">=0.0.3 <0.0.4-0"},
		{"^0.0", []string{"0.0.0", "0.0.9"}, []string{"0.1.0"}, ">=0.0.0 <0.1.0-0"},
		{"^0", []string{"0.0.0", "0.9.0"}, []string{"1.0.0"}, ">=0.0.0 <1.0.0-0"},
		{"^1.x", []string{"1.0.0", "1.9.0"}, []string{"2.0.0"}, ">=1.0.0 <2.0.0-0"},
		{"^1.2.3-beta.2", []string{"1.2.3-beta.2", "1.2.3-beta.3", "1.9.0"}, []string{"1.2.4-beta.2", "2.0.0-beta.1"}, ">=1.2.3-beta.2 <2.0.0-0"},
		{">1.2", []string{"1.3.0"}, []string{"1.2.9", "1.3.0-rc.1"}, ">=1.3.0"},
		{">1", []string{"2.0.0"}, []string{"1.9.9"}, ">=2.0.0"},
		{">1.2.3", []string{"1.2.4"}, []string{"1.2.3"}, ">1.2.3"},
		{">=1.2", []string{"1.2.0"}, []string{"1.1.9"}, ">=1.2.0"},
		{"<1.2", []string{"1.1.9"}, []string{"1.2.0", "1.2.0-rc.1", "1.1.9-rc.1"}, "<1.2.0-0"},
		{"<=1.2", []string{"1.2.9"}, []string{"1.3.0", "1.3.0-alpha"}, "<1.3.0-0"},
		{"<=1", []string{"1.9.9"}, []string{"2.0.0"}, "<2.0.0-0"},
		{"<=1.2.3", []string{"1.2.3"}, []string{"1.2.4"}, "<=1.2.3"},
		{"<*", nil, []string{"0.0.0", "1.0.0"}, "<0.0.0-0"},
		{">*", nil, []string{"0.0.0"}, "<0.0.0-0"},
		{">=*", []string{"1.0.0"}, nil, "*"},
		{"1.2.3 - 2.3.4", []string{"1.2.3", "2.3.4"}, []string{"1.2.2", "2.3.5"}, ">=1.2.3 <=2.3.4"},
		{"1.2 - 2.3.4", []string{"1.2.0"}, []string{"1.1.9"}, ">=1.2.0 <=2.3.4"},
		{"1.2.3 - 2.3", []string{"2.3.9"}, []string{"2.4.0"}, ">=1.2.3 <2.4.0-0"},
		{"1.2.3 - 2", []string{"2.9.9"}, []string{"3.0.0"}, ">=1.2.3 <3.0.0-0"},
		{"* - 2", []string{"0.0.1"}, []string{"3.0.0"}, "<3.0.0-0"},
		{"1.2.3 || >=2.1.0", []string{"1.2.3", "2.1.0", "3.0.0"}, []string{"1.2.4", "2.0.0"}, "=1.2.3 || >=2.1.0"},
		{"<1.0.0 || >=2.0.0-rc.1 <2.0.0", []string{"0.1.0", "2.0.0-rc.2"}, []string{"1.0.0", "2.0.0", "2.1.0-rc.1"}, "<1.0.0 || >=2.0.0-rc.1 <2.0.0"},
		{">=1.2.3-alpha <2.0.0", []string{"1.2.3-beta", "1.3.0"}, []string{"1.3.0-alpha", "1.2.3-0"}, ">=1.2.3-alpha <2.0.0"},
		{"v1.2.3", []string{"1.2.3"}, nil, "=1.2.3"},
		{">=v1.2.3", []string{"1.2.3"}, nil, ">=1.2.3"},
	}
	for _, tc := range tests {
		t.Run(tc.rng, func(t *testing.T) {
			r, err := ParseRange(tc.rng)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Canonical(); got != tc.canl {
				t.Errorf("Canonical() = %q, want %q", got, tc.canl)
			}
			if r.String() != tc.rng {
				t.Errorf("String() = %q", r.String())
			}
			for _, v := range tc.in {
				if !r.Contains(mustVersion(t, v)) {
					t.Errorf("%s does not contain %s", tc.rng, v)
				}
			}
			for _, v := range tc.out {
				if r.Contains(mustVersion(t, v)) {
					t.Errorf("%s contains %s", tc.rng, v)
				}
			}
		})
	}
}

func TestParseRangeErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty range; write * for any version"},
		{"   ", "empty range"},
		{"1.2.3 ||", "alternative 2 is empty"},
		{"|| 1.2.3", "alternative 1 is empty"},
		{">=", `operator ">=" has no version after it`},
		{">= ", `operator ">=" has no version after it`},
		{"1.2.3 - ", `a hyphen range is VERSION - VERSION, got "1.2.3 -"`},
		{"1 - 2 - 3", "a hyphen range is VERSION - VERSION"},
		{"1.x.3", `version "1.x.3" has a number after a wildcard`},
		{"1.2.3.4", `version "1.2.3.4" has more than three numbers`},
		{"1.2-beta", `version "1.2-beta": a pre-release or build needs MAJOR.MINOR.PATCH`},
		{">=01.2.3", `version "01.2.3": number "01" has a leading zero`},
		{">=a.b.c", `version "a.b.c": "a" is not a number`},
		{"==1.2.3", `"=1" is not a number`},
		{"1.2.3-rc..1", `pre-release: empty identifier in "rc..1"`},
		{"^18446744073709551615", "version number too large"},
		{"<=1.18446744073709551615", "version number too large"},
		{"latest", `"latest" is not a number`},
		{strings.Repeat("1", 1025), "longer than 1024 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseRange(tc.in)
			if !errors.Is(err, ErrInvalidRange) {
				t.Fatalf("err = %v, want ErrInvalidRange", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}
