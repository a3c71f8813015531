package policy

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// jwk is one member of a JWK Set (RFC 7517) as this package writes it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// jwkIn is one member of a JWK Set as this package reads it: D is only
// there to notice private keys published by mistake.
type jwkIn struct {
	jwk
	D string `json:"d"`
}

// MarshalJWKS encodes keys as a JWK Set:
//
//	{"keys":[{"kty":"OKP","crv":"Ed25519","x":"<b64url>","kid":"...","use":"sig","alg":"EdDSA"}]}
//
// A key with an empty Kid gets its thumbprint.
func MarshalJWKS(keys []PublicKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for i, k := range keys {
		if len(k.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("policy: marshal JWKS: key %d has %d bytes, want %d", i, len(k.Key), ed25519.PublicKeySize)
		}
		kid := k.Kid
		if kid == "" {
			kid = KeyID(k.Key)
		}
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(k.Key),
			Kid: kid,
			Use: "sig",
			Alg: algEdDSA,
		})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("policy: marshal JWKS: %w", err)
	}
	return b, nil
}

// ParseJWKS decodes a JWK Set and returns its Ed25519 signing keys. Keys of
// another kty or crv, or marked for another use or algorithm, are skipped.
// Malformed JSON, a missing "keys" member, an x that is not 32 bytes of
// base64url, a private key ("d"), or one kid naming two different keys are
// errors. A key without kid gets its thumbprint.
func ParseJWKS(b []byte) ([]PublicKey, error) {
	var set struct {
		Keys *[]jwkIn `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("policy: parse JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`policy: parse JWKS: no "keys" member`)
	}
	var keys []PublicKey
	index := make(map[string]ed25519.PublicKey)
	for i, j := range *set.Keys {
		if j.Kty != "OKP" || j.Crv != "Ed25519" {
			continue
		}
		if j.D != "" {
			return nil, fmt.Errorf("policy: parse JWKS: key %d contains a private key", i)
		}
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		// "Ed25519" is the fully specified name of RFC 9864.
		if j.Alg != "" && j.Alg != algEdDSA && j.Alg != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.Strict().DecodeString(j.X)
		if err != nil || len(j.X) != 43 || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("policy: parse JWKS: key %d: x is not %d bytes of base64url", i, ed25519.PublicKeySize)
		}
		pub := ed25519.PublicKey(x)
		kid := j.Kid
		if kid == "" {
			kid = KeyID(pub)
		}
		if prev, ok := index[kid]; ok {
			if !prev.Equal(pub) {
				return nil, fmt.Errorf("policy: parse JWKS: kid %q names two different keys", kid)
			}
			continue
		}
		index[kid] = pub
		keys = append(keys, PublicKey{Kid: kid, Key: pub})
	}
	return keys, nil
}
