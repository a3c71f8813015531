package ca

import (
	"container/list"
	"crypto/tls"
	"sync"
	"time"
)

// Leaf defaults.
const (
	// DefaultMaxLeaves bounds the leaf cache when Leaves.Max is 0.
	DefaultMaxLeaves = 1000
	// DefaultLeafValidity is how long an issued leaf is valid. Leaves live
	// in memory only, so they can be short-lived.
	DefaultLeafValidity = 7 * 24 * time.Hour
)

// Leaves issues leaf certificates and caches them, least recently used
// first out, so each host's key is generated once (per process and
// validity period). It is safe for concurrent use.
type Leaves struct {
	// CA signs the leaves. Required.
	CA *Authority
	// Max is how many leaves are kept. 0 means DefaultMaxLeaves.
	Max int
	// Validity is how long a leaf is valid. 0 means DefaultLeafValidity. A
	// cached leaf is replaced once less than a quarter of it is left.
	Validity time.Duration
	// Now returns the current time. nil means time.Now.
	Now func() time.Time
	// OnIssue, if set, is called after each new leaf with the time the
	// signing took (for metrics).
	OnIssue func(host string, took time.Duration)

	// mu guards the fields below. Issuing happens under it: it takes well
	// under a millisecond, and it makes concurrent handshakes for a new host
	// share one key.
	mu    sync.Mutex
	order *list.List               // of *leafEntry, most recently used first
	byKey map[string]*list.Element // host → element of order
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// Get returns the leaf certificate for host, issuing it if it is not
// cached or is close to expiry.
func (l *Leaves) Get(host string) (*tls.Certificate, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKey == nil {
		l.order, l.byKey = list.New(), map[string]*list.Element{}
	}
	if e, ok := l.byKey[host]; ok {
		c := e.Value.(*leafEntry).cert
		if fresh(c, now) {
			l.order.MoveToFront(e)
			return c, nil
		}
		l.order.Remove(e)
		delete(l.byKey, host)
	}
	start := time.Now()
	c, err := l.CA.Issue(host, now, l.validity())
	if err != nil {
		return nil, err
	}
	if l.OnIssue != nil {
		l.OnIssue(host, time.Since(start))
	}
	l.byKey[host] = l.order.PushFront(&leafEntry{host: host, cert: c})
	for l.order.Len() > l.max() {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.byKey, oldest.Value.(*leafEntry).host)
	}
	return c, nil
}

// Len returns the number of cached leaves.
func (l *Leaves) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.order == nil {
		return 0
	}
	return l.order.Len()
}

// fresh reports whether more than a quarter of c's validity is left.
func fresh(c *tls.Certificate, now time.Time) bool {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotAfter.Sub(now) > life/4
}

func (l *Leaves) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Leaves) max() int {
	if l.Max > 0 {
		return l.Max
	}
	return DefaultMaxLeaves
}

func (l *Leaves) validity() time.Duration {
	if l.Validity > 0 {
		return l.Validity
	}
	return DefaultLeafValidity
}
