package policy

// RuleField is a field that rules may test, with the operators that apply
// to it (for rule builders: the console's, the CLI's help).
type RuleField struct {
	Name      string
	Operators []string
}

// RuleFields lists the fields of rules in the order the README documents
// them, each with its operators.
func RuleFields() []RuleField {
	names := fieldNames()
	out := make([]RuleField, 0, len(names))
	for _, n := range names {
		spec, _ := lookupField(n)
		out = append(out, RuleField{Name: n, Operators: append([]string(nil), spec.ops...)})
	}
	return out
}
