package origin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/health"
	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// The prober's defaults.
const (
	// DefaultProbeInterval is the time between probe rounds (each round
	// jittered by ±10 %).
	DefaultProbeInterval = time.Second
	// DefaultProbeTimeout bounds one probe.
	DefaultProbeTimeout = health.DefaultTimeout
)

// Prober keeps the verdict of every node of every registered cache
// (package health): it probes each node's /readyz every Interval, takes
// heartbeats from nodes the origin cannot reach (Beat), and shares the
// verdicts with the other origin replicas through the state store, so
// that every replica redirects alike. A node is down at once when it
// refuses connections, says it is not ready or misses two heartbeats;
// after Fall failures of another kind (timeouts); and up again after Rise
// consecutive good checks. It is safe for concurrent use.
type Prober struct {
	// Client makes the probes (its transport trusts the caches' CAs).
	Client *http.Client
	// Interval between probe rounds; 0 means DefaultProbeInterval.
	Interval time.Duration
	// Timeout of one probe; 0 means DefaultProbeTimeout.
	Timeout time.Duration
	// Rise and Fall: consecutive good checks that bring a node back, and
	// failures (other than refused, not ready, missed heartbeats) that take
	// it down; 0 means health.DefaultRise and health.DefaultFall.
	Rise, Fall int
	// List returns the caches to probe.
	List func() ([]Cache, error)
	// Logger receives verdict changes.
	Logger *zap.Logger
	// Store shares the verdicts between origin replicas; nil means the
	// origin's state store (origin.New sets it from Config.DB), or, for a
	// prober used before, this process only.
	Store state.Store
	// Replica names this replica in the verdicts it writes ("" means
	// host:pid).
	Replica string
	// Metrics, if set, counts verdict changes.
	Metrics *health.Metrics
	// OnNodeChange, if set, is called once per change of a node's
	// verdict, on the replica that wrote the change. It must not block.
	OnNodeChange func(health.Change)
	// OnChange, if set, is called on the replica that wrote a node's
	// change when it changed whether the cache as a whole takes users
	// (any node up), and after the first verdict on a cache's node this
	// replica wrote, with the cache's health (events: CACHE_DOWN,
	// CACHE_UP, deduplicated across replicas by the event log).
	OnChange func(ctx context.Context, c Cache, h CacheHealth)

	once    sync.Once
	board   *health.Board
	tracker health.Tracker

	// mu guards last.
	mu   sync.Mutex
	last map[health.Key]health.Result // this replica's last probe per node
}

func (p *Prober) init() *health.Board {
	p.once.Do(func() {
		p.board = &health.Board{Store: p.Store, Logger: p.Logger}
		p.tracker.Rise, p.tracker.Fall = p.Rise, p.Fall
		if p.Replica == "" {
			h, _ := os.Hostname()
			p.Replica = fmt.Sprintf("%s:%d", h, os.Getpid())
		}
		if p.Logger == nil {
			p.Logger = zap.NewNop()
		}
	})
	return p.board
}

// CacheHealth is the health of a cache as a whole: up while any of its
// nodes is.
type CacheHealth struct {
	// Healthy: at least one node takes users.
	Healthy bool
	// Checked is when a node was last checked (zero: never).
	Checked time.Time
	// Reason says why an unhealthy cache is so (its first node's reason).
	Reason string
	// RTT is the shortest round trip of the last probes of its up nodes
	// (the origin's distance to it, a hint for users choosing a cache); 0
	// when none answered a probe.
	RTT time.Duration
	// Nodes is the health of each node.
	Nodes []NodeHealth
}

// NodeHealth is the verdict on one node of a cache.
type NodeHealth struct {
	// URL is the node's URL.
	URL string
	// Up: the node takes users.
	Up bool
	// Mode is how its health is learnt: probe, or heartbeat while its
	// heartbeats arrive.
	Mode health.Mode
	// Reason says why a node is down; Since when its state last changed.
	Reason string
	Since  time.Time
	// Checked is the last check seen by this replica (its own probe, or
	// the last heartbeat); RTT the round trip of this replica's probe.
	Checked time.Time
	RTT     time.Duration
	// Beat is the node's last heartbeat (heartbeat mode).
	Beat *health.Beat
}

