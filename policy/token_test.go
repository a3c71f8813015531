package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	key := testKey(t, 1)
	token, claims, err := testSigner(key, t0).Sign("alice", testAudience, testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	want := Claims{
		Issuer:    testIssuer,
		Subject:   "alice",
		Audience:  testAudience,
		Repo:      testRepo,
		Digest:    testDigest,
		IssuedAt:  t0,
		NotBefore: t0,
		Expiry:    t0.Add(DefaultTokenTTL),
		ID:        "BwcHBwcHBwcHBwcHBwcHBw", // 16 bytes of 7 from the test Rand
	}
	if claims != want {
		t.Fatalf("Sign claims = %+v, want %+v", claims, want)
	}
	got, err := testVerifier(NewStaticKeys(key.Public()), t0.Add(time.Minute)).Verify(context.Background(), token, testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	if *got != want {
		t.Fatalf("Verify claims = %+v, want %+v", *got, want)
	}

	// The header names the algorithm and the key.
	header := decodeSegment(t, token, 0)
	if header["alg"] != "EdDSA" || header["kid"] != key.Kid {
		t.Fatalf("header = %v, want alg EdDSA and kid %s", header, key.Kid)
	}
}

func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	b, err := jwtEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSigner(t *testing.T) {
	key := testKey(t, 1)
	tests := []struct {
		name    string
		signer  func() *Signer
		repo    string
		digest  string
		wantErr error
		wantTTL time.Duration
	}{
		{name: "default ttl", signer: func() *Signer { return testSigner(key, t0) }, repo: testRepo, digest: testDigest, wantTTL: 5 * time.Minute},
		{name: "custom ttl", signer: func() *Signer {
			s := NewSigner(key, testIssuer, 90*time.Second)
			s.Now = fixedNow(t0)
			return s
		}, repo: testRepo, digest: testDigest, wantTTL: 90 * time.Second},
		{name: "sub-second now is truncated", signer: func() *Signer { return testSigner(key, t0.Add(900*time.Millisecond)) }, repo: testRepo, digest: testDigest, wantTTL: 5 * time.Minute},
		{name: "empty repo", signer: func() *Signer { return testSigner(key, t0) }, digest: testDigest, wantErr: ErrMissingClaim},
		{name: "empty digest", signer: func() *Signer { return testSigner(key, t0) }, repo: testRepo, wantErr: ErrMissingClaim},
		{name: "nil key", signer: func() *Signer { return NewSigner(nil, testIssuer, 0) }, repo: testRepo, digest: testDigest, wantErr: errAny},
		{name: "random source fails", signer: func() *Signer {
			s := testSigner(key, t0)
			s.Rand = strings.NewReader("short")
			return s
		}, repo: testRepo, digest: testDigest, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, err := tt.signer().Sign("alice", testAudience, tt.repo, tt.digest)
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.IssuedAt != t0 || c.NotBefore != t0 || c.Expiry.Sub(c.IssuedAt) != tt.wantTTL {
				t.Fatalf("claims times iat=%v nbf=%v exp=%v, want iat=nbf=%v and ttl %v", c.IssuedAt, c.NotBefore, c.Expiry, t0, tt.wantTTL)
			}
		})
	}
}

// errAny stands for "any error" in tables.
var errAny = errors.New("any error")

