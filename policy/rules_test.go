package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var ruleNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testImage is a two-platform image with a scan report, created two days
// before ruleNow.
func testImage() Image {
	return Image{
		Repository:   "dev/app",
		Tag:          "1.2.0",
		Digest:       "sha256:" + strings.Repeat("a", 64),
		MediaType:    "application/vnd.oci.image.index.v1+json",
		ArtifactType: "",
		Platforms: []Platform{
			{OS: "linux", Architecture: "amd64"},
			{OS: "linux", Architecture: "arm", Variant: "v7"},
		},
		Labels:          map[string]string{"org.opencontainers.image.version": "1.2.0", "tier": "gold", "empty": ""},
		Annotations:     map[string]string{"org.opencontainers.image.source": "https://git.example.org/app"},
		Created:         ruleNow.Add(-48 * time.Hour),
		Signed:          true,
		Vulnerabilities: &VulnerabilityCounts{Critical: 0, High: 2, Medium: 5, Low: 7, All: 16},
	}
}

func R(field, op string, values ...string) Rule {
	return Rule{Field: field, Operator: op, Values: values}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want bool
	}{
		{"tag eq", R("tag", "eq", "1.2.0"), true},
		{"tag eq other", R("tag", "eq", "1.2"), false},
		{"tag neq", R("tag", "neq", "latest"), true},
		{"tag sw", R("tag", "sw", "1."), true},
		{"tag ew", R("tag", "ew", ".0"), true},
		{"tag ew miss", R("tag", "ew", "-stable"), false},
		{"tag contains", R("tag", "contains", ".2."), true},
		{"tag oneof", R("tag", "oneof", "latest", "1.2.0"), true},
		{"tag oneof miss", R("tag", "oneof", "latest", "1.3.0"), false},
		{"tag noneof", R("tag", "noneof", "latest", "edge"), true},
		{"tag noneof hit", R("tag", "noneof", "1.2.0"), false},
		{"tag matches anchored", R("tag", "matches", `\d+\.\d+\.\d+`), true},
		{"tag matches is anchored", R("tag", "matches", `2\.0`), false},
		{"tag matches alternation stays anchored", R("tag", "matches", `x|1\.2`), false},
		{"tag semver", R("tag", "semver", ">=1.0.0 <2.0.0"), true},
		{"tag semver caret", R("tag", "semver", "^1.2"), true},
		{"tag semver miss", R("tag", "semver", ">=1.3.0"), false},
		{"repository eq", R("repository", "eq", "dev/app"), true},
		{"repository sw", R("repository", "sw", "dev/"), true},
		{"repository matches", R("repository", "matches", "(dev|qa)/.*"), true},
		{"mediaType ew", R("mediaType", "ew", "index.v1+json"), true},
		{"artifactType eq empty", R("artifactType", "eq", ""), true},
		{"artifactType neq", R("artifactType", "neq", "application/vnd.cncf.helm.config.v1+json"), true},
		{"platform eq", R("platform", "eq", "linux/amd64"), true},
		{"platform eq variant", R("platform", "eq", "linux/arm/v7"), true},
		{"platform eq any variant", R("platform", "eq", "linux/arm"), true},
		{"platform eq other variant", R("platform", "eq", "linux/arm/v6"), false},
		{"platform eq alias", R("platform", "eq", "linux/x86_64"), true},
		{"platform eq absent", R("platform", "eq", "linux/arm64"), false},
		{"platform neq absent", R("platform", "neq", "linux/arm64"), true},
		{"platform neq present", R("platform", "neq", "linux/amd64"), false},
		{"platform oneof", R("platform", "oneof", "linux/arm64", "linux/amd64"), true},
		{"platform noneof", R("platform", "noneof", "linux/arm64", "windows/amd64"), true},
		{"platform noneof hit", R("platform", "noneof", "linux/arm64", "linux/amd64"), false},
		{"label eq", R("label", "eq", "tier=gold"), true},
		{"label eq wrong value", R("label", "eq", "tier=silver"), false},
		{"label eq missing key", R("label", "eq", "team=web"), false},
		{"label eq empty value", R("label", "eq", "empty="), true},
		{"label neq", R("label", "neq", "tier=silver"), true},
		{"label neq missing key", R("label", "neq", "team=web"), true},
		{"label sw", R("label", "sw", "tier=go"), true},
		{"label contains", R("label", "contains", "tier=ol"), true},
		{"label matches present", R("label", "matches", "tier=.*"), true},
		{"label matches missing", R("label", "matches", "team=.*"), false},
		{"label oneof", R("label", "oneof", "tier=silver", "tier=gold"), true},
		{"label oneof other keys", R("label", "oneof", "team=web", "tier=gold"), true},
		{"label noneof", R("label", "noneof", "tier=silver", "team=web"), true},
		{"label noneof hit", R("label", "noneof", "tier=gold"), false},
		{"label semver", R("label", "semver", "org.opencontainers.image.version=~1.2"), true},
		{"label value with =", R("label", "neq", "tier=a=b"), true},
		{"annotation sw", R("annotation", "sw", "org.opencontainers.image.source=https://git.example.org/"), true},
		{"annotation eq missing", R("annotation", "eq", "x=y"), false},
		{"signed eq true", R("signed", "eq", "true"), true},
		{"signed eq false", R("signed", "eq", "false"), false},
		{"created after 72h", R("created", "after", "72h"), true},
		{"created after 1d", R("created", "after", "1d"), false},
		{"created before 1d", R("created", "before", "1d"), true},
		{"created before 3d", R("created", "before", "3d"), false},
		{"created after 1w", R("created", "after", "1w"), true},
		{"created after time", R("created", "after", "2025-05-01T00:00:00Z"), true},
		{"created before time", R("created", "before", "2025-05-01T00:00:00+02:00"), false},
		{"created after date", R("created", "after", "2025-05-30"), true},
		{"created before date", R("created", "before", "2025-05-31"), true},
		{"created after 0", R("created", "after", "0"), false},
		{"vulnerability_critical eq 0", R("vulnerability_critical", "eq", "0"), true},
		{"vulnerability_high lte 2", R("vulnerability_high", "lte", "2"), true},
		{"vulnerability_high lt 2", R("vulnerability_high", "lt", "2"), false},
		{"vulnerability_major is high", R("vulnerability_major", "gte", "2"), true},
		{"vulnerability_medium gt 4", R("vulnerability_medium", "gt", "4"), true},
		{"vulnerability_low neq 7", R("vulnerability_low", "neq", "7"), false},
		{"vulnerability_all gte 16", R("vulnerability_all", "gte", "16"), true},
		{"vulnerability_all gt 16", R("vulnerability_all", "gt", "16"), false},
	}
	img := testImage()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompileRules([]Rule{tc.rule})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(img, ruleNow); got != tc.want {
				t.Errorf("%s: Match = %v, want %v", tc.rule, got, tc.want)
			}
		})
	}
}

