package health

import (
	"sync"
	"time"
)

// The classes of a check's result (Result.Class, Verdict.Class, the
// reason label of the metrics).
const (
	ClassOK              = "ok"               // a good probe or beat
	ClassRefused         = "refused"          // connection refused: nothing listens
	ClassNotReady        = "not_ready"        // the node says it is not ready (503 at /readyz, a not-ready beat)
	ClassTimeout         = "timeout"          // no answer within the probe timeout
	ClassStatus          = "status"           // another unexpected status
	ClassError           = "error"            // any other failure (TLS, DNS, reset)
	ClassHeartbeatMissed = "heartbeat_missed" // two beats missed
	ClassRemoved         = "removed"          // the node is no longer registered
)

// Result is one check of a node: a probe or a heartbeat.
type Result struct {
	OK     bool
	Reason string
	Class  string
	// At is when the check was made; RTT its round trip (probes).
	At  time.Time
	RTT time.Duration
}

// immediate reports whether a failure decides at once: nothing listens,
// or the node itself says it is not ready (draining, its store failing).
func (r Result) immediate() bool {
	return r.Class == ClassRefused || r.Class == ClassNotReady || r.Class == ClassHeartbeatMissed
}

// DefaultRise and DefaultFall are the consecutive good checks that bring a
// node back and the consecutive failures (of a kind that does not decide
// at once) that take it down.
const (
	DefaultRise = 3
	DefaultFall = 2
)

// Tracker is one replica's view of its own checks: per node, the local
// verdict and the run of good or bad results that changes it. It is pure
// (no I/O, no clock) and safe for concurrent use. The zero value uses
// DefaultRise and DefaultFall.
type Tracker struct {
	// Rise is how many consecutive good checks bring a down node back
	// (0: DefaultRise); Fall how many consecutive failures that do not
	// decide at once take an up node down (0: DefaultFall).
	Rise, Fall int

	// mu guards nodes.
	mu    sync.Mutex
	nodes map[Key]*tracked
}

type tracked struct {
	known, up  bool
	good, bad  int
	redirected int64 // redirects since the last good check
}

// Observe records one check of k and returns the local verdict, whether
// this check changed it, and, when it went down, the redirects counted
// (Redirected) since the node's last good check. The first check of a
// node decides at once.
func (t *Tracker) Observe(k Key, r Result) (up, changed bool, redirected int64) {
	rise, fall := t.Rise, t.Fall
	if rise <= 0 {
		rise = DefaultRise
	}
	if fall <= 0 {
		fall = DefaultFall
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes == nil {
		t.nodes = map[Key]*tracked{}
	}
	n := t.nodes[k]
	if n == nil {
		n = &tracked{}
		t.nodes[k] = n
	}
	if r.OK {
		n.good, n.bad = n.good+1, 0
		n.redirected = 0
		if !n.known || (!n.up && n.good >= rise) {
			changed = !n.known || !n.up
			n.known, n.up = true, true
		}
		return n.up, changed, 0
	}
	n.good, n.bad = 0, n.bad+1
	if !n.known || (n.up && (r.immediate() || n.bad >= fall)) {
		changed = !n.known || n.up
		n.known, n.up = true, false
		redirected, n.redirected = n.redirected, 0
	}
	return n.up, changed, redirected
}

// Redirected counts a redirect this replica made to k; a check that then
// finds k down reports the count (Observe).
func (t *Tracker) Redirected(k Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[k]; n != nil {
		n.redirected++
	}
}

// Forget drops k.
func (t *Tracker) Forget(k Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, k)
}
