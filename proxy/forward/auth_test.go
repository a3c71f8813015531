package forward

import (
	"net/http"
	"testing"
	"time"
)

func TestAuthCacheExpires(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newAuthCache(60*time.Second, func() time.Time { return now })
	req := func(auth string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "https://registry.test/v2/a/blobs/sha256:x", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	k := authKey{cred: credential(req("Basic YWxpY2U6cHc=")), host: "registry.test:443", repo: "a", digest: "sha256:1"}
	if isAllowed(c, k) {
		t.Fatal("allowed before any answer")
	}
	c.remember(k)
	now = now.Add(59 * time.Second)
	if !isAllowed(c, k) {
		t.Fatal("not remembered within the TTL")
	}
	for name, other := range map[string]authKey{
		"other credential": {cred: credential(req("Basic Ym9iOnB3")), host: k.host, repo: k.repo, digest: k.digest},
		"no credential":    {cred: credential(req("")), host: k.host, repo: k.repo, digest: k.digest},
		"other repository": {cred: k.cred, host: k.host, repo: "b", digest: k.digest},
		"other digest":     {cred: k.cred, host: k.host, repo: k.repo, digest: "sha256:2"},
		"other registry":   {cred: k.cred, host: "other.test:443", repo: k.repo, digest: k.digest},
	} {
		if isAllowed(c, other) {
			t.Errorf("%s: allowed by another key's answer", name)
		}
	}
	now = now.Add(time.Second) // exactly the TTL
	if isAllowed(c, k) {
		t.Fatal("still allowed after the TTL")
	}
	if c.len() != 0 {
		t.Fatalf("%d expired entries kept", c.len())
	}

	// A manifest's vouching is remembered the same way, and told apart.
	c.vouch(k)
	if how, ok := c.allowed(k); !ok || how != "vouched" {
		t.Fatalf("after vouch: %q %v, want vouched", how, ok)
	}
	c.remember(k)
	if how, ok := c.allowed(k); !ok || how != "cached" {
		t.Fatalf("after a HEAD's yes: %q %v, want cached", how, ok)
	}
	now = now.Add(60 * time.Second)

	c.remember(k)
	c.remember(authKey{cred: k.cred, host: k.host, repo: "b", digest: k.digest})
	c.forget(k.host, "a")
	if isAllowed(c, k) || c.len() != 1 {
		t.Fatalf("forget(a): allowed %v, %d entries; want only b's answer left", isAllowed(c, k), c.len())
	}

	off := newAuthCache(-1, func() time.Time { return now })
	off.remember(k)
	if isAllowed(off, k) {
		t.Fatal("a negative TTL remembers nothing")
	}
}

func TestCredentialCoversQueryAndCookie(t *testing.T) {
	a, _ := http.NewRequest(http.MethodGet, "https://r.test/v2/a/blobs/sha256:x?token=1", nil)
	b, _ := http.NewRequest(http.MethodGet, "https://r.test/v2/a/blobs/sha256:x?token=2", nil)
	c, _ := http.NewRequest(http.MethodGet, "https://r.test/v2/a/blobs/sha256:x?token=1", nil)
	c.Header.Set("Cookie", "session=1")
	if credential(a) == credential(b) || credential(a) == credential(c) {
		t.Fatal("credentials differing in query or cookie hash the same")
	}
}

func isAllowed(c *authCache, k authKey) bool {
	_, ok := c.allowed(k)
	return ok
}
