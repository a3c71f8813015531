package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// Identifier tells who sent an API request; the origin's checks its own
// logins.
type Identifier interface {
	// Identify returns the user who sent r, or the error to answer with
	// (an anonymous request: a 401 with the login challenge).
	Identify(r *http.Request) (user string, err error)
}

// Authority answers the API's permission questions with the origin's own
// access rules (no second permission model).
type Authority interface {
	// CanAdmin reports whether user administers scope: "" the whole
	// registry, "ns" a namespace, "ns/repo" a repository.
	CanAdmin(user, scope string) bool
	// RepositoryExists reports whether repo exists in the registry.
	RepositoryExists(ctx context.Context, repo string) (bool, error)
}

// API serves the webhooks API in DTR's shape:
//
//	POST   /api/v0/webhooks                         subscribe {type, key, endpoint, skipTLSVerification, tlsCert}
//	GET    /api/v0/webhooks                         an admin's: all; anyone else's: their own
//	POST   /api/v0/webhooks/test                    send a sample {type, endpoint, key, …}; the receiver's answer
//	GET    /api/v0/webhooks/{id}                    one webhook
//	PATCH  /api/v0/webhooks/{id}                    {"inactive": false} re-enables, true pauses
//	DELETE /api/v0/webhooks/{id}                    unsubscribe
//	GET    /api/v0/webhooks/{id}/deliveries         the last attempts
//	GET    /api/v0/repositories/{ns}/{repo}/webhooks  a repository's
//	GET    /api/v0/repositories/{ns}/webhooks       a namespace's (DTR's path)
//	GET    /api/v0/namespaces/{ns}/webhooks         the same
//
// Who may: administrators anything; a repository's or namespace's
// administrators (Authority.CanAdmin) its webhooks.
type API struct {
	Subscriptions *Subscriptions
	Identifier    Identifier
	Authority     Authority
	// Guard checks endpoints and sends the test events.
	Guard Guard
	// Host is the registry host of the samples' imageName.
	Host string
	// Timeout bounds a test delivery [10s].
	Timeout time.Duration
	// MaxWebhooks bounds the number of webhooks [1000].
	MaxWebhooks int
	// Logger gets one audit line per change.
	Logger *zap.Logger

	once sync.Once
	mux  *http.ServeMux
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.once.Do(func() {
		m := http.NewServeMux()
		m.HandleFunc("POST /api/v0/webhooks", a.handle(a.create))
		m.HandleFunc("GET /api/v0/webhooks", a.handle(a.list))
		m.HandleFunc("POST /api/v0/webhooks/test", a.handle(a.test))
		m.HandleFunc("GET /api/v0/webhooks/{id}", a.handle(a.get))
		m.HandleFunc("PATCH /api/v0/webhooks/{id}", a.handle(a.patch))
		m.HandleFunc("DELETE /api/v0/webhooks/{id}", a.handle(a.remove))
		m.HandleFunc("GET /api/v0/webhooks/{id}/deliveries", a.handle(a.deliveries))
		m.HandleFunc("GET /api/v0/namespaces/{ns}/webhooks", a.handle(a.listNamespace))
		m.HandleFunc("GET /api/v0/repositories/{path...}", a.handle(a.listRepository))
		m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			regapi.WriteError(w, r, regapi.NewError(http.StatusNotFound, "NOT_FOUND", "unknown API endpoint"))
		})
		a.mux = m
	})
	a.mux.ServeHTTP(w, r)
}

func (a *API) log() *zap.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return zap.NewNop()
}

// handle identifies the user and writes the handler's error.
func (a *API) handle(h func(w http.ResponseWriter, r *http.Request, user string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, err := a.Identifier.Identify(r)
		if err == nil && user == "" {
			err = regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required")
		}
		if err == nil {
			err = h(w, r, user)
		}
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				err = fe.apiError()
			}
			regapi.WriteError(w, r, err)
		}
	}
}

var (
	errForbidden = regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "only an administrator of the webhook's repository or namespace")
	errNoWebhook = regapi.NewError(http.StatusNotFound, "NOT_FOUND", "no such webhook")
)

