package events

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Config configures a Service.
type Config struct {
	// Store is the origin's state store (required).
	Store state.Store
	// Delivery configures the deliveries (Guard is required).
	Delivery DeliveryConfig
	// Window and Grace configure the de-duplication (see Deduper).
	Window, Grace time.Duration
	// Host is the registry host clients use, for imageName.
	Host    string
	Logger  *zap.Logger
	Metrics *Metrics
}

// Service is the events machinery of one origin replica: the outbox, the
// subscriptions, the de-duplication of registry reports and the
// deliveries. Run it; build its HTTP faces with API and Receiver.
type Service struct {
	Outbox        *Outbox
	Subscriptions *Subscriptions
	Deduper       *Deduper
	Dispatcher    *Dispatcher
	host          string
	log           *zap.Logger
	metrics       *Metrics
}

// NewService returns a service on c.Store.
func NewService(c Config) (*Service, error) {
	if c.Store == nil {
		return nil, errors.New("events: a store is required")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	c.Delivery.Logger, c.Delivery.Metrics = c.Logger, c.Metrics
	s := &Service{Outbox: &Outbox{Store: c.Store}, host: c.Host, log: c.Logger, metrics: c.Metrics}
	s.Subscriptions = NewSubscriptions(c.Store, c.Logger)
	s.Deduper = &Deduper{Store: c.Store, Outbox: s.Outbox, Window: c.Window, Grace: c.Grace, Host: c.Host, Logger: c.Logger, Metrics: c.Metrics}
	var err error
	if s.Dispatcher, err = NewDispatcher(c.Store, s.Subscriptions, c.Delivery); err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs everything until ctx ends, then waits for it all to stop.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){s.Subscriptions.Run, s.Deduper.Run, s.Dispatcher.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx)
		}()
	}
	wg.Wait()
}

// Wants reports whether an active webhook subscribes to t.
func (s *Service) Wants(t Type) bool { return s.Subscriptions.Wants(t) }

// Subscribed reports whether any webhook, active or not, subscribes to t
// (Subscriptions.Subscribed).
func (s *Service) Subscribed(t Type) bool { return s.Subscriptions.Subscribed(t) }

// API returns the webhooks API handler.
func (s *Service) API(id Identifier, auth Authority) *API {
	return &API{Subscriptions: s.Subscriptions, Identifier: id, Authority: auth, Guard: s.Dispatcher.cfg.Guard,
		Host: s.host, Timeout: s.Dispatcher.cfg.Timeout, Logger: s.log}
}

// Receiver returns the handler of the registry's notifications, checking
// secret; describer (optional) fills in platforms; ownUserAgent marks the
// origin's own look-ups, whose pull notifications are not events.
func (s *Service) Receiver(secret string, describer Describer, ownUserAgent string) *Receiver {
	return &Receiver{Secret: secret, Deduper: s.Deduper, Host: s.host, Wants: s.Wants, Describer: describer,
		IgnoreUserAgent: ownUserAgent, Logger: s.log, Metrics: s.metrics}
}
