package origin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

// KeyRing holds the origin's signing key and published public keys, and
// reloads them from the key directory so a rotation needs no restart: add
// a key (it signs from the next reload on, and is published), later remove
// the old one (it stops being published once tokens it signed expired).
type KeyRing struct {
	// Dir is the key directory written by `dtrcache keys generate`.
	Dir string
	// Issuer and TTL configure the tokens.
	Issuer string
	TTL    time.Duration

	// mu guards the fields below.
	mu     sync.RWMutex
	signer *policy.Signer
	kid    string
	all    []policy.PublicKey
	jwks   []byte
}

// Reload reads the key directory.
func (k *KeyRing) Reload() error {
	signing, all, err := policy.LoadKeyDir(k.Dir)
	if err != nil {
		return fmt.Errorf("origin: keys: %w", err)
	}
	if signing == nil {
		return errors.New("origin: keys: no private key in " + k.Dir + " (run `dtrcache keys generate`)")
	}
	jwks, err := policy.MarshalJWKS(all)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kid != signing.Kid {
		k.signer = policy.NewSigner(signing, k.Issuer, k.TTL)
		k.kid = signing.Kid
	}
	k.all, k.jwks = all, jwks
	return nil
}

// Signer returns the current signer.
func (k *KeyRing) Signer() *policy.Signer {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.signer
}

// JWKS returns the published key set document.
func (k *KeyRing) JWKS() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.jwks
}

// PublicKey implements policy.KeySet over the published keys, so the
// origin can verify tokens forwarded by its caches.
func (k *KeyRing) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, p := range k.all {
		if p.Kid == kid {
			return p.Key, nil
		}
	}
	return nil, policy.ErrUnknownKey
}