// TestMatchMissingData checks what an image without a report, without a
// created time or without platforms meets: nothing that needs them.
func TestMatchMissingData(t *testing.T) {
	img := Image{Repository: "dev/app", Tag: "latest"}
	for _, r := range []Rule{
		R("vulnerability_critical", "eq", "0"),
		R("vulnerability_critical", "neq", "5"),
		R("vulnerability_all", "lte", "1000"),
		R("created", "before", "1h"),
		R("created", "after", "2000-01-01"),
		R("platform", "eq", "linux/amd64"),
		R("label", "eq", "a=b"),
		R("tag", "semver", "*"),
		R("signed", "eq", "true"),
	} {
		m, err := CompileRules([]Rule{r})
		if err != nil {
			t.Fatal(err)
		}
		if m.Match(img, ruleNow) {
			t.Errorf("%s matched an image without the data", r)
		}
	}
	for _, r := range []Rule{
		R("platform", "neq", "linux/amd64"),
		R("label", "noneof", "a=b"),
		R("signed", "eq", "false"),
	} {
		m, err := CompileRules([]Rule{r})
		if err != nil {
			t.Fatal(err)
		}
		if !m.Match(img, ruleNow) {
			t.Errorf("%s did not match", r)
		}
	}
}

func TestMatchAllRules(t *testing.T) {
	m, err := CompileRules([]Rule{
		R("tag", "semver", ">=1.0.0"),
		R("signed", "eq", "true"),
		R("vulnerability_critical", "eq", "0"),
		R("platform", "eq", "linux/arm64"),
	})
	if err != nil {
		t.Fatal(err)
	}
	img := testImage()
	if m.Match(img, ruleNow) {
		t.Fatal("matched although linux/arm64 is missing")
	}
	if i := m.FirstMismatch(img, ruleNow); i != 3 {
		t.Errorf("FirstMismatch = %d, want 3", i)
	}
	img.Platforms = append(img.Platforms, Platform{OS: "linux", Architecture: "aarch64"})
	if !m.Match(img, ruleNow) || m.FirstMismatch(img, ruleNow) != -1 {
		t.Error("no match once every rule holds")
	}
	img.Tag = "1.3.0-rc1"
	if i := m.FirstMismatch(img, ruleNow); i != 0 {
		t.Errorf("pre-release: FirstMismatch = %d, want 0", i)
	}

	empty, err := CompileRules(nil)
	if err != nil || !empty.Match(Image{}, ruleNow) {
		t.Errorf("no rules must match everything: %v", err)
	}
	var nilMatcher *Matcher
	if !nilMatcher.Match(Image{}, ruleNow) || nilMatcher.Rules() != nil {
		t.Error("nil Matcher must match everything")
	}
}

