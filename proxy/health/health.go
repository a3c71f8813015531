// Package health decides whether each node of a registered cache may take
// users: per-node verdicts made from probes of the node's /readyz (the
// origin asks) or from heartbeats (the node tells), shared by every origin
// replica through the origin's state store so that all of them redirect
// alike.
//
// A verdict changes the way a user would want: down at once when the node
// refuses connections or says it is not ready (a crash, a planned stop),
// down after Fall consecutive failures of another kind (a timeout, an
// error), and up again only after Rise consecutive good checks, so a
// flapping node does not bounce users between it and the origin. The
// first check of a node never seen before decides at once.
//
// Tracker is the pure state machine of one replica; Board holds the
// shared verdicts (a state.View over the store) and writes a change with
// a conditional transaction, so one change is written, and reported to
// Board.OnChange, once however many replicas see it.
package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Mode is how a node's health is learnt.
type Mode string

// The modes.
const (
	// ModeProbe: the origin probes the node's /readyz.
	ModeProbe Mode = "probe"
	// ModeHeartbeat: the node posts heartbeats to the origin (a cache the
	// origin cannot reach: NAT, a firewall, an office-only name).
	ModeHeartbeat Mode = "heartbeat"
)

// Key names one node of one registered cache.
type Key struct {
	Cache string
	// Node is the node's URL (the one users are redirected to).
	Node string
}

// Verdict is what the origin replicas agree about one node.
type Verdict struct {
	// Up: the node takes users.
	Up bool `json:"up"`
	// Reason says why a node is down ("" when up).
	Reason string `json:"reason,omitempty"`
	// Class is the kind of the last change (see Classify).
	Class string `json:"class,omitempty"`
	// Since is when Up last changed.
	Since time.Time `json:"since"`
	// Checked is when the check that decided was made.
	Checked time.Time `json:"checked"`
	// Mode is how the verdict was reached.
	Mode Mode `json:"mode"`
	// RTT is the round trip of the deciding probe (0 for heartbeats).
	RTT time.Duration `json:"rtt,omitempty"`
	// Beat is the last heartbeat of a node in heartbeat mode.
	Beat *Beat `json:"beat,omitempty"`
	// Good counts consecutive good heartbeats (heartbeat mode only: the
	// beats of one node may reach any replica).
	Good int `json:"good,omitempty"`
	// By names the replica that wrote the verdict.
	By string `json:"by,omitempty"`
}

// Beat is one heartbeat of a cache node, as the node sends it.
type Beat struct {
	// Node is the node's URL ("" for a cache of one node).
	Node string `json:"node,omitempty"`
	// Ready and Reason are the node's own readiness (its /readyz).
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Version is the node's dtrcache version.
	Version string `json:"version,omitempty"`
	// StoreBytes, StoreMaxBytes and StoreBlobs describe its store.
	StoreBytes    int64 `json:"storeBytes"`
	StoreMaxBytes int64 `json:"storeMaxBytes,omitempty"`
	StoreBlobs    int64 `json:"storeBlobs"`
	// IntervalMillis is how often the node beats; the origin marks it
	// down after two missed beats.
	IntervalMillis int64 `json:"intervalMs"`
	// At is when the origin received the beat (set by the origin).
	At time.Time `json:"at,omitzero"`
}

// Interval returns the beat interval (1s when the node gave none).
func (b *Beat) Interval() time.Duration {
	if b == nil || b.IntervalMillis <= 0 {
		return time.Second
	}
	return time.Duration(b.IntervalMillis) * time.Millisecond
}

// Expired reports whether the beat is older than two intervals and a
// slack of a quarter interval at now: the node missed two beats.
func (b *Beat) Expired(now time.Time) bool {
	if b == nil {
		return true
	}
	iv := b.Interval()
	return now.Sub(b.At) > 2*iv+iv/4
}

// Change is one change of a node's verdict.
type Change struct {
	Key
	// Up is the new state; Reason and Class say why (for a node going
	// down) or what brought it back.
	Up     bool
	Reason string
	Class  string
	Mode   Mode
	// At is when the change was decided.
	At time.Time
	// Down is, for a node coming back up, how long it was down.
	Down time.Duration
	// Redirected is, for a node going down, how many redirects this
	// replica made to it after its last good check: users sent to a node
	// that was, as found afterwards, already down.
	Redirected int64
}

// Limits of a beat as the origin accepts it.
const (
	maxBeatBytes     = 64 << 10
	maxBeatText      = 1 << 10 // reason, version
	minBeatInterval  = 100 * time.Millisecond
	maxBeatInterval  = 30 * time.Second
	maxBeatNodeBytes = 2 << 10
)

// ParseBeat reads a heartbeat body (JSON, at most 64 KiB; unknown fields
// are ignored, so newer caches can say more). The interval is 1s when
// absent and clamped to [100ms, 30s], the reason and version cut to 1 KiB; a negative store
// figure, a node URL over 2 KiB, or anything but one JSON object is an
// error.
func ParseBeat(r io.Reader) (Beat, error) {
	var b Beat
	dec := json.NewDecoder(io.LimitReader(r, maxBeatBytes+1))
	if err := dec.Decode(&b); err != nil {
		return Beat{}, fmt.Errorf("health: heartbeat: %w", err)
	}
	if dec.More() {
		return Beat{}, errors.New("health: heartbeat: more than one JSON value")
	}
	if dec.InputOffset() > maxBeatBytes {
		return Beat{}, errors.New("health: heartbeat: larger than 64 KiB")
	}
	if len(b.Node) > maxBeatNodeBytes {
		return Beat{}, errors.New("health: heartbeat: node URL too long")
	}
	if b.StoreBytes < 0 || b.StoreMaxBytes < 0 || b.StoreBlobs < 0 {
		return Beat{}, errors.New("health: heartbeat: negative store figures")
	}
	b.Reason, b.Version = cut(b.Reason), cut(b.Version)
	if b.IntervalMillis <= 0 {
		b.IntervalMillis = time.Second.Milliseconds() // the cache's default
	}
	b.IntervalMillis = min(max(b.IntervalMillis, minBeatInterval.Milliseconds()), maxBeatInterval.Milliseconds())
	b.At = time.Time{} // set by the origin
	return b, nil
}

func cut(s string) string {
	if len(s) > maxBeatText {
		return strings.ToValidUTF8(s[:maxBeatText], "")
	}
	return s
}