// View is a webhook as the API shows it (the secret only once, when it is
// made).
type View struct {
	ID                  string    `json:"id"`
	Type                Type      `json:"type"`
	Key                 string    `json:"key"`
	Endpoint            string    `json:"endpoint"`
	AuthorID            string    `json:"authorID"`
	CreatedAt           time.Time `json:"createdAt"`
	LastSuccessfulAt    time.Time `json:"lastSuccessfulAt"`
	Inactive            bool      `json:"inactive"`
	InactiveReason      string    `json:"inactiveReason,omitempty"`
	InactiveSince       time.Time `json:"inactiveSince,omitzero"`
	TLSCert             string    `json:"tlsCert"`
	SkipTLSVerification bool      `json:"skipTLSVerification"`
	Secret              string    `json:"secret,omitempty"`
}

func (a *API) view(ctx context.Context, w Webhook) View {
	v := View{ID: w.ID, Type: w.Type, Key: w.Key, Endpoint: w.Endpoint, AuthorID: w.AuthorID, CreatedAt: w.CreatedAt,
		TLSCert: w.TLSCert, SkipTLSVerification: w.SkipTLSVerification}
	if st, _, found, err := a.Subscriptions.deliveryState(ctx, w.ID); err == nil && found {
		v.LastSuccessfulAt = st.LastSuccessfulAt
	}
	if m, off := a.Subscriptions.Inactive(w.ID); off {
		v.Inactive, v.InactiveReason, v.InactiveSince = true, m.Reason, m.Since
	}
	return v
}

func (a *API) views(ctx context.Context, ws []Webhook) []View {
	out := make([]View, 0, len(ws))
	for _, w := range ws {
		out = append(out, a.view(ctx, w))
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a small JSON body, refusing unknown fields (the error
// names the field).
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 256<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", "invalid request body: "+err.Error(), err)
	}
	return nil
}

// authorize checks that user may subscribe to key's events of type t.
func (a *API) authorize(ctx context.Context, user string, t Type, key string) error {
	if !a.Authority.CanAdmin(user, key) {
		if key == "" {
			return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "only administrators may subscribe without a key")
		}
		return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "only an administrator of "+key+" may subscribe to its events")
	}
	if t.Scope() == ScopeRepository && strings.Contains(key, "/") {
		ok, err := a.Authority.RepositoryExists(ctx, key)
		if err != nil {
			return regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "could not check the repository", err)
		}
		if !ok {
			return &FieldError{"key", "no such repository " + key}
		}
	}
	return nil
}

func (a *API) create(w http.ResponseWriter, r *http.Request, user string) error {
	var req CreateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := CheckSubscription(req); err != nil {
		return err
	}
	if err := a.authorize(r.Context(), user, req.Type, req.Key); err != nil {
		return err
	}
	if err := checkAddress(r.Context(), a.Guard, req.Endpoint); err != nil {
		return err
	}
	max := a.MaxWebhooks
	if max <= 0 {
		max = 1000
	}
	if len(a.Subscriptions.All()) >= max {
		return regapi.NewError(http.StatusConflict, "LIMIT_EXCEEDED", "too many webhooks; delete some first")
	}
	hook, err := a.Subscriptions.Create(r.Context(), Webhook{Type: req.Type, Key: req.Key, Endpoint: req.Endpoint, AuthorID: user,
		SkipTLSVerification: req.SkipTLSVerification, TLSCert: req.TLSCert})
	if err != nil {
		return err
	}
	a.log().Info("webhook created", zap.String("user", user), zap.String("webhook", hook.ID), zap.String("type", string(hook.Type)),
		zap.String("key", hook.Key), zap.String("endpointHost", endpointHost(hook.Endpoint)))
	v := a.view(r.Context(), hook)
	v.Secret = hook.Secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request, user string) error {
	all := a.Subscriptions.All()
	if !a.Authority.CanAdmin(user, "") {
		all = slices.DeleteFunc(all, func(h Webhook) bool { return h.AuthorID != user })
	}
	writeJSON(w, http.StatusOK, a.views(r.Context(), all))
	return nil
}

