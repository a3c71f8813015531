package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Webhook is a subscription: events of Type about Key go to Endpoint.
type Webhook struct {
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// Key is a repository ("ns/repo"), a namespace ("ns": the repository
	// "ns" and every "ns/…"), or "" (everything of the type).
	Key      string `json:"key"`
	Endpoint string `json:"endpoint"`
	// AuthorID is the user who made the subscription.
	AuthorID  string    `json:"authorID"`
	CreatedAt time.Time `json:"createdAt"`
	// SkipTLSVerification turns off the endpoint's certificate check;
	// TLSCert (PEM) adds a CA to trust for it.
	SkipTLSVerification bool   `json:"skipTLSVerification"`
	TLSCert             string `json:"tlsCert"`
	// Secret signs the deliveries (HMAC-SHA256). It is stored, shown
	// once when the webhook is made, and never again.
	Secret string `json:"secret,omitempty"`
}

// Matches reports whether ev goes to w.
func (w Webhook) Matches(t Type, repo string) bool {
	return w.Type == t && keyMatches(w.Key, repo)
}

func keyMatches(key, repo string) bool {
	switch {
	case key == "":
		return true
	case strings.Contains(key, "/"):
		return repo == key
	}
	return repo == key || strings.HasPrefix(repo, key+"/")
}

// Attempt is one delivery attempt, as the delivery history shows it.
type Attempt struct {
	Time      time.Time `json:"time"`
	EventID   string    `json:"eventID"`
	EventType Type      `json:"eventType"`
	// Attempt counts the attempts at this event, from 1.
	Attempt int `json:"attempt"`
	// Status is the receiver's HTTP status (0: no answer).
	Status     int     `json:"status,omitempty"`
	DurationMS float64 `json:"durationMs"`
	Error      string  `json:"error,omitempty"`
	Success    bool    `json:"success"`
}

// failing is a run of failed attempts at one event.
type failing struct {
	EventID  string    `json:"eventID"`
	Since    time.Time `json:"since"`
	Attempts int       `json:"attempts"`
	// NextAt is when the next attempt is due.
	NextAt time.Time `json:"nextAt"`
}

// deliveryState is a webhook's progress, written by its deliverer (with
// a condition on its revision) and by re-enabling.
type deliveryState struct {
	// Cursor is the last outbox place the webhook has passed: delivered,
	// or not meant for it.
	Cursor           pos       `json:"cursor"`
	LastSuccessfulAt time.Time `json:"lastSuccessfulAt,omitzero"`
	Failing          *failing  `json:"failing,omitempty"`
	History          []Attempt `json:"history,omitempty"`
}

// inactiveMark is present while a webhook is inactive.
type inactiveMark struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// By is "delivery" (too many failures) or the user who paused it.
	By string `json:"by"`
}

// Errors of the subscriptions.
var (
	ErrNotFound = errors.New("events: no such webhook")
)

// Subscriptions stores webhooks, keeps them in memory (state.View) and
// says which are inactive. It is safe for concurrent use; Run keeps it
// current.
type Subscriptions struct {
	store    state.Store
	hooks    *state.View[Webhook]
	inactive *state.View[inactiveMark]

	// mu guards onChange.
	mu       sync.Mutex
	onChange []func()
}

// NewSubscriptions returns subscriptions kept in store.
func NewSubscriptions(store state.Store, log *zap.Logger) *Subscriptions {
	s := &Subscriptions{store: store}
	s.hooks = &state.View[Webhook]{Store: store, Prefix: hookPrefix, Logger: log, Decode: decodeJSON[Webhook],
		OnChange: func(string, bool) { s.changed() }}
	s.inactive = &state.View[inactiveMark]{Store: store, Prefix: inactivePrefix, Logger: log, Decode: decodeJSON[inactiveMark],
		OnChange: func(string, bool) { s.changed() }}
	return s
}

func decodeJSON[T any](_ string, b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// Run keeps the in-memory copies current until ctx ends.
func (s *Subscriptions) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{s.hooks.Run, s.inactive.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx)
		}()
	}
	wg.Wait()
}

// WaitReady waits for the first listing.
func (s *Subscriptions) WaitReady(ctx context.Context) error {
	if err := s.hooks.WaitReady(ctx); err != nil {
		return err
	}
	return s.inactive.WaitReady(ctx)
}

// notify registers fn to be called after every change.
func (s *Subscriptions) notify(fn func()) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
}

