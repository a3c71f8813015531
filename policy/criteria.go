package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// fieldSpec says which operators apply to a field and how to compile a
// rule on it.
type fieldSpec struct {
	ops     []string
	compile func(op string, values []string) (test, error)
}

// textOps are the operators of string fields; semverOps add semver.
func textOps() []string {
	return []string{"eq", "neq", "sw", "ew", "contains", "oneof", "noneof", "matches"}
}

func semverOps() []string { return append(textOps(), "semver") }

// countOps are the operators of vulnerability counts.
func countOps() []string { return []string{"gte", "gt", "eq", "neq", "lte", "lt"} }

// joinProblems joins the problems of one rule into one error, separated by
// "; " so that the rule's message stays on one line.
func joinProblems(errs []error) error {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// fieldNames lists the fields in the order the README documents them.
func fieldNames() []string {
	return []string{"tag", "repository", "platform", "label", "annotation", "artifactType", "mediaType",
		"signed", "created", "vulnerability_critical", "vulnerability_high", "vulnerability_medium",
		"vulnerability_low", "vulnerability_all"}
}

// lookupField returns the specification of a field. vulnerability_major
// is DTR's name for vulnerability_high.
func lookupField(name string) (fieldSpec, bool) {
	switch name {
	case "tag":
		return textField(semverOps(), func(img *Image) string { return img.Tag }), true
	case "repository":
		return textField(textOps(), func(img *Image) string { return img.Repository }), true
	case "artifactType":
		return textField(textOps(), func(img *Image) string { return img.ArtifactType }), true
	case "mediaType":
		return textField(textOps(), func(img *Image) string { return img.MediaType }), true
	case "label":
		return keyValueField(func(img *Image) map[string]string { return img.Labels }), true
	case "annotation":
		return keyValueField(func(img *Image) map[string]string { return img.Annotations }), true
	case "platform":
		return fieldSpec{ops: []string{"eq", "neq", "oneof", "noneof"}, compile: compilePlatform}, true
	case "signed":
		return fieldSpec{ops: []string{"eq"}, compile: compileSigned}, true
	case "created":
		return fieldSpec{ops: []string{"before", "after"}, compile: compileCreated}, true
	case "vulnerability_critical":
		return countField(func(c *VulnerabilityCounts) int { return c.Critical }), true
	case "vulnerability_high", "vulnerability_major":
		return countField(func(c *VulnerabilityCounts) int { return c.High }), true
	case "vulnerability_medium":
		return countField(func(c *VulnerabilityCounts) int { return c.Medium }), true
	case "vulnerability_low":
		return countField(func(c *VulnerabilityCounts) int { return c.Low }), true
	case "vulnerability_all":
		return countField(func(c *VulnerabilityCounts) int { return c.All }), true
	}
	return fieldSpec{}, false
}

// negated reports whether op is the negation of another (neq of eq, noneof
// of oneof), and returns that other operator.
func negated(op string) (string, bool) {
	switch op {
	case "neq":
		return "eq", true
	case "noneof":
		return "oneof", true
	}
	return op, false
}

// textField is a field with one string value.
func textField(ops []string, get func(*Image) string) fieldSpec {
	return fieldSpec{ops: ops, compile: func(op string, values []string) (test, error) {
		pos, neg := negated(op)
		pred, err := textPredicate(pos, values)
		if err != nil {
			return nil, err
		}
		return func(img *Image, _ time.Time) bool { return pred(get(img)) != neg }, nil
	}}
}

// textPredicate compiles a positive string operator.
func textPredicate(op string, values []string) (func(string) bool, error) {
	v := values[0]
	switch op {
	case "eq":
		return func(s string) bool { return s == v }, nil
	case "sw":
		return func(s string) bool { return strings.HasPrefix(s, v) }, nil
	case "ew":
		return func(s string) bool { return strings.HasSuffix(s, v) }, nil
	case "contains":
		return func(s string) bool { return strings.Contains(s, v) }, nil
	case "oneof":
		set := make(map[string]bool, len(values))
		for _, x := range values {
			set[x] = true
		}
		return func(s string) bool { return set[s] }, nil
	case "matches":
		re, err := compileAnchored(v)
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	case "semver":
		r, err := parseRange(v)
		if err != nil {
			return nil, fmt.Errorf("invalid semver range %q: %s", v, err)
		}
		return func(s string) bool {
			ver, err := parseVersion(s)
			return err == nil && r.Contains(ver)
		}, nil
	}
	return nil, fmt.Errorf("operator %s is not a string operator", op)
}

// compileAnchored compiles an RE2 expression that must match the whole
// value. The expression is checked on its own first, so that the anchors
// added around it cannot make a broken one valid.
func compileAnchored(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid regexp %q: %s", expr, se.Code)
		}
		return nil, fmt.Errorf("invalid regexp %q: %v", expr, err)
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// keyValueField is a map field (labels, annotations) whose values are
// written key=value. A missing key fails every positive operator and meets
// neq and noneof.
func keyValueField(get func(*Image) map[string]string) fieldSpec {
	return fieldSpec{ops: semverOps(), compile: func(op string, values []string) (test, error) {
		pos, neg := negated(op)
		type pair struct {
			key  string
			pred func(string) bool
		}
		var pairs []pair
		var errs []error
		for _, v := range values {
			key, val, ok := strings.Cut(v, "=")
			if !ok || key == "" {
				errs = append(errs, fmt.Errorf("value %q is not key=value", v))
				continue
			}
			p := pos
			if p == "oneof" {
				p = "eq" // each value is its own key=value pair
			}
			pred, err := textPredicate(p, []string{val})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			pairs = append(pairs, pair{key, pred})
		}
		if len(errs) > 0 {
			return nil, joinProblems(errs)
		}
		return func(img *Image, _ time.Time) bool {
			m := get(img)
			for _, p := range pairs {
				if v, ok := m[p.key]; ok && p.pred(v) {
					return !neg
				}
			}
			return neg
		}, nil
	}}
}

// compilePlatform compiles a platform rule: eq and oneof hold when any of
// the image's platforms matches a value; neq and noneof when none does.
func compilePlatform(op string, values []string) (test, error) {
	_, neg := negated(op)
	var pats []platformPattern
	var errs []error
	for _, v := range values {
		p, err := parsePlatformPattern(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pats = append(pats, p)
	}
	if len(errs) > 0 {
		return nil, joinProblems(errs)
	}
	return func(img *Image, _ time.Time) bool {
		for _, p := range img.Platforms {
			for _, pat := range pats {
				if pat.match(p) {
					return !neg
				}
			}
		}
		return neg
	}, nil
}

// compileSigned compiles "signed eq true|false".
func compileSigned(_ string, values []string) (test, error) {
	want, err := strconv.ParseBool(values[0])
	if err != nil || (values[0] != "true" && values[0] != "false") {
		return nil, fmt.Errorf("value %q is not true or false", values[0])
	}
	return func(img *Image, _ time.Time) bool { return img.Signed == want }, nil
}

// compileCreated compiles "created before|after T". T is an RFC 3339 time,
// a date (midnight UTC), or a duration counted back from now: "created
// after 168h" holds for images created in the last 168 hours, "created
// before 30d" for images older than 30 days.
func compileCreated(op string, values []string) (test, error) {
	threshold, err := parseTimeOrAge(values[0])
	if err != nil {
		return nil, err
	}
	return func(img *Image, now time.Time) bool {
		if img.Created.IsZero() {
			return false
		}
		t := threshold(now)
		if op == "before" {
			return img.Created.Before(t)
		}
		return img.Created.After(t)
	}, nil
}

// parseTimeOrAge parses a point in time: a fixed time, or an age before now.
func parseTimeOrAge(v string) (func(now time.Time) time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return func(time.Time) time.Time { return t }, nil
		}
	}
	d, err := parseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("value %q is neither an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) nor a duration (72h, 30d)", v)
	}
	if d < 0 {
		return nil, fmt.Errorf("duration %q is negative; durations count back from now (72h is 72 hours ago)", v)
	}
	return func(now time.Time) time.Time { return now.Add(-d) }, nil
}

// countField is a vulnerability count. An image without a scan report
// meets none of its rules, neq included.
func countField(get func(*VulnerabilityCounts) int) fieldSpec {
	return fieldSpec{ops: countOps(), compile: func(op string, values []string) (test, error) {
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil || n < 0 || !allDigits(values[0]) {
			return nil, fmt.Errorf("value %q is not a whole number >= 0", values[0])
		}
		return func(img *Image, _ time.Time) bool {
			if img.Vulnerabilities == nil {
				return false
			}
			c := int64(get(img.Vulnerabilities))
			switch op {
			case "gte":
				return c >= n
			case "gt":
				return c > n
			case "eq":
				return c == n
			case "neq":
				return c != n
			case "lte":
				return c <= n
			}
			return c < n
		}, nil
	}}
}
