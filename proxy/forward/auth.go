package forward

import (
	"crypto/sha256"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/ttlcache"
)

// MaxAuthTTL is the longest a positive authorization answer is remembered.
const MaxAuthTTL = 60 * time.Second

// maxAuthEntries bounds the authorization cache.
const maxAuthEntries = 100_000

// authKey identifies one positive answer of a registry: this credential
// may read this blob through this repository.
//
// The digest is part of the key on purpose. A registry answers a blob
// request per repository: GET /v2/a/blobs/<d> is 404 when <d> is not
// linked in a, even for a user who may pull a. Remembering "may read
// repository a" alone would let that user read any cached blob by naming
// its digest under a.
type authKey struct {
	cred   [sha256.Size]byte // sha256 of the client's credentials (credential)
	host   string            // the registry, host:port
	repo   string
	digest string
}

// credential hashes what authorizes a request at a registry: the
// Authorization header, and cookies and the query string for registries
// that authorize by those. The values themselves are never stored.
func credential(r *http.Request) [sha256.Size]byte {
	h := sha256.New()
	for _, v := range []string{r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.URL.RawQuery} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// authCache remembers positive authorization answers for ttl. It is safe
// for concurrent use.
type authCache struct {
	ttl time.Duration
	// answers maps a key to how it was authorized: true for a manifest
	// that listed the digest, false for a HEAD.
	answers *ttlcache.Cache[authKey, bool]
}

func newAuthCache(ttl time.Duration, now func() time.Time) *authCache {
	return &authCache{ttl: ttl, answers: ttlcache.New[authKey, bool](maxAuthEntries, now)}
}

// allowed reports whether k was answered positively less than ttl ago,
// and how: "cached" for a HEAD's yes, "vouched" for a manifest's.
func (c *authCache) allowed(k authKey) (string, bool) {
	if c.ttl <= 0 {
		return "", false
	}
	byManifest, ok := c.answers.Get(k)
	if byManifest {
		return "vouched", ok
	}
	return "cached", ok
}

// remember records a HEAD's positive answer for k.
func (c *authCache) remember(k authKey) {
	if c.ttl <= 0 {
		return
	}
	c.answers.Set(k, false, c.answers.Now().Add(c.ttl))
}

// vouch records that a manifest the registry served to k's credential
// from k's repository lists k's digest.
func (c *authCache) vouch(k authKey) {
	if c.ttl <= 0 {
		return
	}
	c.answers.Set(k, true, c.answers.Now().Add(c.ttl))
}

// forget drops every answer for a repository (after a DELETE in it went
// to the registry), so a deleted blob is not served from the store.
func (c *authCache) forget(host, repo string) {
	c.answers.DeleteFunc(func(k authKey, _ bool) bool { return k.host == host && k.repo == repo })
}

func (c *authCache) len() int { return c.answers.Len() }
