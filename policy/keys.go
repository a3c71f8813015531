package policy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

const (
	privateKeyPEMType = "PRIVATE KEY"
	publicKeyPEMType  = "PUBLIC KEY"
	privateKeySize    = ed25519.PrivateKeySize
)

// PrivateKey is an Ed25519 signing key and its key ID.
type PrivateKey struct {
	// Kid is the key ID: KeyID of the public half.
	Kid string
	// Key is the private key.
	Key ed25519.PrivateKey
}

// PublicKey is an Ed25519 verification key and its key ID.
type PublicKey struct {
	// Kid is the key ID: KeyID of Key, unless a JWKS named it otherwise.
	Kid string
	// Key is the public key.
	Key ed25519.PublicKey
}

// Public returns the public half of k, with the same Kid.
func (k *PrivateKey) Public() PublicKey {
	pub, _ := k.Key.Public().(ed25519.PublicKey)
	return PublicKey{Kid: k.Kid, Key: pub}
}

// GenerateKey makes a new Ed25519 key from rand (nil means
// crypto/rand.Reader). Its Kid is the key's thumbprint.
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(randOrDefault(rand))
	if err != nil {
		return nil, fmt.Errorf("policy: generate key: %w", err)
	}
	return &PrivateKey{Kid: KeyID(pub), Key: priv}, nil
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// KeyID returns the RFC 7638 JWK thumbprint of pub: the SHA-256 of the
// canonical JWK {"crv":"Ed25519","kty":"OKP","x":...}, in base64url without
// padding.
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	// The members are in lexicographic order with no whitespace, as RFC
	// 7638 requires; x needs no JSON escaping.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// MarshalPrivateKeyPEM encodes k as a PKCS #8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	if k == nil || len(k.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("policy: marshal private key: not an Ed25519 private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("policy: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: privateKeyPEMType, Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes k as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(k *PublicKey) ([]byte, error) {
	if k == nil || len(k.Key) != ed25519.PublicKeySize {
		return nil, errors.New("policy: marshal public key: not an Ed25519 public key")
	}
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("policy: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: publicKeyPEMType, Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes the first PEM block of b, which must be a
// PKCS #8 "PRIVATE KEY" holding an Ed25519 key.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("policy: parse private key: no PEM data found")
	}
	if block.Type != privateKeyPEMType {
		return nil, fmt.Errorf("policy: parse private key: PEM block is %q, want %q", block.Type, privateKeyPEMType)
	}
	return parsePKCS8(block.Bytes)
}

func parsePKCS8(der []byte) (*PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("policy: parse private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("policy: parse private key: %T is not an Ed25519 key", k)
	}
	pub, _ := priv.Public().(ed25519.PublicKey)
	return &PrivateKey{Kid: KeyID(pub), Key: priv}, nil
}

// ParsePublicKeysPEM decodes every PEM block of b. "PUBLIC KEY" blocks
// (PKIX) give their key; "PRIVATE KEY" blocks (PKCS #8) give their public
// half. Keys must be Ed25519, other block types are an error, and keys that
// appear twice are returned once. Text around the blocks is ignored.
func ParsePublicKeysPEM(b []byte) ([]PublicKey, error) {
	var keys []PublicKey
	seen := make(map[string]bool)
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var k PublicKey
		switch block.Type {
		case publicKeyPEMType:
			pk, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("policy: parse public key: PEM block %d: %w", n, err)
			}
			pub, ok := pk.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("policy: parse public key: PEM block %d: %T is not an Ed25519 key", n, pk)
			}
			k = PublicKey{Kid: KeyID(pub), Key: pub}
		case privateKeyPEMType:
			priv, err := parsePKCS8(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("policy: parse public key: PEM block %d: %w", n, err)
			}
			k = priv.Public()
		default:
			return nil, fmt.Errorf("policy: parse public key: PEM block %d is %q, want %q", n, block.Type, publicKeyPEMType)
		}
		if !seen[k.Kid] {
			seen[k.Kid] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("policy: parse public key: no PEM data found")
	}
	return keys, nil
}

// StaticKeys is a KeySet over a fixed list of keys. It is safe for
// concurrent use.
type StaticKeys struct {
	keys map[string]ed25519.PublicKey
}

// NewStaticKeys returns a KeySet holding keys. A key with an empty Kid is
// filed under its thumbprint; when two keys share a Kid the first wins.
func NewStaticKeys(keys ...PublicKey) *StaticKeys {
	s := &StaticKeys{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if len(k.Key) != ed25519.PublicKeySize {
			continue
		}
		kid := k.Kid
		if kid == "" {
			kid = KeyID(k.Key)
		}
		if _, dup := s.keys[kid]; !dup {
			s.keys[kid] = append(ed25519.PublicKey(nil), k.Key...)
		}
	}
	return s
}

// PublicKey returns the key filed under kid, or an error wrapping
// ErrUnknownKey.
func (s *StaticKeys) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}
