package origin

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
)

// maxWaitingHints bounds the hints kept for one node between its beats
// (the oldest are dropped: the user's own requests still fill).
const maxWaitingHints = 64

// serveHeartbeat takes a heartbeat from a node of the cache named in the
// path, on the cache's own account: the prober records it (health.Beat),
// then the beat is held, up to its interval, until prefetch hints for the
// node arrive, which the answer carries.
func (s *Server) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	f := serve.FieldsFrom(r.Context())
	f.Route = "heartbeat"
	id, err := s.identify(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if id.user == "" {
		s.fail(w, r, s.challenge(regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required")))
		return
	}
	c, err := s.c.DB.Cache(name)
	if errors.Is(err, ErrNotFound) || (err == nil && (c.Account == "" || c.Account != id.user)) {
		s.fail(w, r, regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "heartbeats come from the cache's own account"))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := health.ParseBeat(r.Body)
	if err != nil {
		s.fail(w, r, regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", "invalid heartbeat: "+err.Error(), err))
		return
	}
	var n Node
	switch nodes := c.Nodes(); {
	case b.Node == "" && len(nodes) == 1:
		n = nodes[0]
	default:
		var ok bool
		if n, ok = c.Node(b.Node); !ok {
			s.fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_NODE", "node: "+b.Node+" is not a node of cache "+name))
			return
		}
	}
	v := s.c.Prober.Beat(r.Context(), c, n, b)
	reply := regapi.HeartbeatReply{Healthy: v.Up, Reason: v.Reason}
	if v.Up {
		for _, h := range s.mail.take(r.Context(), health.Key{Cache: c.Name, Node: n.URL}, b.Interval()) {
			reply.Hints = append(reply.Hints, *h)
		}
		if r.Context().Err() != nil {
			// The node went away while its beat was held: its
			// connection closed (the process died, or it is stopping).
			// Down now, not two beats later.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), writeTimeout)
			s.c.Prober.BeatLost(ctx, c, n)
			cancel()
			return
		}
	}
	f.Result = "beat"
	writeJSON(w, http.StatusOK, reply)
}

// mailbox keeps the prefetch hints for nodes in heartbeat mode until
// their next beat takes them. It is safe for concurrent use.
type mailbox struct {
	// mu guards boxes.
	mu    sync.Mutex
	boxes map[health.Key]*box
}

type box struct {
	hints []*regapi.PrefetchHint
	wake  chan struct{} // a hint arrived (capacity 1)
}

func (m *mailbox) boxLocked(k health.Key) *box {
	if m.boxes == nil {
		m.boxes = map[health.Key]*box{}
	}
	b := m.boxes[k]
	if b == nil {
		b = &box{wake: make(chan struct{}, 1)}
		m.boxes[k] = b
	}
	return b
}

// put leaves a hint for k, waking a beat held for it.
func (m *mailbox) put(k health.Key, h *regapi.PrefetchHint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxLocked(k)
	b.hints = append(b.hints, h)
	if len(b.hints) > maxWaitingHints {
		b.hints = b.hints[len(b.hints)-maxWaitingHints:]
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take returns the hints for k, waiting up to wait (or ctx's end) for one
// when there are none.
func (m *mailbox) take(ctx context.Context, k health.Key, wait time.Duration) []*regapi.PrefetchHint {
	m.mu.Lock()
	b := m.boxLocked(k)
	if len(b.hints) == 0 {
		m.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-b.wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		m.mu.Lock()
	}
	out := b.hints
	b.hints = nil
	m.mu.Unlock()
	return out
}
