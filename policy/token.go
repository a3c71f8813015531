package policy

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenTTL is the lifetime of a redirect token when NewSigner is
// given a ttl of 0.
const DefaultTokenTTL = 5 * time.Minute

// algEdDSA is the only JWS algorithm the package signs with or accepts.
const algEdDSA = "EdDSA"

// Claims are the claims of a redirect token.
type Claims struct {
	Issuer                      string    // iss: the origin
	Subject                     string    // sub: user name
	Audience                    string    // aud: cache name
	Repo                        string    // repo
	Digest                      string    // digest, "sha256:<hex>"
	IssuedAt, NotBefore, Expiry time.Time // iat, nbf, exp
	ID                          string    // jti (random, 128-bit, base64url)
}

// wireClaims is the JSON form of Claims inside a token.
type wireClaims struct {
	jwt.RegisteredClaims
	Repo   string `json:"repo,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Signer mints redirect tokens with one private key. Its fields must not be
// changed once it is in use; Sign is then safe for concurrent use.
type Signer struct {
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of token IDs. Nil means crypto/rand.Reader.
	Rand io.Reader

	key    *PrivateKey
	issuer string
	ttl    time.Duration
}

// NewSigner returns a Signer that signs with key (normally the newest key;
// its Kid, or its thumbprint when Kid is empty, goes into the JWT header
// "kid"), names issuer as "iss", and makes tokens valid for ttl
// (DefaultTokenTTL when ttl is 0).
func NewSigner(key *PrivateKey, issuer string, ttl time.Duration) *Signer {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	return &Signer{key: key, issuer: issuer, ttl: ttl}
}

// Sign returns a token that lets subject fetch the blob digest of repo from
// the cache named audience, together with the claims it carries. Repo and
// digest must not be empty.
func (s *Signer) Sign(subject, audience, repo, digest string) (token string, claims Claims, err error) {
	if s.key == nil || len(s.key.Key) != privateKeySize {
		return "", Claims{}, errors.New("policy: signer has no valid private key")
	}
	if s.ttl < 0 {
		return "", Claims{}, fmt.Errorf("policy: signer ttl %v is negative", s.ttl)
	}
	if repo == "" {
		return "", Claims{}, fmt.Errorf("%w: repo is empty", ErrMissingClaim)
	}
	if digest == "" {
		return "", Claims{}, fmt.Errorf("%w: digest is empty", ErrMissingClaim)
	}
	id, err := s.newID()
	if err != nil {
		return "", Claims{}, err
	}
	// JWT times have second precision; truncate first so that the returned
	// claims equal what a verifier will decode.
	now := s.now().UTC().Truncate(time.Second)
	claims = Claims{
		Issuer:    s.issuer,
		Subject:   subject,
		Audience:  audience,
		Repo:      repo,
		Digest:    digest,
		IssuedAt:  now,
		NotBefore: now,
		Expiry:    now.Add(s.ttl),
		ID:        id,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, toWire(claims))
	kid := s.key.Kid
	if kid == "" {
		kid = KeyID(s.key.Public().Key)
	}
	t.Header["kid"] = kid
	token, err = t.SignedString(s.key.Key)
	if err != nil {
		return "", Claims{}, fmt.Errorf("policy: sign token: %w", err)
	}
	return token, claims, nil
}

func (s *Signer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// newID returns 128 random bits in base64url without padding.
func (s *Signer) newID() (string, error) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("policy: read token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func toWire(c Claims) wireClaims {
	w := wireClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   c.Subject,
			ExpiresAt: jwt.NewNumericDate(c.Expiry),
			NotBefore: jwt.NewNumericDate(c.NotBefore),
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ID:        c.ID,
		},
		Repo:   c.Repo,
		Digest: c.Digest,
	}
	if c.Audience != "" {
		w.Audience = jwt.ClaimStrings{c.Audience}
	}
	return w
}

func fromWire(w *wireClaims) *Claims {
	c := &Claims{
		Issuer:  w.Issuer,
		Subject: w.Subject,
		Repo:    w.Repo,
		Digest:  w.Digest,
		ID:      w.ID,
	}
	if len(w.Audience) > 0 {
		c.Audience = w.Audience[0]
	}
	c.IssuedAt = numericTime(w.IssuedAt)
	c.NotBefore = numericTime(w.NotBefore)
	c.Expiry = numericTime(w.ExpiresAt)
	return c
}

func numericTime(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.UTC()
}
