package policy

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	// DefaultCacheTTL is how long Users remembers a successful
	// verification when CacheTTL is 0.
	DefaultCacheTTL = 5 * time.Minute
	// maxCacheEntries bounds the verification cache.
	maxCacheEntries = 10000
	// maxBcryptCost bounds the cost ParseHtpasswd accepts: each step
	// doubles the work, and cost 17 already takes seconds per check.
	maxBcryptCost = 16
)

// Users is a set of users with bcrypt password hashes, read from an
// htpasswd file. Set the exported fields before first use; Users is then
// safe for concurrent use. A Users is immutable apart from its cache:
// reload a changed file by parsing it into a new Users.
type Users struct {
	// CacheTTL is how long a successful verification is remembered, so
	// that a client sending Basic auth with every request pays bcrypt
	// once. 0 means DefaultCacheTTL; a negative value disables the cache.
	CacheTTL time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	hashes   map[string][]byte // user -> bcrypt hash
	maxCost  int               // highest cost in the file, for the dummy hash
	cacheKey []byte            // random HMAC key for cache entries

	// compare checks a password against a hash; tests count its calls.
	compare func(hash, password []byte) error

	// dummyOnce makes dummy, the hash unknown users are checked against
	// so that they take as long as known ones.
	dummyOnce sync.Once
	dummy     []byte

	// mu guards cache.
	mu    sync.Mutex
	cache map[[sha256.Size]byte]time.Time // verification key -> expiry
}

// ParseHtpasswd reads an htpasswd file of "user:hash" lines. Hashes must
// be bcrypt ($2y$, $2a$ or $2b$, as `htpasswd -B` writes them). Blank lines
// and lines starting with # are ignored. Errors name the line number.
func ParseHtpasswd(b []byte) (*Users, error) {
	u := &Users{
		hashes:  make(map[string][]byte),
		compare: bcrypt.CompareHashAndPassword,
		cache:   make(map[[sha256.Size]byte]time.Time),
	}
	text := strings.TrimPrefix(string(b), "\ufeff") // a byte order mark
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy: htpasswd line %d: want user:hash", n)
		}
		if user == "" {
			return nil, fmt.Errorf("policy: htpasswd line %d: empty user name", n)
		}
		if _, dup := u.hashes[user]; dup {
			return nil, fmt.Errorf("policy: htpasswd line %d: user %q appears twice", n, user)
		}
		cost, err := bcryptCost(hash)
		if err != nil {
			return nil, fmt.Errorf("policy: htpasswd line %d: user %q: %w", n, user, err)
		}
		u.hashes[user] = []byte(hash)
		u.maxCost = max(u.maxCost, cost)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("policy: htpasswd: %w", err)
	}
	u.cacheKey = key
	return u, nil
}

// bcryptCost checks that hash is a bcrypt hash and returns its cost.
func bcryptCost(hash string) (int, error) {
	if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
		return 0, fmt.Errorf("hash is not bcrypt (want $2y$, $2a$ or $2b$; other htpasswd formats are not supported)")
	}
	if len(hash) != 60 {
		return 0, fmt.Errorf("bcrypt hash has %d characters, want 60", len(hash))
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return 0, fmt.Errorf("bad bcrypt hash: %w", err)
	}
	if cost > maxBcryptCost {
		return 0, fmt.Errorf("bcrypt cost %d is above the supported maximum %d", cost, maxBcryptCost)
	}
	return cost, nil
}

// Has reports whether user is in the file.
func (u *Users) Has(user string) bool {
	_, ok := u.hashes[user]
	return ok
}

// Authenticate checks user's password. It returns an error wrapping
// ErrBadCredentials for an unknown user and for a wrong password alike, and
// spends about as long on both. As with any bcrypt, only the first 72
// bytes of the password count.
func (u *Users) Authenticate(user, password string) error {
	hash, known := u.hashes[user]
	if !known {
		// Burn the same time as a real check so that timing does not
		// tell which users exist.
		_ = u.compare(u.dummyHash(), []byte(password))
		return fmt.Errorf("%w: user %q", ErrBadCredentials, user)
	}
	key := u.verificationKey(user, password)
	now := u.now()
	if u.cached(key, now) {
		return nil
	}
	if err := u.compare(hash, []byte(password)); err != nil {
		return fmt.Errorf("%w: user %q", ErrBadCredentials, user)
	}
	u.remember(key, now)
	return nil
}

// verificationKey names a (user, password) pair in the cache without
// keeping the password: an HMAC under a key that lives only in memory, over
// the length-prefixed user name and the password.
func (u *Users) verificationKey(user, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, u.cacheKey)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	m.Write(n[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

func (u *Users) cached(key [sha256.Size]byte, now time.Time) bool {
	if u.CacheTTL < 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.cache[key]
	if !ok {
		return false
	}
	if !now.Before(exp) {
		delete(u.cache, key)
		return false
	}
	return true
}

func (u *Users) remember(key [sha256.Size]byte, now time.Time) {
	if u.CacheTTL < 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.cache) >= maxCacheEntries {
		u.evictLocked(now)
	}
	u.cache[key] = now.Add(orDefault(u.CacheTTL, DefaultCacheTTL))
}

// evictLocked drops expired entries and, if the cache is still full, an
// arbitrary tenth of it. u.mu must be held.
func (u *Users) evictLocked(now time.Time) {
	for k, exp := range u.cache {
		if !now.Before(exp) {
			delete(u.cache, k)
		}
	}
	for k := range u.cache {
		if len(u.cache) < maxCacheEntries-maxCacheEntries/10 {
			break
		}
		delete(u.cache, k)
	}
}

// dummyHash returns a hash of a random password at the file's highest cost,
// made on first use so that parsing stays fast.
func (u *Users) dummyHash() []byte {
	u.dummyOnce.Do(func() {
		pw := make([]byte, 24)
		_, _ = rand.Read(pw)
		cost := u.maxCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		h, err := bcrypt.GenerateFromPassword(pw, cost)
		if err != nil {
			// Cannot happen for a 24-byte password and a valid cost; a
			// fixed invalid hash still fails every comparison.
			h = bytes.Repeat([]byte{'x'}, 60)
		}
		u.dummy = h
	})
	return u.dummy
}

func (u *Users) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// HashPassword returns the bcrypt hash of password at cost (bcrypt's
// default when cost is below bcrypt.MinCost), for htpasswd files.
func HashPassword(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("policy: hash password: %w", err)
	}
	return string(h), nil
}
