package cache

import (
	"crypto/sha256"
	"sync"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/ttlcache"
)

// verifiedTokens remembers tokens that verified, until they expire, so a
// client that reuses its redirect URL (retries, range requests, load
// tests) does not pay an Ed25519 verification each time. The claims are
// re-checked against every request. The zero value is ready to use.
type verifiedTokens struct {
	once   sync.Once
	claims *ttlcache.Cache[[sha256.Size]byte, policy.Claims]
}

const maxVerifiedTokens = 10_000

func (v *verifiedTokens) cache() *ttlcache.Cache[[sha256.Size]byte, policy.Claims] {
	v.once.Do(func() { v.claims = ttlcache.New[[sha256.Size]byte, policy.Claims](maxVerifiedTokens, nil) })
	return v.claims
}

// get returns the claims of tok if it verified and has not expired.
func (v *verifiedTokens) get(tok string) (policy.Claims, bool) {
	return v.cache().Get(sha256.Sum256([]byte(tok)))
}

// put remembers a verified token until its expiry.
func (v *verifiedTokens) put(tok string, c policy.Claims) {
	v.cache().Set(sha256.Sum256([]byte(tok)), c, c.Expiry)
}
