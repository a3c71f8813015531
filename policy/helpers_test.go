package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuer   = "https://dtr.example.org"
	testAudience = "cache-asia"
	testRepo     = "website/ui"
	testDigest   = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// clock is a settable test clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

// testKey derives a key from a one-byte seed, so tests are repeatable.
func testKey(t testing.TB, seed byte) *PrivateKey {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return &PrivateKey{Kid: KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
}

func testSigner(key *PrivateKey, now time.Time) *Signer {
	s := NewSigner(key, testIssuer, 0)
	s.Now = fixedNow(now)
	s.Rand = bytes.NewReader(bytes.Repeat([]byte{7}, 1<<10))
	return s
}

func testVerifier(keys KeySet, now time.Time) *Verifier {
	return &Verifier{Keys: keys, Issuer: testIssuer, Audience: testAudience, Now: fixedNow(now)}
}

// b64 is base64url without padding, as in a compact JWS.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handToken builds a compact JWS by hand from header and claims, signing
// "<header>.<claims>" with sign (nil: empty signature).
func handToken(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	input := b64(mustJSON(t, header)) + "." + b64(mustJSON(t, claims))
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

func ed25519Sign(key ed25519.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(key, in) }
}

func hs256Sign(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// goodClaims are the claims of a valid token at t0, as a JSON object.
func goodClaims() map[string]any {
	return map[string]any{
		"iss":    testIssuer,
		"sub":    "alice",
		"aud":    testAudience,
		"repo":   testRepo,
		"digest": testDigest,
		"iat":    t0.Unix(),
		"nbf":    t0.Unix(),
		"exp":    t0.Add(5 * time.Minute).Unix(),
		"jti":    "AAAAAAAAAAAAAAAAAAAAAA",
	}
}

// checkErr fails unless err wraps want (nil want: no error) and, when
// contains is set, mentions it.
func checkErr(t testing.TB, err, want error, contains string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want one wrapping %v", err, want)
	}
	if contains != "" && !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not mention %q", err, contains)
	}
}

// ed25519PublicKey shortens KeySet fakes.
type ed25519PublicKey = ed25519.PublicKey

// jwtEncoding is the base64 of compact JWS segments.
var jwtEncoding = base64.RawURLEncoding
