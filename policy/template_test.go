package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// allCodes is every strftime code, space-free so that it is a valid
// template: fields separated by "_".
const allCodes = "%A_%a_%w_%d_%B_%b_%m_%Y_%y_%H_%I_%p_%M_%S_%f_%j_%W"

func TestTagTemplateCodes(t *testing.T) {
	// The expected strings were produced by Python's strftime (C semantics)
	// for the same instants.
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2024, 1, 5, 14, 7, 9, 42000, time.UTC), "Friday_Fri_5_05_January_Jan_01_2024_24_14_02_PM_07_09_000042_005_01"},
		{time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), "Sunday_Sun_0_01_January_Jan_01_2023_23_00_12_AM_00_00_000000_001_00"},
		{time.Date(2021, 12, 31, 12, 30, 0, 0, time.UTC), "Friday_Fri_5_31_December_Dec_12_2021_21_12_12_PM_30_00_000000_365_52"},
		{time.Date(2024, 12, 30, 23, 59, 59, 999999999, time.UTC), "Monday_Mon_1_30_December_Dec_12_2024_24_23_11_PM_59_59_999999_365_53"},
	}
	tt, err := ParseTagTemplate(allCodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.at.Format(time.RFC3339), func(t *testing.T) {
			got, err := tt.Expand("1.2.0", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Expand = %q\n          want %q", got, tc.want)
			}
		})
	}
}

// TestTagTemplateWeekOfYear checks %W against its definition, for every
// day of several years: the number of Mondays of the year up to that day.
func TestTagTemplateWeekOfYear(t *testing.T) {
	tt, err := ParseTagTemplate("%W")
	if err != nil {
		t.Fatal(err)
	}
	for d := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2030; d = d.AddDate(0, 0, 1) {
		mondays := 0
		for x := time.Date(d.Year(), 1, 1, 0, 0, 0, 0, time.UTC); !x.After(d); x = x.AddDate(0, 0, 1) {
			if x.Weekday() == time.Monday {
				mondays++
			}
		}
		got, _ := tt.Expand("x", d)
		if want := twoDigits(mondays); got != want {
			t.Fatalf("%s: %%W = %s, want %s", d.Format("2006-01-02 Mon"), got, want)
		}
	}
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

func TestTagTemplateExpand(t *testing.T) {
	at := time.Date(2024, 3, 9, 8, 5, 1, 0, time.UTC)
	tests := []struct {
		tmpl, tag, want string
	}{
		{"", "1.2.0", "1.2.0"},
		{"%n", "1.2.0", "1.2.0"},
		{"%n-%Y%m%d", "1.2.0", "1.2.0-20240309"},
		{"%n-stable", "v3", "v3-stable"},
		{"latest", "1.2.0", "latest"},
		{"%Y.%m.%d-%H%M%S", "x", "2024.03.09-080501"},
		{"build_%n_%Z", "7", "build_7_UTC"},
		{"_%n", "a", "_a"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			tt, err := ParseTagTemplate(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.Expand(tc.tag, at)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Expand(%q) = %q, want %q", tc.tag, got, tc.want)
			}
		})
	}
	var nilTmpl *TagTemplate
	if got, err := nilTmpl.Expand("1.0", at); err != nil || got != "1.0" {
		t.Errorf("nil template: %q, %v", got, err)
	}
}

func TestTagTemplateLocation(t *testing.T) {
	base, err := ParseTagTemplate("%n-%H%M-%Z")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 9, 23, 30, 0, 0, time.UTC)
	cet := base.In(time.FixedZone("CET", 3600))
	if got, _ := cet.Expand("1", at); got != "1-0030-CET" {
		t.Errorf("in CET: %q", got)
	}
	if got, _ := base.Expand("1", at.In(time.FixedZone("CET", 3600))); got != "1-2330-UTC" {
		t.Errorf("UTC by default, whatever the input's zone: %q", got)
	}
	// A zone without an abbreviation formats as +0300, which no tag may hold.
	_, err = base.In(time.FixedZone("", 3*3600)).Expand("1.2.0", at)
	if !errors.Is(err, ErrInvalidTag) {
		t.Fatalf("err = %v, want ErrInvalidTag", err)
	}
	want := `policy: tag template gives an invalid tag: template "%n-%H%M-%Z" on tag "1.2.0" gives "1.2.0-0230-+0300", which is not a tag (tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127})`
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
}

func TestTagTemplateExpandErrors(t *testing.T) {
	at := time.Date(2024, 3, 9, 8, 5, 1, 0, time.UTC)
	tests := []struct {
		tmpl, tag, result string
	}{
		{"%n%n", strings.Repeat("a", 100), strings.Repeat("a", 200)},
		{"%n", "", ""},
		{"%n", "bad/tag", "bad/tag"},
		{"%n-x", "-lead", "-lead-x"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl+" "+tc.tag, func(t *testing.T) {
			tt, err := ParseTagTemplate(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tt.Expand(tc.tag, at)
			if !errors.Is(err, ErrInvalidTag) {
				t.Fatalf("err = %v, want ErrInvalidTag", err)
			}
			for _, s := range []string{`template "` + tc.tmpl + `"`, `on tag "` + tc.tag + `"`, `gives "` + tc.result + `"`} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestParseTagTemplateErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"%q", "unknown code %q at position 1"},
		{"%n-%x", "unknown code %x at position 4"},
		{"v%", "lone % at position 2; write %% for a literal %"},
		{"a%%b", "%% at position 2 is a literal %, which cannot appear in a tag"},
		{"a b", "character ' ' at position 2 cannot appear in a tag"},
		{"%n/%n", "character '/' at position 3 cannot appear in a tag"},
		{"é%n", "character 'é' at position 1 cannot appear in a tag"},
		{"%n-é", "character 'é' at position 4"},
		{"%é", "unknown code %é at position 1"},
		{".x", `a tag cannot start with '.' (position 1)`},
		{"-%n", `a tag cannot start with '-' (position 1)`},
		{strings.Repeat("a", 129), "it always gives at least 129 characters; a tag has at most 128"},
		{strings.Repeat("%Y", 33), "it always gives at least 132 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseTagTemplate(tc.in)
			if !errors.Is(err, ErrInvalidTagTemplate) {
				t.Fatalf("err = %v, want ErrInvalidTagTemplate", err)
			}
			want := `policy: invalid tag template "` + tc.in + `": ` + tc.msg
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %q\nwant  %q", err, want)
			}
		})
	}
}

func TestValidTag(t *testing.T) {
	for _, s := range []string{"a", "_", "0", "1.2.3", "v1.2.3-rc_1", "A.b-C_d", strings.Repeat("x", 128)} {
		if !ValidTag(s) {
			t.Errorf("ValidTag(%q) = false", s)
		}
	}
	for _, s := range []string{"", ".a", "-a", "a/b", "a:b", "a+b", "é", strings.Repeat("x", 129)} {
		if ValidTag(s) {
			t.Errorf("ValidTag(%q) = true", s)
		}
	}
}
