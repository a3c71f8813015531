package upstream

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PushScope returns the token scope for pushing to repo (pushing needs
// pull too: a client checks what it has before it uploads).
func PushScope(repo string) string { return "repository:" + repo + ":pull,push" }

// MountScope returns the token scope for mounting a blob from repository
// from into repo: push to repo and pull from from, in one token.
func MountScope(repo, from string) string {
	return PushScope(repo) + " " + Scope(from)
}

// canonicalScope orders the space-separated scopes in s and the actions in
// each, so the same access asked for in another order (a registry's
// challenge lists them as it likes) finds the same cached token.
func canonicalScope(s string) string {
	scopes := strings.Fields(s)
	for i, sc := range scopes {
		if j := strings.LastIndexByte(sc, ':'); j >= 0 {
			actions := strings.Split(sc[j+1:], ",")
			slices.Sort(actions)
			scopes[i] = sc[:j+1] + strings.Join(slices.Compact(actions), ",")
		}
	}
	slices.Sort(scopes)
	return strings.Join(slices.Compact(scopes), " ")
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date
// (relative to now). Anything else, or a time in the past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
