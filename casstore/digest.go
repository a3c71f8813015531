package casstore

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strings"
)

// Digest is a validated content digest in OCI form ("sha256:<64 hex>" or
// "sha512:<128 hex>"). The zero value is invalid. Digest is comparable and
// can be used as a map key.
type Digest struct {
	alg string
	hex string
}

// DigestError reports why a string is not a valid digest. It wraps
// ErrInvalidDigest.
type DigestError struct {
	Input  string
	Reason string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("casstore: invalid digest %q: %s", truncate(e.Input, 150), e.Reason)
}

// Unwrap returns ErrInvalidDigest.
func (e *DigestError) Unwrap() error { return ErrInvalidDigest }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// hexLen gives the accepted algorithms and the length of their hex part.
func hexLen(alg string) int {
	switch alg {
	case "sha256":
		return 64
	case "sha512":
		return 128
	}
	return 0
}

// ParseDigest parses an OCI digest. Only sha256 and sha512 are accepted, with
// lower-case hex of the exact length; anything else (an unknown algorithm,
// upper case, separators, "/", "..", NUL) is rejected with a *DigestError
// before any file is touched.
func ParseDigest(s string) (Digest, error) {
	alg, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, &DigestError{Input: s, Reason: "missing algorithm separator ':'"}
	}
	want := hexLen(alg)
	if want == 0 {
		return Digest{}, &DigestError{Input: s, Reason: "unsupported algorithm (want sha256 or sha512)"}
	}
	if len(hx) != want {
		return Digest{}, &DigestError{Input: s, Reason: fmt.Sprintf("%s hex must be %d characters, got %d", alg, want, len(hx))}
	}
	for i := 0; i < len(hx); i++ {
		c := hx[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return Digest{}, &DigestError{Input: s, Reason: fmt.Sprintf("invalid character %q at offset %d (want lower-case hex)", c, len(alg)+1+i)}
		}
	}
	return Digest{alg: alg, hex: hx}, nil
}

// MustParseDigest is ParseDigest for constants in tests and examples; it
// panics on an invalid digest.
func MustParseDigest(s string) Digest {
	d, err := ParseDigest(s)
	if err != nil {
		panic(err)
	}
	return d
}

// FromBytes returns the sha256 digest of b.
func FromBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest{alg: "sha256", hex: fmt.Sprintf("%x", sum[:])}
}

// String returns the digest in "alg:hex" form ("" for the zero value).
func (d Digest) String() string {
	if d.alg == "" {
		return ""
	}
	return d.alg + ":" + d.hex
}

// Algorithm returns "sha256" or "sha512".
func (d Digest) Algorithm() string { return d.alg }

// Hex returns the lower-case hex part.
func (d Digest) Hex() string { return d.hex }

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return d.alg == "" }

// NewHash returns a fresh hash of the digest's algorithm.
func (d Digest) NewHash() hash.Hash {
	if d.alg == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// matches reports whether sum (a finished hash) equals the digest.
func (d Digest) matches(sum []byte) bool {
	return fmt.Sprintf("%x", sum) == d.hex
}