// Nodes returns the verdict on each node of c, in c's order.
func (p *Prober) Nodes(c Cache) []NodeHealth {
	b := p.init()
	var out []NodeHealth
	for _, n := range c.Nodes() {
		k := health.Key{Cache: c.Name, Node: n.URL}
		v, ok := b.Get(k)
		nh := NodeHealth{URL: n.URL, Mode: health.ModeProbe, Reason: "not checked yet"}
		if ok {
			nh = NodeHealth{URL: n.URL, Up: v.Up, Mode: v.Mode, Reason: v.Reason, Since: v.Since, Checked: v.Checked, RTT: v.RTT, Beat: v.Beat}
			if nh.Mode == "" {
				nh.Mode = health.ModeProbe
			}
			if nh.Up {
				nh.Reason = ""
			}
		}
		if v.Beat != nil && nh.Mode == health.ModeHeartbeat {
			nh.Checked = v.Beat.At
		} else {
			p.mu.Lock()
			if r, seen := p.last[k]; seen {
				nh.Checked, nh.RTT = r.At, r.RTT
			}
			p.mu.Unlock()
		}
		out = append(out, nh)
	}
	return out
}

// Health returns the health of the cache named name, and whether any of
// its nodes was checked.
func (p *Prober) Health(name string) (CacheHealth, bool) {
	var c Cache
	if p.List != nil {
		if caches, err := p.List(); err == nil {
			for _, cc := range caches {
				if cc.Name == name {
					c = cc
				}
			}
		}
	}
	if c.Name == "" {
		return CacheHealth{}, false
	}
	return p.cacheHealth(c)
}

func (p *Prober) cacheHealth(c Cache) (CacheHealth, bool) {
	h := CacheHealth{Nodes: p.Nodes(c)}
	seen := false
	for _, n := range h.Nodes {
		seen = seen || !n.Checked.IsZero() || !n.Since.IsZero()
		if n.Checked.After(h.Checked) {
			h.Checked = n.Checked
		}
		if n.Up {
			h.Healthy = true
			if n.RTT > 0 && (h.RTT == 0 || n.RTT < h.RTT) {
				h.RTT = n.RTT
			}
		} else if h.Reason == "" {
			h.Reason = n.Reason
		}
	}
	if h.Healthy {
		h.Reason = ""
	}
	return h, seen
}

// Up reports whether any node of c takes users.
func (p *Prober) Up(c Cache) bool {
	up := p.NodeUp(c)
	for _, n := range c.Nodes() {
		if up(n) {
			return true
		}
	}
	return false
}

// Healthy reports whether any node of the cache named name takes users.
func (p *Prober) Healthy(name string) bool {
	h, _ := p.Health(name)
	return h.Healthy
}

// Status returns the health of a cache as (healthy, last check, reason).
func (p *Prober) Status(name string) (ok bool, checked time.Time, reason string) {
	h, _ := p.Health(name)
	return h.Healthy, h.Checked, h.Reason
}

// NodeUp returns which of c's nodes take users now.
func (p *Prober) NodeUp(c Cache) func(Node) bool {
	b := p.init()
	return func(n Node) bool {
		v, ok := b.Get(health.Key{Cache: c.Name, Node: n.URL})
		return ok && v.Up
	}
}

// Heartbeating returns the verdict on node n of c and whether it is in
// heartbeat mode: its beats arrive (the last one is at most two intervals
// old; the verdict's By is the replica that took it).
func (p *Prober) Heartbeating(c Cache, n Node) (health.Verdict, bool) {
	v, ok := p.init().Get(health.Key{Cache: c.Name, Node: n.URL})
	return v, ok && v.Mode == health.ModeHeartbeat && !v.Beat.Expired(time.Now())
}

// Redirected counts a redirect to node n of c: if a check then finds the
// node down, the redirects since its last good check are counted as made
// to a node already down (dtrcache_origin_redirects_to_down_total).
func (p *Prober) Redirected(c Cache, n Node) {
	p.init()
	p.tracker.Redirected(health.Key{Cache: c.Name, Node: n.URL})
}

// Probe checks every node of c now (those whose heartbeats arrive are
// not probed) and reports whether the cache takes users.
func (p *Prober) Probe(ctx context.Context, c Cache) bool {
	p.init()
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.probeNode(ctx, c, n)
		}()
	}
	wg.Wait()
	h, _ := p.cacheHealth(c)
	return h.Healthy
}

// probeNode probes node n of c now, unless its heartbeats arrive.
func (p *Prober) probeNode(ctx context.Context, c Cache, n Node) {
	k := health.Key{Cache: c.Name, Node: n.URL}
	if v, ok := p.board.Get(k); ok && v.Mode == health.ModeHeartbeat && !v.Beat.Expired(time.Now()) {
		return
	}
	r := health.Probe(ctx, p.Client, n.ProbeBase(), p.Timeout)
	p.mu.Lock()
	if p.last == nil {
		p.last = map[health.Key]health.Result{}
	}
	p.last[k] = r
	p.mu.Unlock()
	p.record(ctx, c, k, health.ModeProbe, r)
}

// watchHold is how long a node is asked to hold a watch of its readiness.
const watchHold = 15 * time.Second

