package console

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// limiter counts failed sign-ins per key (a user name, a client address)
// in token buckets: burst failures are allowed, then one more per refill.
// A key whose bucket is empty is refused before its password is checked
// (which also spares the CPU of a bcrypt comparison). The buckets live in
// an LRU of bounded size, so a flood of made-up user names cannot grow
// it; a bucket pushed out is a full one again, which is what an idle key
// would have regained anyway. Safe for concurrent use. Each origin replica
// counts its own failures.
type limiter struct {
	burst int
	every time.Duration
	now   func() time.Time

	// mu makes the check and the count of one sign-in atomic across its
	// keys.
	mu      sync.Mutex
	buckets *lru.Cache[string, *rate.Limiter]
}

// maxBuckets bounds the keys the limiter remembers.
const maxBuckets = 65536

func newLimiter(burst int, every time.Duration, now func() time.Time) *limiter {
	c, _ := lru.New[string, *rate.Limiter](maxBuckets) // fails only for a size ≤ 0
	return &limiter{burst: burst, every: every, now: now, buckets: c}
}

// wait returns 0 if every key may try to sign in now, else how long until
// all of them may.
func (l *limiter) wait(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var longest time.Duration
	for _, k := range keys {
		b, ok := l.buckets.Get(k)
		if !ok {
			continue
		}
		if tokens := b.TokensAt(now); tokens < 1 {
			d := time.Duration(math.Ceil((1 - tokens) * float64(l.every)))
			longest = max(longest, d)
		}
	}
	return longest
}

// failed counts a failed sign-in against every key.
func (l *limiter) failed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		b, ok := l.buckets.Get(k)
		if !ok {
			b = rate.NewLimiter(rate.Every(l.every), l.burst)
			l.buckets.Add(k, b)
		}
		b.AllowN(now, 1)
	}
}

// clientKey is the limiter key of r's client address: the address itself
// for IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "addr:" + host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + addr.String()
}
