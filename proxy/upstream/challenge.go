package upstream

import (
	"strings"
)

// Challenge is one parsed WWW-Authenticate challenge.
type Challenge struct {
	Scheme string            // lower case: "basic", "bearer"
	Params map[string]string // keys lower case
}

// ParseChallenges parses a WWW-Authenticate header value into its
// challenges, e.g. `Bearer realm="https://auth/token",service="reg",
// scope="repository:a:pull"`. Malformed parts are skipped.
func ParseChallenges(h string) []Challenge {
	var out []Challenge
	s := h
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out
		}
		i := strings.IndexAny(s, " \t,")
		if i < 0 {
			return append(out, Challenge{Scheme: strings.ToLower(s), Params: map[string]string{}})
		}
		c := Challenge{Scheme: strings.ToLower(s[:i]), Params: map[string]string{}}
		s = s[i:]
		// auth-params: key=value or key="quoted", comma separated, until
		// the next token that is not followed by '='.
		for {
			s = strings.TrimLeft(s, " \t,")
			eq := strings.IndexByte(s, '=')
			sp := strings.IndexAny(s, " \t,")
			if eq <= 0 || (sp >= 0 && sp < eq) {
				break // next challenge (or end)
			}
			key := strings.ToLower(strings.TrimSpace(s[:eq]))
			s = s[eq+1:]
			var val string
			if strings.HasPrefix(s, `"`) {
				var b strings.Builder
				j := 1
				for ; j < len(s); j++ {
					if s[j] == '\\' && j+1 < len(s) {
						j++
						b.WriteByte(s[j])
						continue
					}
					if s[j] == '"' {
						break
					}
					b.WriteByte(s[j])
				}
				val = b.String()
				if j < len(s) {
					j++
				}
				s = s[j:]
			} else {
				k := strings.IndexAny(s, " \t,")
				if k < 0 {
					k = len(s)
				}
				val, s = s[:k], s[k:]
			}
			c.Params[key] = val
		}
		out = append(out, c)
	}
}