// TestMatcherCopiesRules checks a compiled matcher does not change when
// the caller's rules do.
func TestMatcherCopiesRules(t *testing.T) {
	rules := []Rule{R("tag", "oneof", "a", "b")}
	m, err := CompileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Values[0] = "changed"
	got := m.Rules()
	if got[0].Values[0] != "a" {
		t.Errorf("Rules() = %v, changed with the input", got)
	}
	got[0].Values[1] = "changed"
	if m.Rules()[0].Values[1] != "b" {
		t.Error("Rules() returned the matcher's own slice")
	}
}

func TestCompileRulesErrors(t *testing.T) {
	tests := []struct {
		rule Rule
		want string
	}{
		{R("tag", "matches", "("), `rules[0] (tag matches): invalid regexp "(": missing closing )`},
		{R("tag", "matches", ")("), `rules[0] (tag matches): invalid regexp ")(": unexpected )`},
		{R("tag", "matches", "a**"), `rules[0] (tag matches): invalid regexp "a**": invalid nested repetition operator`},
		{R("colour", "eq", "red"), `rules[0] (colour eq): unknown field "colour"; fields are tag, repository, platform, label, annotation, artifactType, mediaType, signed, created, vulnerability_critical, vulnerability_high, vulnerability_medium, vulnerability_low, vulnerability_all`},
		{R("Tag", "eq", "x"), `rules[0] (Tag eq): unknown field "Tag" (did you mean "tag"?)`},
		{R("vulnerability_minor", "eq", "0"), `rules[0] (vulnerability_minor eq): unknown field "vulnerability_minor": DTR's "minor" has no exact equivalent here; use vulnerability_medium or vulnerability_low`},
		{R("", "eq", "x"), `rules[0] ("" eq): missing field`},
		{R("tag", "", "x"), `rules[0] (tag ""): missing operator; tag takes eq, neq, sw, ew, contains, oneof, noneof, matches or semver`},
		{R("tag", "like", "x"), `rules[0] (tag like): unknown operator "like"; tag takes eq, neq, sw, ew, contains, oneof, noneof, matches or semver`},
		{R("tag", "gt", "1"), `rules[0] (tag gt): operator gt does not apply to tag; use eq, neq, sw, ew, contains, oneof, noneof, matches or semver`},
		{R("repository", "semver", "*"), `rules[0] (repository semver): operator semver does not apply to repository; use eq, neq, sw, ew, contains, oneof, noneof or matches`},
		{R("platform", "sw", "linux"), `rules[0] (platform sw): operator sw does not apply to platform; use eq, neq, oneof or noneof`},
		{R("signed", "neq", "true"), `rules[0] (signed neq): operator neq does not apply to signed; use eq`},
		{R("created", "eq", "1h"), `rules[0] (created eq): operator eq does not apply to created; use before or after`},
		{R("vulnerability_high", "sw", "1"), `rules[0] (vulnerability_high sw): operator sw does not apply to vulnerability_high; use gte, gt, eq, neq, lte or lt`},
		{R("tag", "eq"), `rules[0] (tag eq): operator eq takes exactly one value, got 0`},
		{R("tag", "sw", "a", "b"), `rules[0] (tag sw): operator sw takes exactly one value, got 2`},
		{R("tag", "oneof"), `rules[0] (tag oneof): operator oneof takes one or more values, got none`},
		{R("tag", "semver", ">=1.2.0 <2"), ``},
		{R("tag", "semver", ">=1.2"), ``},
		{R("tag", "semver", "latest"), `rules[0] (tag semver): invalid semver range "latest": version "latest": "latest" is not a number`},
		{R("tag", "semver", ""), `rules[0] (tag semver): invalid semver range "": empty range; write * for any version`},
		{R("label", "eq", "tier"), `rules[0] (label eq): value "tier" is not key=value`},
		{R("label", "eq", "=gold"), `rules[0] (label eq): value "=gold" is not key=value`},
		{R("label", "oneof", "a", "b=c", "d"), `rules[0] (label oneof): value "a" is not key=value; value "d" is not key=value`},
		{R("annotation", "matches", "k=("), `rules[0] (annotation matches): invalid regexp "(": missing closing )`},
		{R("label", "semver", "v=x.y"), `rules[0] (label semver): invalid semver range "x.y": version "x.y": "y" is not a number`},
		{R("platform", "eq", "linux"), `rules[0] (platform eq): platform "linux" is not os/arch or os/arch/variant`},
		{R("platform", "oneof", "linux/", "a/b/c/d"), `rules[0] (platform oneof): platform "linux/" has an empty part; platform "a/b/c/d" is not os/arch or os/arch/variant`},
		{R("signed", "eq", "yes"), `rules[0] (signed eq): value "yes" is not true or false`},
		{R("signed", "eq", "TRUE"), `rules[0] (signed eq): value "TRUE" is not true or false`},
		{R("created", "after", "yesterday"), `rules[0] (created after): value "yesterday" is neither an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) nor a duration (72h, 30d)`},
		{R("created", "after", "-30d"), `rules[0] (created after): duration "-30d" is negative; durations count back from now (72h is 72 hours ago)`},
		{R("created", "before", "2024-13-01"), `rules[0] (created before): value "2024-13-01" is neither`},
		{R("created", "before", "72"), `rules[0] (created before): value "72" is neither`},
		{R("vulnerability_critical", "lte", "-1"), `rules[0] (vulnerability_critical lte): value "-1" is not a whole number >= 0`},
		{R("vulnerability_critical", "lte", "1.5"), `rules[0] (vulnerability_critical lte): value "1.5" is not a whole number >= 0`},
		{R("vulnerability_critical", "lte", "+1"), `rules[0] (vulnerability_critical lte): value "+1" is not a whole number >= 0`},
	}
	for _, tc := range tests {
		t.Run(tc.rule.String(), func(t *testing.T) {
			_, err := CompileRules([]Rule{tc.rule})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %q\nwant  %q", err, tc.want)
			}
		})
	}
}

