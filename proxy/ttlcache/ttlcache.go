// Package ttlcache is a bounded map whose entries expire: the one cache
// behind the remembered answers of dtrcache's HTTP faces (verified
// redirect tokens, registry tokens, positive authorization answers, blob
// links the backend confirmed).
//
// It is deliberately small: an expiry per entry, an injectable clock (so
// tests step time instead of sleeping), a bound on the entries, and no
// goroutine. The libraries that do this (golang-lru's expirable LRU,
// jellydator/ttlcache) read the wall clock themselves or run a janitor
// goroutine per cache.
package ttlcache

import (
	"sync"
	"time"
)

// Cache maps keys to values until each entry's expiry. It holds at most
// its limit of entries: adding one to a full cache first drops the expired
// entries, and if none has expired, all of them (the cache is then full
// of live answers younger than their expiry, and asking again is cheaper
// than growing without bound). It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	max int
	now func() time.Time

	// mu guards m.
	mu sync.Mutex
	m  map[K]entry[V]
}

type entry[V any] struct {
	v   V
	exp time.Time
}

// New returns a cache of at most limit entries (at least 1) whose clock is
// now (nil means time.Now).
func New[K comparable, V any](limit int, now func() time.Time) *Cache[K, V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[K, V]{max: max(limit, 1), now: now, m: map[K]entry[V]{}}
}

// Now returns the cache's clock reading, to compute expiries with.
func (c *Cache[K, V]) Now() time.Time { return c.now() }

// Get returns k's value if it has not expired.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.exp) {
		delete(c.m, k)
		var zero V
		return zero, false
	}
	return e.v, true
}

// Set stores v for k until expires (an expiry not after now stores
// nothing, and drops an older entry for k).
func (c *Cache[K, V]) Set(k K, v V, expires time.Time) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !now.Before(expires) {
		delete(c.m, k)
		return
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		c.sweepLocked(now)
	}
	c.m[k] = entry[V]{v: v, exp: expires}
}

// DeleteFunc drops every entry for which drop reports true.
func (c *Cache[K, V]) DeleteFunc(drop func(K, V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if drop(k, e.v) {
			delete(c.m, k)
		}
	}
}

// Len returns the number of entries, expired ones not yet dropped
// included.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// sweepLocked drops the expired entries, or all if none has expired.
func (c *Cache[K, V]) sweepLocked(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.exp) {
			delete(c.m, k)
		}
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
}
