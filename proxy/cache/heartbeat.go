package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// Heartbeat announces a cache node to its origin, for a cache the origin
// cannot connect to (NAT, a firewall, a name that resolves only in the
// office): the node posts a beat (its readiness, store use and version)
// on its own account every Interval; the origin takes it as up while the
// beats say ready, down after two missed ones, and answers each beat with
// the prefetch hints waiting for the node (holding the beat up to an
// interval until one comes), which the Server then fills.
type Heartbeat struct {
	// URL is the origin's base URL; Cache the cache's name there; Node
	// the URL users reach this node at ("" for a cache of one node).
	URL, Cache, Node string
	// Username and Password are the cache's account at the origin.
	Username, Password string
	// Client makes the requests (its transport trusts the origin's CA).
	Client *http.Client
	// Interval between beats; 0 means one second.
	Interval time.Duration
	// Ready reports the node's readiness (nil: ready).
	Ready func(ctx context.Context) error
	// Stats reports the store's bytes, byte budget and blobs.
	Stats func() (bytes, maxBytes, blobs int64)
	// Version is the node's dtrcache version.
	Version string
	// Server receives the hints; nil drops them.
	Server *Server
	// Logger receives failures (once per change between failing and not).
	Logger *zap.Logger

	once sync.Once
	kick chan struct{}
	// mu guards acked.
	mu    sync.Mutex
	acked chan struct{} // closed when the origin answered a not-ready beat
}

func (h *Heartbeat) init() {
	h.once.Do(func() {
		h.kick = make(chan struct{}, 1)
		h.acked = make(chan struct{})
		if h.Interval <= 0 {
			h.Interval = time.Second
		}
		if h.Logger == nil {
			h.Logger = zap.NewNop()
		}
	})
}

// Notify sends a beat now, ending the one the origin holds (a change of
// readiness: a planned stop).
func (h *Heartbeat) Notify() {
	h.init()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// NotReadyAcked is closed once the origin has answered a beat that said
// the node is not ready: from then on it redirects nobody to the node.
func (h *Heartbeat) NotReadyAcked() <-chan struct{} {
	h.init()
	return h.acked
}

// Run beats until ctx ends; it returns nil then.
func (h *Heartbeat) Run(ctx context.Context) error {
	h.init()
	failing := false
	for ctx.Err() == nil {
		start := time.Now()
		reply, ready, err := h.beat(ctx)
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			continue // cut short by Notify: beat again at once
		}
		if err != nil {
			if !failing && ctx.Err() == nil {
				h.Logger.Warn("heartbeat to the origin failed; retrying every interval", zap.String("origin", h.URL), zap.Error(err))
			}
			failing = true
		} else {
			if failing {
				h.Logger.Info("heartbeats reach the origin again", zap.String("origin", h.URL))
			}
			failing = false
			if !ready {
				h.mu.Lock()
				select {
				case <-h.acked:
				default:
					close(h.acked)
				}
				h.mu.Unlock()
			}
			for _, hint := range reply.Hints {
				if h.Server != nil {
					h.Server.acceptHint(ctx, hint)
				}
			}
			if len(reply.Hints) > 0 {
				continue // more may be waiting: beat again at once
			}
		}
		// The origin held the beat up to an interval; wait out the rest
		// (an origin that answers at once, or a failure).
		wait := time.Until(start.Add(h.Interval))
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-h.kick:
		}
		t.Stop()
	}
	return nil
}

// beat sends one beat and reads the answer. A Notify ends the wait for
// the answer early (the next beat carries the news).
func (h *Heartbeat) beat(ctx context.Context) (regapi.HeartbeatReply, bool, error) {
	var reply regapi.HeartbeatReply
	b := health.Beat{Node: h.Node, Ready: true, Version: h.Version, IntervalMillis: h.Interval.Milliseconds()}
	if h.Ready != nil {
		rctx, cancel := context.WithTimeout(ctx, h.Interval)
		if err := h.Ready(rctx); err != nil {
			b.Ready, b.Reason = false, err.Error()
		}
		cancel()
	}
	if h.Stats != nil {
		b.StoreBytes, b.StoreMaxBytes, b.StoreBlobs = h.Stats()
	}
	body, err := json.Marshal(b)
	if err != nil {
		return reply, b.Ready, err
	}
	// The origin holds the beat up to an interval: allow that and a
	// round trip, and cut it short on Notify.
	rctx, cancel := context.WithTimeout(ctx, h.Interval+5*time.Second)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-h.kick:
			cancel() // Run beats again at once
		case <-done:
		}
	}()
	defer wg.Wait()
	defer close(done)
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, h.URL+regapi.HeartbeatPath(h.Cache), bytes.NewReader(body))
	if err != nil {
		return reply, b.Ready, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.Username != "" {
		req.SetBasicAuth(h.Username, h.Password)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return reply, b.Ready, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return reply, b.Ready, fmt.Errorf("heartbeat: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&reply); err != nil {
		return reply, b.Ready, fmt.Errorf("heartbeat: answer: %w", err)
	}
	return reply, b.Ready, nil
}
