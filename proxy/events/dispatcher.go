package events

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// DeliveryConfig configures a Dispatcher. Zero values mean the defaults
// in brackets.
type DeliveryConfig struct {
	// Guard dials the endpoints (required).
	Guard Guard
	// Timeout bounds one attempt [10s].
	Timeout time.Duration
	// MaxAttempts failed attempts in a row at one event make the webhook
	// inactive [20]; so does failing for MaxFailureTime [1h].
	MaxAttempts    int
	MaxFailureTime time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts, which
	// doubles from the first to the last, with jitter [1s, 5m]. A
	// Retry-After answer is honoured up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// Retention keeps delivered events this long after their creation
	// [1h]; MaxRetention drops every event this old, delivered or not
	// (an inactive webhook re-enabled later misses them) [7 days].
	Retention, MaxRetention time.Duration
	// HistoryLimit is how many attempts each webhook's history keeps [20].
	HistoryLimit int
	// ClaimTTL is how long a dead replica's webhooks stay claimed [30s];
	// ScanInterval how often unclaimed webhooks are looked for and the
	// outbox is cleaned [10s].
	ClaimTTL, ScanInterval time.Duration
	// UserAgent of the deliveries ["dtrcache-webhook/1"].
	UserAgent string
	// Logger and Metrics (both optional).
	Logger  *zap.Logger
	Metrics *Metrics
}

func (c *DeliveryConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 10*time.Second)
	def(&c.MaxFailureTime, time.Hour)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, 5*time.Minute)
	def(&c.Retention, time.Hour)
	def(&c.MaxRetention, 7*24*time.Hour)
	def(&c.ClaimTTL, 30*time.Second)
	def(&c.ScanInterval, 10*time.Second)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 20
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = 20
	}
	if c.UserAgent == "" {
		c.UserAgent = "dtrcache-webhook/1"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Dispatcher delivers the outbox to the webhooks: on each replica it
// claims the webhooks nobody delivers to (one state.Claim per webhook, so
// one deliverer per webhook across replicas) and runs a deliverer for
// each claim it holds. It also cleans the outbox.
type Dispatcher struct {
	store state.Store
	subs  *Subscriptions
	feed  *feed
	cfg   DeliveryConfig
	log   *zap.Logger

	poke chan struct{}

	// mu guards running.
	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

// NewDispatcher returns a dispatcher for the webhooks in subs.
func NewDispatcher(store state.Store, subs *Subscriptions, cfg DeliveryConfig) (*Dispatcher, error) {
	if cfg.Guard == nil {
		return nil, errors.New("events: the dispatcher needs a guard to dial endpoints")
	}
	cfg.defaults()
	d := &Dispatcher{store: store, subs: subs, cfg: cfg, log: cfg.Logger,
		feed: newFeed(store, cfg.Logger, cfg.Metrics), poke: make(chan struct{}, 1), running: map[string]context.CancelFunc{}}
	subs.notify(d.wake)
	return d, nil
}

func (d *Dispatcher) wake() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then waits for its deliverers.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.feed.run(ctx)
	}()
	t := time.NewTicker(d.cfg.ScanInterval)
	defer t.Stop()
	lastClean := time.Time{}
	for {
		d.scan(ctx)
		if time.Since(lastClean) >= d.cfg.ScanInterval {
			d.cleanup(ctx)
			lastClean = time.Now()
		}
		select {
		case <-ctx.Done():
			d.wg.Wait()
			wg.Wait()
			return
		case <-t.C:
		case <-d.poke:
		}
	}
}

// scan starts a deliverer for every active webhook this replica can
// claim, and stops those of webhooks deleted or made inactive.
func (d *Dispatcher) scan(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	hooks := d.subs.All()
	want := make(map[string]Webhook, len(hooks))
	inactive := 0
	for _, w := range hooks {
		if _, off := d.subs.Inactive(w.ID); off {
			inactive++
			continue
		}
		want[w.ID] = w
	}
	d.cfg.Metrics.inactiveCount(inactive)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, cancel := range d.running {
		if _, ok := want[id]; !ok {
			cancel()
		}
	}
	for id, w := range want {
		if _, ok := d.running[id]; ok {
			continue
		}
		claim, err := d.store.Claim(ctx, claimPrefix+id, d.cfg.ClaimTTL)
		if errors.Is(err, state.ErrClaimed) {
			continue // another replica delivers to it
		}
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("events: claiming a webhook", zap.String("webhook", id), zap.Error(err))
			}
			continue
		}
		dctx, cancel := context.WithCancel(ctx)
		d.running[id] = cancel
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				cancel()
				claim.Release(context.WithoutCancel(ctx))
				d.mu.Lock()
				delete(d.running, id)
				n := len(d.running)
				d.mu.Unlock()
				d.cfg.Metrics.deliverers(n)
				d.wake()
			}()
			var lost sync.WaitGroup
			lost.Add(1)
			go func() {
				defer lost.Done()
				select {
				case <-claim.Lost():
					cancel()
				case <-dctx.Done():
				}
			}()
			defer func() {
				cancel()
				lost.Wait()
			}()
			d.deliverTo(dctx, w)
		}()
	}
	d.cfg.Metrics.deliverers(len(d.running))
}
