package cache

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

// verifiedTokens remembers tokens that verified, until they expire, so a
// client that reuses its redirect URL (retries, range requests, load
// tests) does not pay an Ed25519 verification each time. The claims are
// re-checked against every request.
type verifiedTokens struct {
	// mu guards m.
	mu sync.Mutex
	m  map[[32]byte]policy.Claims
}

const maxVerifiedTokens = 10_000

func (v *verifiedTokens) get(tok string, now time.Time) (policy.Claims, bool) {
	k := sha256.Sum256([]byte(tok))
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.m[k]
	if !ok || !now.Before(c.Expiry) {
		return policy.Claims{}, false
	}
	return c, true
}

func (v *verifiedTokens) put(tok string, c policy.Claims, now time.Time) {
	k := sha256.Sum256([]byte(tok))
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[[32]byte]policy.Claims)
	}
	if len(v.m) >= maxVerifiedTokens {
		for key, old := range v.m {
			if !now.Before(old.Expiry) {
				delete(v.m, key)
			}
		}
		if len(v.m) >= maxVerifiedTokens {
			clear(v.m)
		}
	}
	v.m[k] = c
}