func (a *API) listScope(w http.ResponseWriter, r *http.Request, user, key string) error {
	if !regapi.ValidName(key) {
		return regapi.NewError(http.StatusNotFound, "NOT_FOUND", "invalid name")
	}
	if !a.Authority.CanAdmin(user, key) {
		return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "only an administrator of "+key)
	}
	all := slices.DeleteFunc(a.Subscriptions.All(), func(h Webhook) bool { return h.Key != key })
	writeJSON(w, http.StatusOK, a.views(r.Context(), all))
	return nil
}

func (a *API) listNamespace(w http.ResponseWriter, r *http.Request, user string) error {
	ns := r.PathValue("ns")
	if strings.Contains(ns, "/") {
		return regapi.NewError(http.StatusNotFound, "NOT_FOUND", "invalid namespace")
	}
	return a.listScope(w, r, user, ns)
}

// listRepository serves /api/v0/repositories/{ns}[/{repo}]/webhooks.
func (a *API) listRepository(w http.ResponseWriter, r *http.Request, user string) error {
	name, ok := strings.CutSuffix(r.PathValue("path"), "/webhooks")
	if !ok || name == "" {
		return regapi.NewError(http.StatusNotFound, "NOT_FOUND", "unknown API endpoint")
	}
	return a.listScope(w, r, user, name)
}

// lookup returns the webhook of the request's {id}, if user may see it
// (admin, or read and its author).
func (a *API) lookup(r *http.Request, user string, read bool) (Webhook, error) {
	h, ok := a.Subscriptions.Get(r.PathValue("id"))
	if !ok {
		return Webhook{}, errNoWebhook
	}
	if !a.Authority.CanAdmin(user, h.Key) && !(read && h.AuthorID == user) {
		return Webhook{}, errForbidden
	}
	return h, nil
}

func (a *API) get(w http.ResponseWriter, r *http.Request, user string) error {
	h, err := a.lookup(r, user, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.view(r.Context(), h))
	return nil
}

func (a *API) remove(w http.ResponseWriter, r *http.Request, user string) error {
	h, err := a.lookup(r, user, false)
	if err != nil {
		return err
	}
	if err := a.Subscriptions.Delete(r.Context(), h.ID); errors.Is(err, ErrNotFound) {
		return errNoWebhook
	} else if err != nil {
		return err
	}
	a.log().Info("webhook deleted", zap.String("user", user), zap.String("webhook", h.ID))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// PatchRequest is the body of PATCH /api/v0/webhooks/{id}.
type PatchRequest struct {
	Inactive *bool `json:"inactive"`
}

func (a *API) patch(w http.ResponseWriter, r *http.Request, user string) error {
	h, err := a.lookup(r, user, false)
	if err != nil {
		return err
	}
	var req PatchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Inactive == nil {
		return &FieldError{"inactive", "required (true pauses the webhook, false re-enables it)"}
	}
	if err := a.Subscriptions.SetInactive(r.Context(), h.ID, *req.Inactive, user, "paused by "+user); errors.Is(err, ErrNotFound) {
		return errNoWebhook
	} else if err != nil {
		return err
	}
	a.log().Info("webhook changed", zap.String("user", user), zap.String("webhook", h.ID), zap.Bool("inactive", *req.Inactive))
	writeJSON(w, http.StatusOK, a.view(r.Context(), h))
	return nil
}

// Deliveries is the answer of GET /api/v0/webhooks/{id}/deliveries.
type Deliveries struct {
	WebhookID string `json:"webhookID"`
	// Attempts are the last attempts, newest first.
	Attempts []Attempt `json:"attempts"`
	// Failing, while deliveries fail: the event they are stuck at, since
	// when, how many attempts, when the next is due.
	Failing *failing `json:"failing,omitempty"`
}

func (a *API) deliveries(w http.ResponseWriter, r *http.Request, user string) error {
	h, err := a.lookup(r, user, true)
	if err != nil {
		return err
	}
	st, _, _, err := a.Subscriptions.deliveryState(r.Context(), h.ID)
	if err != nil {
		return err
	}
	out := Deliveries{WebhookID: h.ID, Attempts: make([]Attempt, 0, len(st.History)), Failing: st.Failing}
	for i := len(st.History) - 1; i >= 0; i-- {
		out.Attempts = append(out.Attempts, st.History[i])
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
