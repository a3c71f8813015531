package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Problems is a list of configuration problems, each naming its key. The
// command collects the problems of a whole file (its shape, found by
// Normalize, and its values, found by the packages that take them) and
// reports them at once.
type Problems []string

func (p Problems) Error() string {
	return "invalid configuration:\n  " + strings.Join(p, "\n  ")
}

// Add records a problem at key.
func (p *Problems) Add(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

// AddEach records one problem for each error joined in err
// (errors.Join; any other error is one), as line writes it
// ("key: message"). A nil err adds nothing.
func (p *Problems) AddEach(err error, line func(error) string) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		*p = append(*p, line(e))
	}
}

// AddEntries records each error joined in err under the section key: the
// errors of a package that name their entry relative to its section
// ("intercept[1]: …", as forward.NewRules' do) become
// "section.intercept[1]: …".
func (p *Problems) AddEntries(section string, err error) {
	p.AddEach(err, func(e error) string { return section + "." + e.Error() })
}

// Join appends the problems of err, which is nil, Problems or another
// error (recorded as it is).
func (p *Problems) Join(err error) {
	var more Problems
	switch {
	case err == nil:
	case errors.As(err, &more):
		*p = append(*p, more...)
	default:
		*p = append(*p, err.Error())
	}
}

// IsProblems reports whether err is (or wraps) Problems: a file whose
// configuration was decoded, with values to report.
func IsProblems(err error) bool {
	var p Problems
	return errors.As(err, &p)
}

// Merge returns the problems of every err (nil, Problems, or another
// error recorded as it is) as one Problems, in order. A later problem of
// a key already reported is left out: a value the decoder refused is
// absent to the checks that follow, which would report it again as
// missing.
func Merge(errs ...error) error {
	var all, p Problems
	for _, err := range errs {
		all.Join(err)
	}
	seen := map[string]bool{}
	for _, msg := range all {
		key, _, _ := strings.Cut(msg, ": ")
		if seen[key] {
			continue
		}
		seen[key] = true
		p = append(p, msg)
	}
	return p.Err()
}

// Err returns p as an error, or nil if empty.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

// readFile reads a configuration file.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// secret returns an inline secret or the trimmed content of a file.
func secret(inline, file, key string, p *Problems) string {
	if file == "" {
		return inline
	}
	if inline != "" {
		p.Add(key, "set either password or password_file, not both")
		return ""
	}
	b, err := os.ReadFile(file)
	if err != nil {
		p.Add(key+"_file", "%v", err)
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}
