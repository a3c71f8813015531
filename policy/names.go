package policy

// NameSyntax describes the names ValidName accepts, for error messages.
const NameSyntax = "lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit"

// ValidName reports whether s is a valid name for a cache (the audience
// of the tokens it accepts, registered at the origin under that name) or
// for a mirror upstream: 1 to 63 of a-z, 0-9, '.', '_', '-', starting
// with a letter or digit. The origin's API and the cache's configuration
// both check names with it.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