// TestCompileRulesReportsAll checks every bad rule is reported at once,
// one line each, with its index.
func TestCompileRulesReportsAll(t *testing.T) {
	_, err := CompileRules([]Rule{
		R("tag", "sw", "1."),
		R("tag", "matches", "("),
		R("colour", "eq", "red"),
		R("vulnerability_all", "lt", "x"),
	})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d problems, want 3:\n%v", len(lines), err)
	}
	for i, prefix := range []string{"rules[1] (tag matches)", "rules[2] (colour eq)", "rules[3] (vulnerability_all lt)"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
	var re *RuleError
	if !errors.As(err, &re) || re.Index != 1 || re.Rule.Field != "tag" {
		t.Errorf("errors.As: %+v", re)
	}
}

// TestRuleJSON checks the DTR shape of a rule.
func TestRuleJSON(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"field":"tag","operator":"sw","values":["1."]}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Field != "tag" || r.Operator != "sw" || len(r.Values) != 1 || r.Values[0] != "1." {
		t.Errorf("decoded %+v", r)
	}
	b, err := json.Marshal(R("tag", "oneof", "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"field":"tag","operator":"oneof","values":["a","b"]}` {
		t.Errorf("encoded %s", got)
	}
}

func TestPlatform(t *testing.T) {
	if got := (Platform{OS: "linux", Architecture: "arm", Variant: "v7"}).String(); got != "linux/arm/v7" {
		t.Errorf("String = %q", got)
	}
	if got := (Platform{OS: "linux", Architecture: "amd64"}).String(); got != "linux/amd64" {
		t.Errorf("String = %q", got)
	}
	tests := []struct {
		pattern string
		p       Platform
		want    bool
	}{
		{"linux/arm64", Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, true},
		{"linux/arm64/v8", Platform{OS: "linux", Architecture: "arm64"}, true},
		{"linux/arm64/v8", Platform{OS: "linux", Architecture: "aarch64"}, true},
		{"linux/arm/v7", Platform{OS: "linux", Architecture: "arm"}, true},
		{"linux/arm/v7", Platform{OS: "linux", Architecture: "armhf"}, true},
		{"linux/arm/v6", Platform{OS: "linux", Architecture: "arm", Variant: "6"}, true},
		{"linux/arm/v6", Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
		{"linux/amd64", Platform{OS: "Linux", Architecture: "x86_64"}, true},
		{"linux/amd64/v1", Platform{OS: "linux", Architecture: "amd64"}, true},
		{"linux/amd64/v3", Platform{OS: "linux", Architecture: "amd64"}, false},
		{"linux/386", Platform{OS: "linux", Architecture: "i386"}, true},
		{"windows/amd64", Platform{OS: "linux", Architecture: "amd64"}, false},
	}
	for _, tc := range tests {
		pp, err := parsePlatformPattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := pp.match(tc.p); got != tc.want {
			t.Errorf("%s matches %s: %v, want %v", tc.pattern, tc.p, got, tc.want)
		}
	}
}

func TestMergeLabels(t *testing.T) {
	got := MergeLabels(map[string]string{"a": "1", "b": "2"}, nil, map[string]string{"b": "3", "c": "4"})
	want := map[string]string{"a": "1", "b": "2", "c": "4"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if MergeLabels() != nil || MergeLabels(nil, map[string]string{}) != nil {
		t.Error("no labels must give nil")
	}
}

// TestRuleErrorQuotesNames checks odd field and operator names cannot
// spread an error over several lines (found by FuzzCompileRules).
func TestRuleErrorQuotesNames(t *testing.T) {
	_, err := CompileRules([]Rule{R("0", "\n", "x"), R("tag x", "eq", "y")})
	want := "rules[0] (0 \"\\n\"): unknown field \"0\"; fields are"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %q, want prefix %q", err, want)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], `rules[1] ("tag x" eq): unknown field "tag x"`) {
		t.Errorf("lines = %q", lines)
	}
}

func TestRuleFieldsCompile(t *testing.T) {
	fields := RuleFields()
	if len(fields) == 0 || fields[0].Name != "tag" {
		t.Fatalf("RuleFields() = %v, want tag first", fields)
	}
	for _, f := range fields {
		if len(f.Operators) == 0 {
			t.Errorf("%s: no operators", f.Name)
		}
		for _, op := range f.Operators {
			if _, ok := lookupField(f.Name); !ok {
				t.Errorf("%s: not a field", f.Name)
			}
			spec, _ := lookupField(f.Name)
			found := false
			for _, o := range spec.ops {
				found = found || o == op
			}
			if !found {
				t.Errorf("%s %s: operator not accepted", f.Name, op)
			}
		}
	}
}
