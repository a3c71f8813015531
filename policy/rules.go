package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rule is one criterion of a promotion or mirroring policy, in DTR's shape:
//
//	{"field": "tag", "operator": "sw", "values": ["1."]}
//
// The fields, the operators that apply to each and the values they take
// are listed in the README's "Policies" section; CompileRules checks them.
type Rule struct {
	Field    string   `json:"field" yaml:"field"`
	Operator string   `json:"operator" yaml:"operator"`
	Values   []string `json:"values" yaml:"values"`
}

// String formats r as field, operator and quoted values, e.g.
// `tag semver ">=1.0.0"`.
func (r Rule) String() string {
	parts := []string{r.Field, r.Operator}
	for _, v := range r.Values {
		parts = append(parts, strconv.Quote(v))
	}
	return strings.Join(parts, " ")
}

// RuleError is the error for one bad rule. Its message names the rule by
// index, field and operator, as in
// `rules[2] (tag matches): invalid regexp "(": missing closing )`.
type RuleError struct {
	Index int
	Rule  Rule
	Err   error
}

// Error implements error.
func (e *RuleError) Error() string {
	return fmt.Sprintf("rules[%d] (%s %s): %v", e.Index, orQuoted(e.Rule.Field), orQuoted(e.Rule.Operator), e.Err)
}

// Unwrap returns ErrInvalidRule and the underlying error.
func (e *RuleError) Unwrap() []error { return []error{ErrInvalidRule, e.Err} }

// orQuoted returns s when it is a plain word, else s quoted, so that an
// empty name shows and a name with spaces or newlines cannot break the
// message apart.
func orQuoted(s string) string {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '_' {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// Matcher is a compiled list of rules. An image matches when every rule
// holds; an empty list matches every image. A Matcher is immutable and
// safe for concurrent use.
type Matcher struct {
	rules []Rule
	tests []test
}

// test evaluates one compiled rule.
type test func(img *Image, now time.Time) bool

// CompileRules checks and compiles rules, as a policy is saved. It reports
// every bad rule at once: the error joins one *RuleError per bad rule (use
// errors.As to get at them) and wraps ErrInvalidRule.
func CompileRules(rules []Rule) (*Matcher, error) {
	m := &Matcher{rules: make([]Rule, len(rules)), tests: make([]test, len(rules))}
	var errs []error
	for i, r := range rules {
		m.rules[i] = Rule{Field: r.Field, Operator: r.Operator, Values: append([]string(nil), r.Values...)}
		t, err := compileRule(r)
		if err != nil {
			errs = append(errs, &RuleError{Index: i, Rule: m.rules[i], Err: err})
			continue
		}
		m.tests[i] = t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Match reports whether img meets every rule; now is the time durations
// in created criteria count back from. A nil Matcher matches everything.
func (m *Matcher) Match(img Image, now time.Time) bool {
	return m.FirstMismatch(img, now) < 0
}

// FirstMismatch returns the index of the first rule img does not meet, or
// -1 if it meets them all, so that a plan or a job log can say why an
// image was left out.
func (m *Matcher) FirstMismatch(img Image, now time.Time) int {
	if m == nil {
		return -1
	}
	for i, t := range m.tests {
		if !t(&img, now) {
			return i
		}
	}
	return -1
}

// Rules returns a copy of the rules m was compiled from.
func (m *Matcher) Rules() []Rule {
	if m == nil {
		return nil
	}
	out := make([]Rule, len(m.rules))
	for i, r := range m.rules {
		out[i] = Rule{Field: r.Field, Operator: r.Operator, Values: append([]string(nil), r.Values...)}
	}
	return out
}

// compileRule checks one rule against its field's specification and
// compiles it.
func compileRule(r Rule) (test, error) {
	if r.Field == "" {
		return nil, errors.New("missing field")
	}
	spec, ok := lookupField(r.Field)
	if !ok {
		return nil, unknownField(r.Field)
	}
	if r.Operator == "" {
		return nil, fmt.Errorf("missing operator; %s takes %s", r.Field, orList(spec.ops))
	}
	if !knownOperator(r.Operator) {
		return nil, fmt.Errorf("unknown operator %q; %s takes %s", r.Operator, r.Field, orList(spec.ops))
	}
	if !contains(spec.ops, r.Operator) {
		return nil, fmt.Errorf("operator %s does not apply to %s; use %s", r.Operator, r.Field, orList(spec.ops))
	}
	if err := checkValueCount(r.Operator, r.Values); err != nil {
		return nil, err
	}
	return spec.compile(r.Operator, r.Values)
}

// unknownField explains an unknown field, pointing at the likely one.
func unknownField(name string) error {
	switch {
	case name == "vulnerability_minor":
		return errors.New(`unknown field "vulnerability_minor": DTR's "minor" has no exact equivalent here; use vulnerability_medium or vulnerability_low`)
	}
	for _, f := range fieldNames() {
		if strings.EqualFold(f, name) {
			return fmt.Errorf("unknown field %q (did you mean %q?)", name, f)
		}
	}
	return fmt.Errorf("unknown field %q; fields are %s", name, strings.Join(fieldNames(), ", "))
}

// allOperators lists every operator, for knownOperator.
func allOperators() []string {
	return []string{"eq", "neq", "sw", "ew", "contains", "oneof", "noneof", "matches", "semver",
		"before", "after", "gte", "gt", "lte", "lt"}
}

func knownOperator(op string) bool { return contains(allOperators(), op) }

// checkValueCount checks the number of values: oneof and noneof take one or
// more, every other operator exactly one.
func checkValueCount(op string, values []string) error {
	if op == "oneof" || op == "noneof" {
		if len(values) == 0 {
			return fmt.Errorf("operator %s takes one or more values, got none", op)
		}
		return nil
	}
	if len(values) != 1 {
		return fmt.Errorf("operator %s takes exactly one value, got %d", op, len(values))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// orList formats a list as "a, b or c".
func orList(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}