// watch keeps a request open at node n's /readyz?wait= (the node answers
// when it starts draining, or after watchHold), so that a node that dies
// — its connection closed by its kernel — or starts draining is probed at
// once instead of at the next round: the failover window shrinks from up
// to an interval to a round trip. A node that does not hold the request
// (an older cache) is left to the probe rounds. It returns when ctx ends.
func (p *Prober) watch(ctx context.Context, c Cache, n Node, interval time.Duration) {
	for ctx.Err() == nil {
		start := time.Now()
		ok := p.waitReady(ctx, n.ProbeBase())
		if ctx.Err() != nil {
			return
		}
		if !ok {
			p.probeNode(ctx, c, n)
		}
		if ok && time.Since(start) >= watchHold/2 {
			continue // held as asked: watch again
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// waitReady holds one watch of base's readiness and reports whether it
// ended ready (200).
func (p *Prober) waitReady(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, watchHold+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+health.ReadyPath+"?wait="+watchHold.String(), nil)
	if err != nil {
		return false
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// watchers runs one watch per node of the caches listed, and stops the
// watches of nodes no longer listed. It is Run's, and waits for its
// watches when ctx ends.
type watchers struct {
	wg      sync.WaitGroup
	running map[string]context.CancelFunc
}

func (w *watchers) sync(ctx context.Context, p *Prober, caches []Cache, interval time.Duration) {
	if w.running == nil {
		w.running = map[string]context.CancelFunc{}
	}
	seen := map[string]bool{}
	for _, c := range caches {
		for _, n := range c.Nodes() {
			id := c.Name + " " + n.URL + " " + n.ProbeBase()
			seen[id] = true
			if w.running[id] != nil {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w.running[id] = cancel
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				p.watch(wctx, c, n, interval)
			}()
		}
	}
	for id, cancel := range w.running {
		if !seen[id] {
			cancel()
			delete(w.running, id)
		}
	}
}

func (w *watchers) stop() {
	for _, cancel := range w.running {
		cancel()
	}
	w.wg.Wait()
}

// record applies one probe of k to this replica's tracker and, when the
// local verdict changed, to the shared one.
func (p *Prober) record(ctx context.Context, c Cache, k health.Key, mode health.Mode, r health.Result) {
	up, changed, redirected := p.tracker.Observe(k, r)
	p.Metrics.Redirected(k, redirected)
	if !changed {
		// Only this replica's own transitions are written: a replica that
		// disagrees with a verdict another one wrote (a partition between
		// it and the node) does not write it back and forth.
		return
	}
	p.write(ctx, c, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
		if ok && cur.Up == up && cur.Mode == mode {
			return cur, false
		}
		if ok && cur.Mode == health.ModeHeartbeat && !cur.Beat.Expired(r.At) {
			return cur, false // its heartbeats decide
		}
		return health.Verdict{Up: up, Reason: r.Reason, Class: r.Class, Since: r.At, Checked: r.At, Mode: mode, RTT: r.RTT, By: p.Replica}, true
	}, redirected)
}

// write updates k's shared verdict with decide and reports a change.
func (p *Prober) write(ctx context.Context, c Cache, k health.Key, decide func(health.Verdict, bool) (health.Verdict, bool), redirected int64) {
	var prev health.Verdict
	var had bool
	wasUp := p.Up(c)
	next, wrote, err := p.board.Update(ctx, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
		prev, had = cur, ok
		return decide(cur, ok)
	})
	if err != nil {
		p.Logger.Warn("cache health not shared", zap.String("cache", k.Cache), zap.String("node", k.Node), zap.Error(err))
		return
	}
	p.Metrics.SetUp(k, next.Up)
	if !wrote || (had && prev.Up == next.Up) {
		return
	}
	ch := health.Change{Key: k, Up: next.Up, Reason: next.Reason, Class: next.Class, Mode: next.Mode, At: next.Since, Redirected: redirected}
	if next.Up && had {
		ch.Down = next.Since.Sub(prev.Since)
	}
	p.Metrics.Observe(ch)
	fields := []zap.Field{zap.String("cache", k.Cache), zap.String("node", k.Node), zap.String("mode", string(next.Mode)), zap.String("class", next.Class)}
	if next.Up {
		p.Logger.Info("cache node up; redirecting its users to it", append(fields, zap.Duration("was_down", ch.Down))...)
	} else {
		p.Logger.Warn("cache node down; its users pull from the origin or another node", append(fields, zap.String("reason", next.Reason), zap.Int64("redirects_since_last_good_check", redirected))...)
	}
	if p.OnNodeChange != nil {
		p.OnNodeChange(ch)
	}
	if h, _ := p.cacheHealth(c); p.OnChange != nil && (!had || h.Healthy != wasUp) {
		p.OnChange(ctx, c, h)
	}
}

// Beat records a heartbeat of node n of c: the node is in heartbeat mode
// while its beats arrive (the origin then does not probe it), up while
// they say ready (after Rise of them when it was down), and down at once
// when one says it is not ready. It returns the verdict now shared.
func (p *Prober) Beat(ctx context.Context, c Cache, n Node, beat health.Beat) health.Verdict {
	p.init()
	k := health.Key{Cache: c.Name, Node: n.URL}
	beat.At = time.Now()
	rise := p.Rise
	if rise <= 0 {
		rise = health.DefaultRise
	}
	var out health.Verdict
	p.write(ctx, c, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
		next := cur
		next.Mode, next.Beat, next.Checked, next.By, next.RTT = health.ModeHeartbeat, &beat, beat.At, p.Replica, 0
		if beat.Ready {
			next.Good = cur.Good + 1
			if !ok || cur.Up || next.Good >= rise {
				next.Up = true
			}
			if next.Up && (!ok || !cur.Up) {
				next.Class, next.Reason, next.Since = health.ClassOK, "", beat.At
			}
		} else {
			next.Good, next.Up = 0, false
			if !ok || cur.Up || cur.Class != health.ClassNotReady {
				next.Class, next.Reason, next.Since = health.ClassNotReady, "not ready: "+beat.Reason, beat.At
			}
		}
		out = next
		return next, true
	}, 0)
	if v, ok := p.board.Get(k); ok {
		out = v
	}
	return out
}

// BeatLost takes node n of c down when it is in heartbeat mode and up:
// the connection of its held beat closed before the answer (its process
// died, or it is stopping), which says more, sooner, than two missed
// beats.
func (p *Prober) BeatLost(ctx context.Context, c Cache, n Node) {
	p.init()
	k := health.Key{Cache: c.Name, Node: n.URL}
	now := time.Now()
	p.write(ctx, c, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
		if !ok || cur.Mode != health.ModeHeartbeat || !cur.Up {
			return cur, false
		}
		next := cur
		next.Up, next.Good, next.Since, next.Checked, next.By = false, 0, now, now, p.Replica
		next.Class, next.Reason = health.ClassHeartbeatMissed, "heartbeat connection closed"
		return next, true
	}, 0)
}

