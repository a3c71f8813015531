package policy

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// ValidationError lists every problem of a policy definition. Each problem
// is a *FieldError or, for a rule, a *RuleError, and names its JSON key.
// It wraps ErrInvalidPolicy and each problem, for errors.Is and errors.As.
type ValidationError struct {
	Problems []error
}

// Error implements error: one problem per line.
func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns ErrInvalidPolicy and the problems.
func (e *ValidationError) Unwrap() []error {
	return append([]error{ErrInvalidPolicy}, e.Problems...)
}

// FieldError is one problem with the value of one key.
type FieldError struct {
	Key string
	Err error
}

// Error implements error as "key: problem".
func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *FieldError) Unwrap() error { return e.Err }

// problems collects the problems of one validation.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Err: fmt.Errorf(format, args...)})
}

// addErr records err under key, if not nil.
func (p *problems) addErr(key string, err error) {
	if err != nil {
		*p = append(*p, &FieldError{Key: key, Err: err})
	}
}

// rules compiles rules and records each bad rule.
func (p *problems) rules(rules []Rule) {
	if _, err := CompileRules(rules); err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			*p = append(*p, joined.Unwrap()...)
			return
		}
		*p = append(*p, err)
	}
}

// tagTemplate parses a template and records the problem without the
// sentinel's "policy:" prefix.
func (p *problems) tagTemplate(key, s string) {
	if _, err := ParseTagTemplate(s); err != nil {
		p.add(key, "%s", strings.TrimPrefix(err.Error(), "policy: "))
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// maxRepositoryLen is distribution's limit on repository names.
const maxRepositoryLen = 255

// checkRepository checks a repository name against the OCI distribution
// grammar: /-separated components of lowercase letters and digits, joined
// inside a component by ".", "_", "__" or runs of "-".
func checkRepository(name string) error {
	switch {
	case name == "":
		return errors.New("required")
	case len(name) > maxRepositoryLen:
		return fmt.Errorf("longer than %d characters", maxRepositoryLen)
	}
	for _, c := range strings.Split(name, "/") {
		if !validComponent(c) {
			return fmt.Errorf("%q is not a repository name: /-separated parts of lowercase letters and digits, joined by ., _, __ or -", name)
		}
	}
	return nil
}

func validComponent(s string) bool {
	lowerAlnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if s == "" || !lowerAlnum(s[0]) || !lowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); {
		if lowerAlnum(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && !lowerAlnum(s[j]) {
			j++
		}
		sep := s[i:j]
		if sep != "." && sep != "_" && sep != "__" && strings.Trim(sep, "-") != "" {
			return false
		}
		i = j
	}
	return true
}

// checkName checks an ID or a name: [A-Za-z0-9][A-Za-z0-9._-]{0,127}, so
// that it is safe in a URL, a file name and a log line.
func checkName(s string) error {
	if len(s) > 128 {
		return errors.New("longer than 128 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%q has character %q; use letters, digits, ., _ and -, starting with a letter or digit", s, c)
		}
	}
	return nil
}

// checkRemoteHost checks a registry base URL: http or https, a host, an
// optional port, no user name or password, no path, query or fragment.
// It returns the scheme.
func checkRemoteHost(s string) (string, error) {
	if s == "" {
		return "", errors.New("required")
	}
	if !strings.Contains(s, "://") {
		return "", fmt.Errorf("%q has no scheme; write https://%s", s, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's errors quote the input, which may hold a password.
		return "", errors.New("not a valid URL")
	}
	shown := u.Redacted()
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("%q: scheme %q is not http or https", shown, u.Scheme)
	case u.User != nil:
		return "", fmt.Errorf("%q: user name and password go in username and password, not in the URL", shown)
	case u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", shown)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q must not have a query or fragment", shown)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("%q must not have a path; the repository goes in remoteRepository", shown)
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %q is not 1-65535", shown, port)
		}
	}
	return scheme, nil
}

// maxCALen bounds a remoteCA bundle.
const maxCALen = 1 << 20

// checkCA checks that s is one or more PEM certificates and nothing else.
// It never quotes the PEM, which might be a pasted private key.
func checkCA(s string) error {
	if len(s) > maxCALen {
		return fmt.Errorf("longer than %d bytes", maxCALen)
	}
	rest := []byte(s)
	n := 0
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		n++
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %s, not a CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n, err)
		}
	}
	switch {
	case n == 0:
		return errors.New("no PEM certificate found")
	case strings.TrimSpace(string(rest)) != "":
		return fmt.Errorf("text after certificate %d is not PEM", n)
	}
	return nil
}

// checkUsername refuses what Basic authentication cannot carry.
func checkUsername(s string) error {
	for _, r := range s {
		if r == ':' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("must not contain %q", r)
		}
	}
	return nil
}

// checkPath checks a file path is absolute.
func checkPath(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}