func TestSignerIDsAreRandom(t *testing.T) {
	s := NewSigner(testKey(t, 1), testIssuer, 0)
	seen := make(map[string]bool)
	for range 100 {
		_, c, err := s.Sign("alice", testAudience, testRepo, testDigest)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.ID) != 22 || seen[c.ID] {
			t.Fatalf("jti %q is not a fresh 128-bit base64url value", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestVerify(t *testing.T) {
	key := testKey(t, 1)
	other := testKey(t, 2)
	keys := NewStaticKeys(key.Public())
	header := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": key.Kid}
	signed, _, err := testSigner(key, t0).Sign("alice", testAudience, testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	with := func(mod func(c map[string]any)) map[string]any {
		c := goodClaims()
		mod(c)
		return c
	}
	hdr := func(mod func(h map[string]any)) map[string]any {
		h := map[string]any{}
		for k, v := range header {
			h[k] = v
		}
		mod(h)
		return h
	}
	good := ed25519Sign(key.Key)
	exp := t0.Add(5 * time.Minute)

	tests := []struct {
		name     string
		token    string
		now      time.Time
		skew     time.Duration
		repo     string
		digest   string
		want     error
		contains string
	}{
		{name: "valid", token: signed, now: t0},
		{name: "valid hand-made", token: handToken(t, header, goodClaims(), good), now: t0},
		{name: "aud as array", token: handToken(t, header, with(func(c map[string]any) { c["aud"] = []string{testAudience} }), good), now: t0},
		{name: "expired within skew", token: signed, now: exp.Add(29 * time.Second)},
		{name: "expired beyond skew", token: signed, now: exp.Add(31 * time.Second), want: ErrExpired},
		{name: "expired beyond custom skew", token: signed, now: exp.Add(11 * time.Second), skew: 10 * time.Second, want: ErrExpired},
		{name: "skew above 30s is clamped", token: signed, now: exp.Add(31 * time.Second), skew: time.Hour, want: ErrExpired},
		{name: "negative skew allows none", token: signed, now: exp, skew: -1, want: ErrExpired},
		{name: "nbf in the future", token: handToken(t, header, with(func(c map[string]any) { c["nbf"] = t0.Add(time.Minute).Unix() }), good), now: t0, want: ErrNotYetValid},
		{name: "nbf within skew", token: handToken(t, header, with(func(c map[string]any) { c["nbf"] = t0.Add(20 * time.Second).Unix() }), good), now: t0},
		{name: "iat in the future", token: handToken(t, header, with(func(c map[string]any) { c["iat"] = t0.Add(time.Minute).Unix() }), good), now: t0, want: ErrNotYetValid},
		{name: "missing exp", token: handToken(t, header, with(func(c map[string]any) { delete(c, "exp") }), good), now: t0, want: ErrMissingClaim, contains: "exp"},
		{name: "missing repo", token: handToken(t, header, with(func(c map[string]any) { delete(c, "repo") }), good), now: t0, want: ErrMissingClaim, contains: "repo"},
		{name: "missing digest", token: handToken(t, header, with(func(c map[string]any) { delete(c, "digest") }), good), now: t0, want: ErrMissingClaim, contains: "digest"},
		{name: "exp of wrong type", token: handToken(t, header, with(func(c map[string]any) { c["exp"] = "tomorrow" }), good), now: t0, want: ErrMalformedToken},
		{name: "forged signature, same kid", token: handToken(t, header, goodClaims(), ed25519Sign(other.Key)), now: t0, want: ErrBadSignature},
		{name: "tampered claims", token: tamper(t, signed), now: t0, want: ErrBadSignature},
		{name: "alg none", token: handToken(t, hdr(func(h map[string]any) { h["alg"] = "none" }), goodClaims(), nil), now: t0, want: ErrBadSignature},
		{name: "alg None", token: handToken(t, hdr(func(h map[string]any) { h["alg"] = "None" }), goodClaims(), nil), now: t0, want: ErrBadSignature},
		{name: "HS256 keyed with the public key", token: handToken(t, hdr(func(h map[string]any) { h["alg"] = "HS256" }), goodClaims(), hs256Sign(key.Public().Key)), now: t0, want: ErrBadSignature},
		{name: "HS256 keyed with the base64 public key", token: handToken(t, hdr(func(h map[string]any) { h["alg"] = "HS256" }), goodClaims(), hs256Sign([]byte(b64(key.Public().Key)))), now: t0, want: ErrBadSignature},
		{name: "RS256", token: handToken(t, hdr(func(h map[string]any) { h["alg"] = "RS256" }), goodClaims(), good), now: t0, want: ErrBadSignature},
		{name: "alg missing", token: handToken(t, hdr(func(h map[string]any) { delete(h, "alg") }), goodClaims(), good), now: t0, want: ErrBadSignature},
		{name: "unknown kid", token: handToken(t, hdr(func(h map[string]any) { h["kid"] = other.Kid }), goodClaims(), ed25519Sign(other.Key)), now: t0, want: ErrUnknownKey},
		{name: "kid missing", token: handToken(t, hdr(func(h map[string]any) { delete(h, "kid") }), goodClaims(), good), now: t0, want: ErrMalformedToken, contains: "kid"},
		{name: "kid not a string", token: handToken(t, hdr(func(h map[string]any) { h["kid"] = 7 }), goodClaims(), good), now: t0, want: ErrMalformedToken},
		{name: "crit header", token: handToken(t, hdr(func(h map[string]any) { h["crit"] = []string{"exp"} }), goodClaims(), good), now: t0, want: ErrMalformedToken},
		{name: "wrong repo", token: signed, now: t0, repo: "website/api", want: ErrClaimMismatch, contains: "repo"},
		{name: "repo differs in case", token: signed, now: t0, repo: "Website/ui", want: ErrClaimMismatch, contains: "repo"},
		{name: "wrong digest", token: signed, now: t0, digest: "sha256:" + strings.Repeat("f", 64), want: ErrClaimMismatch, contains: "digest"},
		{name: "wrong aud", token: handToken(t, header, with(func(c map[string]any) { c["aud"] = "cache-eu" }), good), now: t0, want: ErrClaimMismatch, contains: "aud"},
		{name: "no aud", token: handToken(t, header, with(func(c map[string]any) { delete(c, "aud") }), good), now: t0, want: ErrClaimMismatch, contains: "aud"},
		{name: "two audiences", token: handToken(t, header, with(func(c map[string]any) { c["aud"] = []string{testAudience, "cache-eu"} }), good), now: t0, want: ErrClaimMismatch, contains: "aud"},
		{name: "wrong iss", token: handToken(t, header, with(func(c map[string]any) { c["iss"] = "https://evil.example" }), good), now: t0, want: ErrClaimMismatch, contains: "iss"},
		{name: "empty", token: "", now: t0, want: ErrMalformedToken},
		{name: "garbage", token: "not a token", now: t0, want: ErrMalformedToken},
		{name: "one segment", token: "abc", now: t0, want: ErrMalformedToken},
		{name: "two segments", token: "abc.def", now: t0, want: ErrMalformedToken},
		{name: "four segments", token: signed + ".x", now: t0, want: ErrMalformedToken},
		{name: "header not base64", token: "!!!" + signed[strings.Index(signed, "."):], now: t0, want: ErrMalformedToken},
		{name: "header not JSON", token: b64([]byte("hello")) + signed[strings.Index(signed, "."):], now: t0, want: ErrMalformedToken},
		{name: "claims not JSON", token: strings.Split(signed, ".")[0] + "." + b64([]byte("[1,2]")) + ".AAAA", now: t0, want: ErrMalformedToken},
		{name: "padded segments", token: padded(signed), now: t0, want: ErrMalformedToken},
		{name: "newline inside", token: signed[:len(signed)-4] + "\n" + signed[len(signed)-4:], now: t0, want: ErrMalformedToken},
		{name: "too long", token: signed + strings.Repeat("A", maxTokenLen), now: t0, want: ErrMalformedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testVerifier(keys, tt.now)
			v.Skew = tt.skew
			repo, digest := testRepo, testDigest
			if tt.repo != "" {
				repo = tt.repo
			}
			if tt.digest != "" {
				digest = tt.digest
			}
			c, err := v.Verify(context.Background(), tt.token, repo, digest)
			checkErr(t, err, tt.want, tt.contains)
			if tt.want == nil && (c.Repo != testRepo || c.Digest != testDigest || c.Subject != "alice") {
				t.Fatalf("claims = %+v", c)
			}
			if tt.want != nil && c != nil {
				t.Fatalf("claims returned with an error: %+v", c)
			}
		})
	}
}

// tamper changes the sub claim of token without re-signing it.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	claims := decodeSegment(t, token, 1)
	claims["sub"] = "mallory"
	parts[1] = b64(mustJSON(t, claims))
	return strings.Join(parts, ".")
}

// padded re-encodes token with base64 padding, which compact JWS forbids.
func padded(token string) string {
	parts := strings.Split(token, ".")
	for i, p := range parts {
		if n := len(p) % 4; n != 0 {
			parts[i] = p + strings.Repeat("=", 4-n)
		}
	}
	return strings.Join(parts, ".")
}

func TestVerifyWithoutIssuerAndAudience(t *testing.T) {
	key := testKey(t, 1)
	token, _, err := testSigner(key, t0).Sign("alice", "", testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Keys: NewStaticKeys(key.Public()), Now: fixedNow(t0)}
	if _, err := v.Verify(context.Background(), token, testRepo, testDigest); err != nil {
		t.Fatal(err)
	}
	// The same token fails a verifier that wants an audience.
	v.Audience = testAudience
	_, err = v.Verify(context.Background(), token, testRepo, testDigest)
	checkErr(t, err, ErrClaimMismatch, "aud")
}

func TestVerifyNoKeySet(t *testing.T) {
	_, err := (&Verifier{}).Verify(context.Background(), "a.b.c", testRepo, testDigest)
	checkErr(t, err, ErrUnknownKey, "")
}

// failingKeys is a KeySet whose lookups fail with an error of its own.
type failingKeys struct{}

func (failingKeys) PublicKey(context.Context, string) (ed25519PublicKey, error) {
	return nil, errors.New("key store offline")
}

func TestVerifyKeySetErrorIsUnknownKey(t *testing.T) {
	token, _, err := testSigner(testKey(t, 1), t0).Sign("alice", testAudience, testRepo, testDigest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = testVerifier(failingKeys{}, t0).Verify(context.Background(), token, testRepo, testDigest)
	checkErr(t, err, ErrUnknownKey, "key store offline")
}