// expire takes down the nodes of c in heartbeat mode whose last beat is
// older than two intervals.
func (p *Prober) expire(ctx context.Context, c Cache, now time.Time) {
	for _, n := range c.Nodes() {
		k := health.Key{Cache: c.Name, Node: n.URL}
		v, ok := p.board.Get(k)
		if !ok || v.Mode != health.ModeHeartbeat || !v.Up || !v.Beat.Expired(now) {
			continue
		}
		p.write(ctx, c, k, func(cur health.Verdict, ok bool) (health.Verdict, bool) {
			if !ok || cur.Mode != health.ModeHeartbeat || !cur.Up || !cur.Beat.Expired(now) {
				return cur, false
			}
			next := cur
			next.Up, next.Good, next.Since, next.Checked, next.By = false, 0, now, now, p.Replica
			next.Class = health.ClassHeartbeatMissed
			next.Reason = fmt.Sprintf("no heartbeat for %s", now.Sub(cur.Beat.At).Round(time.Millisecond))
			return next, true
		}, 0)
	}
}

// Forget drops a removed cache's verdicts.
func (p *Prober) Forget(name string) {
	b := p.init()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := b.Forget(ctx, name); err != nil {
		p.Logger.Warn("cache health not forgotten", zap.String("cache", name), zap.Error(err))
	}
	p.mu.Lock()
	for k := range p.last {
		if k.Cache == name {
			delete(p.last, k)
			p.tracker.Forget(k)
			p.Metrics.Delete(k)
		}
	}
	p.mu.Unlock()
}

// Run keeps the shared verdicts current (with a Store), probes every
// cache each Interval (jittered by ±10 %), and holds a watch of each
// node's readiness (watch) until ctx ends.
func (p *Prober) Run(ctx context.Context) {
	b := p.init()
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Run(ctx)
	}()
	var w watchers
	defer w.stop()
	for {
		caches, err := p.List()
		if err == nil {
			w.sync(ctx, p, caches, interval)
			now := time.Now()
			for _, c := range caches {
				p.expire(ctx, c, now)
			}
			var round sync.WaitGroup
			for _, c := range caches {
				round.Add(1)
				go func() {
					defer round.Done()
					p.Probe(ctx, c)
				}()
			}
			round.Wait()
		}
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(interval))
		t := time.NewTimer(interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
