package policy

import (
	"encoding/base64"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// FuzzCompileRules compiles arbitrary one-rule lists. Compiling must never
// panic; a failure must be one *RuleError naming rule 0; a compiled rule
// must evaluate without panicking, and neq, noneof must be the exact
// negations of eq, oneof on string fields.
func FuzzCompileRules(f *testing.F) {
	seeds := []struct{ field, op, v1, v2, tag string }{
		{"tag", "eq", "1.2.0", "", "1.2.0"},
		{"tag", "semver", ">=1.2.0 <2.0.0", "", "1.5.0"},
		{"tag", "semver", "^1.2 || ~0.3.1", "", "v0.3.4"},
		{"tag", "matches", `v?\d+(\.\d+)*`, "", "v1.2"},
		{"tag", "matches", "(", "", "x"},
		{"tag", "oneof", "a", "b", "b"},
		{"repository", "sw", "dev/", "", "dev/app"},
		{"label", "eq", "tier=gold", "", ""},
		{"label", "oneof", "a=1", "b=2", ""},
		{"annotation", "matches", "k=.*", "", ""},
		{"platform", "oneof", "linux/arm/v7", "linux/amd64", ""},
		{"signed", "eq", "true", "", ""},
		{"created", "after", "168h", "", ""},
		{"created", "before", "2024-05-01T00:00:00Z", "", ""},
		{"vulnerability_critical", "lte", "0", "", ""},
		{"vulnerability_major", "gt", "3", "", ""},
		{"colour", "eq", "red", "", ""},
		{"tag", "gt", "1", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.field, s.op, s.v1, s.v2, s.tag)
	}
	img := testImage()
	f.Fuzz(func(t *testing.T, field, op, v1, v2, tag string) {
		values := []string{v1}
		if v2 != "" {
			values = append(values, v2)
		}
		r := Rule{Field: field, Operator: op, Values: values}
		m, err := CompileRules([]Rule{r})
		if err != nil {
			var re *RuleError
			if !errors.Is(err, ErrInvalidRule) || !errors.As(err, &re) || re.Index != 0 {
				t.Fatalf("error %v is not a *RuleError for rule 0", err)
			}
			if !strings.HasPrefix(err.Error(), "rules[0] (") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not name rule 0 on one line", err)
			}
			return
		}
		img := img
		img.Tag = tag
		got := m.Match(img, ruleNow)
		if neg, ok := map[string]string{"eq": "neq", "oneof": "noneof"}[op]; ok && field != "signed" && !strings.HasPrefix(field, "vulnerability_") {
			mn, err := CompileRules([]Rule{{Field: field, Operator: neg, Values: values}})
			if err != nil {
				t.Fatalf("%s compiles but %s does not: %v", op, neg, err)
			}
			if mn.Match(img, ruleNow) == got {
				t.Fatalf("%s and %s agree (%v) on %+v", r, neg, got, img)
			}
		}
	})
}

// FuzzParseRange parses arbitrary ranges and versions. Parsing must never
// panic; a parsed range's canonical form must parse to a range that
// contains the same versions; a parsed version must survive String.
func FuzzParseRange(f *testing.F) {
	for _, s := range []struct{ rng, ver string }{
		{">=1.2.0 <2.0.0", "1.5.0"},
		{"^1.2.3-beta.2", "1.2.3-beta.3"},
		{"~1.2 || 3.x", "3.1.0"},
		{"1.2.3 - 2.3", "2.3.9"},
		{">= 1.0.0", "v1.0.0"},
		{"<=1", "1.9.9-rc.1"},
		{"*", "0.0.0"},
		{">*", "1.0.0"},
		{"^0.0.1", "0.0.1+build"},
		{"1.x.3", "1.0.3"},
		{"=v1.2.3", "1.2.3"},
		{"^18446744073709551615", "18446744073709551615.0.0"},
	} {
		f.Add(s.rng, s.ver)
	}
	f.Fuzz(func(t *testing.T, rng, ver string) {
		v, verr := ParseVersion(ver)
		if verr == nil {
			w, err := ParseVersion(v.String())
			if err != nil || w.Compare(v) != 0 || w.String() != v.String() {
				t.Fatalf("version %q -> %q does not round-trip: %v", ver, v.String(), err)
			}
		} else if !errors.Is(verr, ErrInvalidVersion) {
			t.Fatalf("version error %v does not wrap ErrInvalidVersion", verr)
		}
		r, err := ParseRange(rng)
		if err != nil {
			if !errors.Is(err, ErrInvalidRange) {
				t.Fatalf("range error %v does not wrap ErrInvalidRange", err)
			}
			return
		}
		canon := r.Canonical()
		r2, err := ParseRange(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, rng, err)
		}
		if r2.Canonical() != canon {
			t.Fatalf("canonical form is not stable: %q -> %q", canon, r2.Canonical())
		}
		if verr == nil && r.Contains(v) != r2.Contains(v) {
			t.Fatalf("%q and its canonical form %q disagree on %s", rng, canon, v)
		}
	})
}

