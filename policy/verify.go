package policy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxSkew is the largest clock skew a Verifier allows, and the skew it
// allows when Verifier.Skew is 0.
const MaxSkew = 30 * time.Second

// maxTokenLen bounds the tokens Verify looks at. Real tokens are a few
// hundred bytes.
const maxTokenLen = 8 << 10

// KeySet finds the public key that verifies tokens signed under a key ID.
type KeySet interface {
	// PublicKey returns the key for kid, or an error wrapping ErrUnknownKey.
	PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// Verifier checks redirect tokens. Its fields must not be changed once it
// is in use; Verify is then safe for concurrent use.
type Verifier struct {
	// Keys resolves the token's kid to a public key. Required.
	Keys KeySet
	// Issuer is the required iss when non-empty.
	Issuer string
	// Audience is the required aud (the cache's own name) when non-empty.
	Audience string
	// Skew is the allowed clock skew. 0 means MaxSkew; larger values are
	// clamped to MaxSkew; negative values allow no skew.
	Skew time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Verify checks token and returns its claims. The header and claims must
// be in the one JSON form the signer writes (members unique, names exact,
// dates as numbers: tokenjson.go). The signature must be EdDSA
// by the key the header's kid names (every other algorithm, "none" and HMAC
// included, is refused); exp is required; exp, nbf and iat are checked
// against the clock with the allowed skew; iss and aud must equal the
// verifier's Issuer and Audience when those are set; and the repo and digest
// claims must equal repo and digest exactly.
//
// Errors wrap one of ErrMalformedToken, ErrBadSignature, ErrUnknownKey,
// ErrExpired, ErrNotYetValid, ErrMissingClaim or ErrClaimMismatch.
func (v *Verifier) Verify(ctx context.Context, token, repo, digest string) (*Claims, error) {
	if v.Keys == nil {
		return nil, fmt.Errorf("%w: verifier has no key set", ErrUnknownKey)
	}
	if err := checkTokenSyntax(token); err != nil {
		return nil, err
	}
	if err := checkTokenJSON(token); err != nil {
		return nil, err
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{algEdDSA}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.skew()),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	)
	var wc wireClaims
	var keyErr error // lookupKey's error, reported without the parser's wrapping
	keyFunc := func(t *jwt.Token) (any, error) {
		k, err := v.lookupKey(ctx, t)
		keyErr = err
		return k, err
	}
	if _, err := parser.ParseWithClaims(token, &wc, keyFunc); err != nil {
		if keyErr != nil {
			return nil, keyErr
		}
		return nil, classify(err)
	}
	if err := v.checkClaims(&wc, repo, digest); err != nil {
		return nil, err
	}
	return fromWire(&wc), nil
}

func (v *Verifier) skew() time.Duration {
	switch {
	case v.Skew == 0 || v.Skew > MaxSkew:
		return MaxSkew
	case v.Skew < 0:
		return 0
	}
	return v.Skew
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// lookupKey finds the key for the token's kid. The parser calls it after
// it checked the algorithm and before it checks the signature.
func (v *Verifier) lookupKey(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, fmt.Errorf("%w: unsupported crit header", ErrMalformedToken)
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrMalformedToken)
	}
	key, err := v.Keys.PublicKey(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: kid %q: %w", ErrUnknownKey, kid, err)
	}
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: kid %q: key has %d bytes", ErrUnknownKey, kid, len(key))
	}
	return key, nil
}

// checkClaims checks what the jwt parser does not: the claims that bind the
// token to one cache, one issuer and one blob.
func (v *Verifier) checkClaims(wc *wireClaims, repo, digest string) error {
	if wc.Repo == "" {
		return fmt.Errorf("%w: repo", ErrMissingClaim)
	}
	if wc.Digest == "" {
		return fmt.Errorf("%w: digest", ErrMissingClaim)
	}
	if len(wc.Audience) > 1 {
		return fmt.Errorf("%w: aud names %d audiences, want one", ErrClaimMismatch, len(wc.Audience))
	}
	if v.Issuer != "" && wc.Issuer != v.Issuer {
		return fmt.Errorf("%w: iss is %q, want %q", ErrClaimMismatch, wc.Issuer, v.Issuer)
	}
	if v.Audience != "" && (len(wc.Audience) != 1 || wc.Audience[0] != v.Audience) {
		return fmt.Errorf("%w: aud is %q, want %q", ErrClaimMismatch, []string(wc.Audience), v.Audience)
	}
	if wc.Repo != repo {
		return fmt.Errorf("%w: repo is %q, want %q", ErrClaimMismatch, wc.Repo, repo)
	}
	if wc.Digest != digest {
		return fmt.Errorf("%w: digest is %q, want %q", ErrClaimMismatch, wc.Digest, digest)
	}
	return nil
}

// checkTokenSyntax refuses what can never be a compact JWS from our signer:
// oversized input and characters outside the base64url alphabet. The base64
// decoder skips CR and LF, so without this a token would have several
// spellings that all verify.
func checkTokenSyntax(token string) error {
	if token == "" {
		return fmt.Errorf("%w: empty", ErrMalformedToken)
	}
	if len(token) > maxTokenLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedToken, len(token), maxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: invalid character at offset %d", ErrMalformedToken, i)
		}
	}
	return nil
}

// classify maps an error from the jwt parser onto the package's sentinels.
// The jwt library's own errors are formatted with %v so that callers depend
// only on this package's errors.
func classify(err error) error {
	var sentinel error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		sentinel = ErrMalformedToken
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		sentinel = ErrBadSignature
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		sentinel = ErrMissingClaim
	case errors.Is(err, jwt.ErrTokenExpired):
		sentinel = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		sentinel = ErrNotYetValid
	default:
		sentinel = ErrMalformedToken
	}
	return fmt.Errorf("%w: %v", sentinel, err)
}
