package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
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
		k := health.Key{Cache: c.Name, Node: n.URL}
		wait := b.Interval()
		stored := s.takeStoredHints(r.Context(), k)
		if len(stored) > 0 {
			wait = 0 // answer now with what other replicas left
		}
		for _, h := range append(stored, s.mail.take(r.Context(), k, wait)...) {
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
	if len(b.hints) == 0 && wait > 0 {
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

// hintsPrefix keeps the hints for nodes in heartbeat mode that were made
// on a replica other than the one the node's beats reach:
// hints/<cache>/<node, query-escaped>/<time>-<seq> → a PrefetchHint.
const hintsPrefix = "hints/"

// maxHintAge drops stored hints no beat took in time (their tokens
// expire soon after anyway).
const maxHintAge = time.Minute

type storedHint struct {
	At   time.Time           `json:"at"`
	Hint regapi.PrefetchHint `json:"hint"`
}

func hintKeyPrefix(k health.Key) string {
	return hintsPrefix + k.Cache + "/" + url.QueryEscape(k.Node) + "/"
}

// leaveHint delivers a hint for a node in heartbeat mode: into this
// replica's mailbox when the node's last beat came here (v.By), else into
// the state store, where the replica that takes the node's next beat
// finds it (takeStoredHints).
func (s *Server) leaveHint(ctx context.Context, k health.Key, v health.Verdict, h *regapi.PrefetchHint) {
	if v.By == s.c.Prober.Replica {
		s.mail.put(k, h)
		return
	}
	key := fmt.Sprintf("%s%020d-%d", hintKeyPrefix(k), time.Now().UnixNano(), s.hintSeq.Add(1))
	op, err := state.PutJSON(key, storedHint{At: time.Now(), Hint: *h})
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		_, err = s.c.DB.Store().Txn(ctx, nil, op)
	}
	if err != nil {
		s.c.Logger.Warn("prefetch hint for a heartbeating node not stored", zap.String("cache", k.Cache), zap.String("node", k.Node), zap.Error(err))
	}
}

// takeStoredHints takes (deletes, each once across replicas) the hints
// other replicas stored for k, dropping those older than maxHintAge.
func (s *Server) takeStoredHints(ctx context.Context, k health.Key) []*regapi.PrefetchHint {
	st := s.c.DB.Store()
	kvs, err := st.List(ctx, hintKeyPrefix(k), "", 64)
	if err != nil || len(kvs) == 0 {
		return nil
	}
	var out []*regapi.PrefetchHint
	for _, kv := range kvs {
		if _, err := st.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key)); err != nil {
			continue // another replica took it
		}
		var sh storedHint
		if json.Unmarshal(kv.Value, &sh) != nil || time.Since(sh.At) > maxHintAge {
			continue
		}
		out = append(out, &sh.Hint)
	}
	return out
}