// FuzzTagTemplate parses and expands arbitrary templates. Neither may
// panic; an expansion either is a valid tag or fails with ErrInvalidTag.
func FuzzTagTemplate(f *testing.F) {
	for _, s := range []string{"", "%n", "%n-%Y%m%d", "%n_%H%M%S.%f", "%A-%a-%w-%d-%B-%b-%m-%y-%I%p-%Z-%j-%W",
		"latest", "%", "%%", "%q", "a b", ".x", "%n%n%n", strings.Repeat("%f", 22), "é%n"} {
		f.Add(s, "1.2.0", int64(1717243200123456789))
	}
	f.Add("%n", "", int64(0))
	f.Add("%Y", "x", int64(math.MinInt64)) // year 1677
	f.Fuzz(func(t *testing.T, tmpl, tag string, unixNano int64) {
		tt, err := ParseTagTemplate(tmpl)
		if err != nil {
			if !errors.Is(err, ErrInvalidTagTemplate) {
				t.Fatalf("parse error %v does not wrap ErrInvalidTagTemplate", err)
			}
			return
		}
		at := time.Unix(0, unixNano)
		for _, x := range []*TagTemplate{tt, tt.In(time.FixedZone("CET", 3600))} {
			out, err := x.Expand(tag, at)
			switch {
			case err != nil && !errors.Is(err, ErrInvalidTag):
				t.Fatalf("expand error %v does not wrap ErrInvalidTag", err)
			case err == nil && tmpl == "" && out != tag:
				t.Fatalf("empty template changed %q to %q", tag, out)
			case err == nil && tmpl != "" && !ValidTag(out):
				t.Fatalf("template %q gave invalid tag %q", tmpl, out)
			}
		}
	})
}

// FuzzParseScanReport parses arbitrary bodies. It must never panic; every
// error wraps ErrNotScanReport or ErrInvalidScanReport; counts are never
// negative and All covers the four severities.
func FuzzParseScanReport(f *testing.F) {
	trivy := readScanFixture(f, "trivy.json")
	grype := readScanFixture(f, "grype.json")
	pred := cosignVulnPredicate(f, trivy)
	stmt := inTotoStatement(f, PredicateTypeCosignVuln, pred)
	env := dsseEnvelope(f, MediaTypeInTotoStatement, stmt, base64.StdEncoding)
	for _, s := range []struct {
		mt   string
		body []byte
	}{
		{ArtifactTypeTrivyReport, trivy},
		{ArtifactTypeGrypeReport, grype},
		{ArtifactTypeJSON, pred},
		{MediaTypeInTotoStatement, stmt},
		{MediaTypeDSSEEnvelope, env},
		{ArtifactTypeSigstoreBundle, sigstoreBundle(f, env)},
		{"", []byte(`{"scanners":[{"result":{"matches":[{"vulnerability":{"severity":"High"}}]}}]}`)},
		{"", []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30"}`)},
		{"", []byte(`{"Results":[{"Vulnerabilities":[{"Severity":"LOW"},{}]}]}`)},
		{"application/octet-stream", []byte("x")},
		{"", []byte("null")},
	} {
		f.Add(s.mt, s.body)
	}
	f.Fuzz(func(t *testing.T, mediaType string, body []byte) {
		c, err := ParseScanReport(mediaType, body)
		if err != nil {
			if !errors.Is(err, ErrNotScanReport) && !errors.Is(err, ErrInvalidScanReport) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			if c != (VulnerabilityCounts{}) {
				t.Fatalf("counts %+v returned with an error", c)
			}
			return
		}
		if c.Critical < 0 || c.High < 0 || c.Medium < 0 || c.Low < 0 || c.All < c.Critical+c.High+c.Medium+c.Low {
			t.Fatalf("inconsistent counts %+v", c)
		}
	})
}
