package policy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// DefaultRefresh is RemoteKeys' refresh interval when Refresh is 0.
	DefaultRefresh = 5 * time.Minute
	// DefaultMinRefetch is RemoteKeys' minimum interval between fetches
	// caused by unknown kids when MinRefetch is 0.
	DefaultMinRefetch = 10 * time.Second
	// fetchTimeout bounds a fetch that PublicKey starts, which has no
	// caller context.
	fetchTimeout = 10 * time.Second
)

// RemoteKeys is a KeySet backed by a JWK Set that Fetch returns, typically
// the origin's published keys. It serves keys from the last set it fetched
// successfully ("the last good set") and fetches again when a kid is
// unknown (at most once per MinRefetch, so made-up kids cannot make it
// hammer the origin) or when the set is older than Refresh. A failed fetch,
// or a set without any usable key, keeps the last good set. Key rotation
// needs nothing more: a token signed with a new key names an unknown kid,
// which triggers a fetch.
//
// Set the exported fields before first use; RemoteKeys is then safe for
// concurrent use. The zero value needs only Fetch.
type RemoteKeys struct {
	// Fetch returns the JWKS document. Required. The HTTP client lives
	// with the caller.
	Fetch func(ctx context.Context) ([]byte, error)
	// Refresh is how old the last good set may grow before PublicKey
	// fetches again. 0 means DefaultRefresh.
	Refresh time.Duration
	// MinRefetch is the least time between two fetches started by
	// PublicKey. 0 means DefaultMinRefetch.
	MinRefetch time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	// fetchMu is held for the duration of a fetch, so concurrent misses
	// wait for one fetch instead of starting their own.
	fetchMu sync.Mutex

	// mu guards the fields below. It is never held during a fetch.
	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey // the last good set
	loadedAt  time.Time                    // when keys was fetched; zero before the first success
	attemptAt time.Time                    // when the last fetch started, successful or not
	lastErr   error                        // why the last fetch failed; nil after a success
}

// Load fetches the key set now, ignoring MinRefetch. It returns the fetch
// or parse error, in which case the last good set stays in use.
func (r *RemoteKeys) Load(ctx context.Context) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	return r.fetchLocked(ctx)
}

// PublicKey returns the key for kid. It may block on a fetch (bounded by
// ctx and a 10 s timeout) when kid is unknown or the set is stale. Errors
// wrap ErrUnknownKey, and the last fetch error when there is one.
func (r *RemoteKeys) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	key, stale, mayFetch := r.lookup(kid)
	switch {
	case key != nil && !stale:
		return key, nil
	case key != nil:
		// Stale but present: one caller refreshes, the others keep using
		// what they have rather than wait for it.
		if !mayFetch || !r.fetchMu.TryLock() {
			return key, nil
		}
		// Re-check: a refresh may have finished since the lookup.
		if _, stale, mayFetch = r.lookup(kid); stale && mayFetch {
			r.fetchWithTimeoutLocked(ctx)
		}
		r.fetchMu.Unlock()
	default:
		// Wait for a fetch in flight, which may bring the key; fetch
		// ourselves only if none did and MinRefetch allows.
		r.fetchMu.Lock()
		if key, _, mayFetch = r.lookup(kid); key == nil && mayFetch {
			r.fetchWithTimeoutLocked(ctx)
		}
		r.fetchMu.Unlock()
	}
	// A refresh can drop a key: that is how a key is retired.
	if key, _, _ = r.lookup(kid); key != nil {
		return key, nil
	}
	return nil, r.unknown(kid)
}

// lookup returns the key for kid from the last good set, whether that set
// is due for a refresh, and whether MinRefetch allows a fetch now.
func (r *RemoteKeys) lookup(kid string) (key ed25519.PublicKey, stale, mayFetch bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	key = r.keys[kid]
	stale = r.loadedAt.IsZero() || elapsed(r.loadedAt, now) >= orDefault(r.Refresh, DefaultRefresh)
	mayFetch = r.attemptAt.IsZero() || elapsed(r.attemptAt, now) >= orDefault(r.MinRefetch, DefaultMinRefetch)
	return key, stale, mayFetch
}

func (r *RemoteKeys) unknown(kid string) error {
	r.mu.Lock()
	lastErr := r.lastErr
	r.mu.Unlock()
	if lastErr != nil {
		return fmt.Errorf("%w: kid %q (last key set fetch failed: %w)", ErrUnknownKey, kid, lastErr)
	}
	return fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

// fetchWithTimeoutLocked fetches with its own timeout; the outcome is
// recorded in r. fetchMu must be held.
func (r *RemoteKeys) fetchWithTimeoutLocked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	_ = r.fetchLocked(ctx)
}

// fetchLocked fetches and parses the key set and, when that works and gives
// at least one key, makes it the last good set. fetchMu must be held.
func (r *RemoteKeys) fetchLocked(ctx context.Context) error {
	start := r.now()
	r.mu.Lock()
	r.attemptAt = start
	r.mu.Unlock()

	keys, err := r.fetchKeys(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lastErr = err
		return err
	}
	r.keys = keys
	r.loadedAt = start
	r.lastErr = nil
	return nil
}

func (r *RemoteKeys) fetchKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	if r.Fetch == nil {
		return nil, errors.New("policy: fetch key set: RemoteKeys.Fetch is nil")
	}
	b, err := r.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: fetch key set: %w", err)
	}
	list, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("policy: fetch key set: %w", err)
	}
	if len(list) == 0 {
		return nil, errors.New("policy: fetch key set: no Ed25519 signing keys in the set")
	}
	keys := make(map[string]ed25519.PublicKey, len(list))
	for _, k := range list {
		keys[k.Kid] = k.Key
	}
	return keys, nil
}

func (r *RemoteKeys) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// elapsed is now-since, treating a clock that went backwards as "long ago"
// so that a fetch is never blocked by it.
func elapsed(since, now time.Time) time.Duration {
	d := now.Sub(since)
	if d < 0 {
		return time.Duration(1<<63 - 1)
	}
	return d
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
