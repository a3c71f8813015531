package origin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/ttlcache"
)

// KeyRing holds the origin's signing key and published public keys, and
// reloads them from the key directory so a rotation needs no restart: add
// a key (it signs from the next reload on, and is published), later remove
// the old one (it stops being published once tokens it signed expired).
// It also keeps the tokens it signed for reuse (Token).
type KeyRing struct {
	// Dir is the key directory written by `dtrcache keys generate`.
	Dir string
	// Issuer and TTL configure the tokens.
	Issuer string
	TTL    time.Duration
	// MaxTokens bounds the signed tokens kept for reuse (Token); 0 means
	// DefaultMaxTokens. Set before the first Reload.
	MaxTokens int
	// Now is the clock of the tokens and of their reuse; nil means
	// time.Now. Set before the first Reload.
	Now func() time.Time

	// mu guards the fields below.
	mu     sync.RWMutex
	signer *policy.Signer
	kid    string
	all    []policy.PublicKey
	jwks   []byte
	tokens *ttlcache.Cache[tokenKey, string]
}

// DefaultMaxTokens is how many signed tokens a KeyRing keeps for reuse
// when MaxTokens is 0: a few MiB of tokens, the blobs of a hundred
// 200-layer pulls in flight at once.
const DefaultMaxTokens = 20_000

// tokenKey is what a token is signed for: the key, the user (sub), the
// cache (aud), the repository and the blob.
type tokenKey struct{ kid, user, cache, repo, digest string }

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
	if k.tokens == nil {
		n := k.MaxTokens
		if n <= 0 {
			n = DefaultMaxTokens
		}
		k.tokens = ttlcache.New[tokenKey, string](n, k.Now)
	}
	if k.kid != signing.Kid {
		k.signer = policy.NewSigner(signing, k.Issuer, k.TTL)
		k.signer.Now = k.Now
		k.kid = signing.Kid
		// Tokens of the old key are never handed out again.
		k.tokens.DeleteFunc(func(t tokenKey, _ string) bool { return t.kid != signing.Kid })
	}
	k.all, k.jwks = all, jwks
	return nil
}

// Token returns a token that lets user fetch the blob digest of repo from
// the cache named cache, signed by the current key: the token signed
// earlier for the same key, user, cache, repository and blob while at
// least half its lifetime remains, else a new one, kept for reuse (at
// most MaxTokens). A redirect or a prefetch hint then costs no signature,
// and the cache, which remembers the tokens it verified, no verification
// either. Reuse saves signing only: the caller authorizes every request
// before it asks for a token.
func (k *KeyRing) Token(user, cache, repo, digest string) (string, error) {
	k.mu.RLock()
	signer, kid, tokens := k.signer, k.kid, k.tokens
	k.mu.RUnlock()
	if signer == nil {
		return "", errors.New("origin: keys not loaded")
	}
	key := tokenKey{kid: kid, user: user, cache: cache, repo: repo, digest: digest}
	if tok, ok := tokens.Get(key); ok {
		return tok, nil
	}
	tok, c, err := signer.Sign(user, cache, repo, digest)
	if err != nil {
		return "", err
	}
	tokens.Set(key, tok, c.IssuedAt.Add(c.Expiry.Sub(c.IssuedAt)/2))
	return tok, nil
}

// KeptTokens returns how many signed tokens are kept for reuse (expired
// ones not yet dropped included): at most MaxTokens.
func (k *KeyRing) KeptTokens() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.tokens == nil {
		return 0
	}
	return k.tokens.Len()
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