func (s *Subscriptions) changed() {
	s.mu.Lock()
	fns := append([]func(){}, s.onChange...)
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newWebhookID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create stores w (already validated) with a new id, secret and creation
// time, and returns it with its secret. Its deliveries start with the
// events committed after it.
func (s *Subscriptions) Create(ctx context.Context, w Webhook) (Webhook, error) {
	w.ID, w.Secret, w.CreatedAt = newWebhookID(), newSecret(), time.Now().UTC()
	op, err := state.PutJSON(hookPrefix+w.ID, w)
	if err != nil {
		return Webhook{}, err
	}
	rev, err := s.store.Txn(ctx, []state.Cond{{Key: op.Key, Rev: 0}}, op)
	if err != nil {
		return Webhook{}, fmt.Errorf("events: store webhook: %w", err)
	}
	s.hooks.Observe(op.Key, op.Value, rev)
	return w, nil
}

// Get returns one webhook.
func (s *Subscriptions) Get(id string) (Webhook, bool) {
	if id == "" || strings.Contains(id, "/") {
		return Webhook{}, false
	}
	return s.hooks.Get(hookPrefix + id)
}

// All returns every webhook, by id.
func (s *Subscriptions) All() []Webhook { return s.hooks.All() }

// Inactive reports whether a webhook is inactive, and why.
func (s *Subscriptions) Inactive(id string) (inactiveMark, bool) {
	return s.inactive.Get(inactivePrefix + id)
}

// Wants reports whether an active webhook subscribes to t (pulls are only
// recorded then).
func (s *Subscriptions) Wants(t Type) bool {
	for _, w := range s.hooks.All() {
		if w.Type == t {
			if _, off := s.Inactive(w.ID); !off {
				return true
			}
		}
	}
	return false
}

// Subscribed reports whether any webhook, active or inactive, subscribes
// to t: an event of type t committed now may be delivered (an inactive
// webhook, re-enabled, resumes where it stopped; a webhook made later
// starts after it).
func (s *Subscriptions) Subscribed(t Type) bool {
	for _, w := range s.hooks.All() {
		if w.Type == t {
			return true
		}
	}
	return false
}

// Delete removes a webhook and its delivery state.
func (s *Subscriptions) Delete(ctx context.Context, id string) error {
	if _, ok := s.Get(id); !ok {
		return ErrNotFound
	}
	rev, err := s.store.Txn(ctx, nil, state.Delete(hookPrefix+id), state.Delete(hookStatePrefix+id), state.Delete(inactivePrefix+id))
	if err != nil {
		return fmt.Errorf("events: delete webhook: %w", err)
	}
	s.hooks.ObserveDelete(hookPrefix+id, rev)
	s.inactive.ObserveDelete(inactivePrefix+id, rev)
	return nil
}

// SetInactive pauses (inactive) or re-enables a webhook. Re-enabling
// clears the failure count: the next attempt is due at once, at the event
// it stopped at.
func (s *Subscriptions) SetInactive(ctx context.Context, id string, inactive bool, by, reason string) error {
	if _, ok := s.Get(id); !ok {
		return ErrNotFound
	}
	if inactive {
		op, err := state.PutJSON(inactivePrefix+id, inactiveMark{Since: time.Now().UTC(), Reason: reason, By: by})
		if err != nil {
			return err
		}
		rev, err := s.store.Txn(ctx, nil, op)
		if err != nil {
			return fmt.Errorf("events: pause webhook: %w", err)
		}
		s.inactive.Observe(op.Key, op.Value, rev)
		return nil
	}
	for {
		kv, err := s.store.Get(ctx, hookStatePrefix+id)
		ops := []state.Op{state.Delete(inactivePrefix + id)}
		var conds []state.Cond
		switch {
		case err == nil:
			var st deliveryState
			if err := json.Unmarshal(kv.Value, &st); err == nil && st.Failing != nil {
				st.Failing = nil
				op, err := state.PutJSON(kv.Key, st)
				if err != nil {
					return err
				}
				ops = append(ops, op)
				conds = append(conds, state.Cond{Key: kv.Key, Rev: kv.Rev})
			}
		case !errors.Is(err, state.ErrNotFound):
			return fmt.Errorf("events: enable webhook: %w", err)
		}
		rev, err := s.store.Txn(ctx, conds, ops...)
		if errors.Is(err, state.ErrConflict) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("events: enable webhook: %w", err)
		}
		s.inactive.ObserveDelete(inactivePrefix+id, rev)
		return nil
	}
}

// deliveryState reads a webhook's delivery state (found false: none yet).
func (s *Subscriptions) deliveryState(ctx context.Context, id string) (deliveryState, int64, bool, error) {
	var st deliveryState
	rev, err := state.GetJSON(ctx, s.store, hookStatePrefix+id, &st)
	if errors.Is(err, state.ErrNotFound) {
		return st, 0, false, nil
	}
	return st, rev, err == nil, err
}
