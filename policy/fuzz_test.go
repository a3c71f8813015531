package policy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, must
// fail with one of the package's errors, and must accept only tokens that
// the test key really signed.
func FuzzVerify(f *testing.F) {
	key := testKey(f, 1)
	other := testKey(f, 2)
	signed := make(map[string]bool)
	sign := func(sub, repo, digest string) string {
		tok, _, err := testSigner(key, t0).Sign(sub, testAudience, repo, digest)
		if err != nil {
			f.Fatal(err)
		}
		signed[tok] = true
		return tok
	}
	header := map[string]any{"alg": "EdDSA", "kid": key.Kid}
	good := handToken(f, header, goodClaims(), ed25519Sign(key.Key))
	signed[good] = true

	seeds := []string{
		sign("alice", testRepo, testDigest),
		sign("bob", testRepo, testDigest),
		sign("alice", "website/api", testDigest),
		good,
		handToken(f, header, goodClaims(), ed25519Sign(other.Key)),
		handToken(f, map[string]any{"alg": "none", "kid": key.Kid}, goodClaims(), nil),
		handToken(f, map[string]any{"alg": "HS256", "kid": key.Kid}, goodClaims(), hs256Sign(key.Public().Key)),
		"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	v := testVerifier(NewStaticKeys(key.Public()), t0.Add(time.Minute))
	sentinels := []error{ErrMalformedToken, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrUnknownKey, ErrClaimMismatch, ErrMissingClaim}

	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token, testRepo, testDigest)
		if err == nil {
			if !signed[token] {
				t.Fatalf("verified a token the key never signed: %q", token)
			}
			if c == nil || c.Repo != testRepo || c.Digest != testDigest {
				t.Fatalf("verified with claims %+v", c)
			}
			return
		}
		if c != nil {
			t.Fatalf("claims %+v returned with error %v", c, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error wraps none of the package's sentinels: %v", err)
	})
}

// FuzzParseJWKS checks that ParseJWKS never panics, returns only
// well-formed keys, and that what it accepts survives a round trip.
func FuzzParseJWKS(f *testing.F) {
	k := testKey(f, 1).Public()
	doc, err := MarshalJWKS([]PublicKey{k, testKey(f, 2).Public()})
	if err != nil {
		f.Fatal(err)
	}
	x := b64(k.Key)
	for _, s := range []string{
		string(doc),
		`{"keys":[]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"a","use":"sig","alg":"EdDSA"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`,
		`{"keys":null}`, `{}`, `[]`, `null`, ``, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","d":"AA"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err != nil {
			return
		}
		seen := make(map[string]bool)
		for _, k := range keys {
			if len(k.Key) != 32 || k.Kid == "" || seen[k.Kid] {
				t.Fatalf("bad key in result: %+v", k)
			}
			seen[k.Kid] = true
		}
		again, err := MarshalJWKS(keys)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJWKS(again)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(keys) {
			t.Fatalf("round trip: %d keys, want %d", len(back), len(keys))
		}
		for i := range back {
			if back[i].Kid != keys[i].Kid || !back[i].Key.Equal(keys[i].Key) {
				t.Fatalf("round trip changed key %d", i)
			}
		}
	})
}

// FuzzParseHtpasswd checks that ParseHtpasswd never panics and that every
// user line of a file it accepts becomes a user.
func FuzzParseHtpasswd(f *testing.F) {
	h, err := HashPassword("pw", 4)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"alice:" + h,
		"# comment\n\nalice:" + h + "\r\nbob:$2y$" + h[4:] + "\n",
		"alice:" + h + "\nalice:" + h,
		"alice:$apr1$x$y", "alice", ":", "", "\ufeff" + "a:" + h,
		"alice:$2y$31$" + h[7:],
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseHtpasswd(b)
		if err != nil {
			return
		}
		text := strings.TrimPrefix(string(b), "\ufeff")
		n := 0
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			user, _, _ := strings.Cut(line, ":")
			if !u.Has(user) {
				t.Fatalf("user %q missing", user)
			}
			n++
		}
		if len(u.hashes) != n {
			t.Fatalf("%d users, want %d", len(u.hashes), n)
		}
		if bytes.Contains(b, []byte("\x00")) && n > 0 && u.Has("") {
			t.Fatal("empty user accepted")
		}
	})
}

// FuzzPatternMatch compares the pattern matcher with the slow reference
// matcher.
func FuzzPatternMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"website/*", "website/ui"},
		{"a/**/b", "a/x/y/b"},
		{"**", "a/b/c"},
		{"**/*-dev", "team/app-dev"},
		{"w*b*e", "website"},
		{"a/**/b/**/c", "a/1/b/2/b/3/c"},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa"},
		{"exact/name", "exact/name"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, repo string) {
		p, err := compilePattern(pattern)
		if err != nil {
			return
		}
		got := p.match(repo)
		// The reference is exponential in the number of wildcards; keep
		// its inputs small.
		if len(pattern) <= 24 && len(repo) <= 48 {
			if want := naiveMatch(pattern, repo); got != want {
				t.Fatalf("match(%q, %q) = %v, reference says %v", pattern, repo, got, want)
			}
		}
		if !strings.Contains(pattern, "*") && got != (pattern == repo) {
			t.Fatalf("literal pattern %q vs %q: match = %v", pattern, repo, got)
		}
	})
}
