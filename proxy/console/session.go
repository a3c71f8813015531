package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Cookie names. The session cookie holds the session's id; the sign-in
// cookie the sign-in form's CSRF token (before there is a session).
const (
	sessionCookie = "dtrcache_console"
	signInCookie  = "dtrcache_console_signin"
)

// sessionPrefix keys the sessions in the state store:
// console/sessions/<hex SHA-256 of the id> → session.
const sessionPrefix = "console/sessions/"

// session is a signed-in browser, as stored.
type session struct {
	User string `json:"user"`
	// CSRF is the token every form of this session carries.
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	// Seen is the last request (updated at most every touchEvery).
	Seen time.Time `json:"seen"`

	key string // the store key (not stored)
}

// sessions keeps sessions in the state store, so that every origin
// replica serves them and signing out ends them everywhere.
type sessions struct {
	store     state.Store
	idle, max time.Duration
	now       func() time.Time
}

// storeTimeout bounds one session read or write.
const storeTimeout = 5 * time.Second

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand: it panics rather)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return sessionPrefix + hex.EncodeToString(sum[:])
}

// create stores a new session for user and returns its id.
func (ss *sessions) create(ctx context.Context, user string) (string, *session, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	id := randomToken()
	now := ss.now().UTC()
	s := &session{User: user, CSRF: randomToken(), Created: now, Seen: now, key: sessionKey(id)}
	op, err := state.PutJSON(s.key, s)
	if err != nil {
		return "", nil, err
	}
	if _, err := ss.store.Txn(ctx, []state.Cond{{Key: s.key, Rev: 0}}, op); err != nil {
		return "", nil, fmt.Errorf("console: store the session: %w", err)
	}
	return id, s, nil
}

// expired reports whether s has ended at now, and why.
func (ss *sessions) expired(s *session, now time.Time) (bool, string) {
	switch {
	case now.Sub(s.Seen) >= ss.idle:
		return true, "idle for " + ss.idle.String()
	case now.Sub(s.Created) >= ss.max:
		return true, "older than " + ss.max.String()
	}
	return false, ""
}

// touchEvery is how stale Seen may get before a request writes it again.
func (ss *sessions) touchEvery() time.Duration {
	return min(ss.idle/10, time.Minute)
}

// current returns the live session of r's cookie, refreshing its idle
// time; an expired one is removed.
func (ss *sessions) current(r *http.Request) (*session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	key := sessionKey(c.Value)
	kv, err := ss.store.Get(ctx, key)
	if err != nil {
		return nil, false
	}
	var s session
	if json.Unmarshal(kv.Value, &s) != nil {
		return nil, false
	}
	s.key = key
	now := ss.now().UTC()
	if gone, _ := ss.expired(&s, now); gone {
		ss.store.Txn(ctx, []state.Cond{{Key: key, Rev: kv.Rev}}, state.Delete(key))
		return nil, false
	}
	if now.Sub(s.Seen) >= ss.touchEvery() {
		s.Seen = now
		if op, err := state.PutJSON(key, &s); err == nil {
			// Conditional: a sign-out in between wins.
			ss.store.Txn(ctx, []state.Cond{{Key: key, Rev: kv.Rev}}, op)
		}
	}
	return &s, true
}

// end removes a session.
func (ss *sessions) end(ctx context.Context, s *session) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, err := ss.store.Txn(ctx, nil, state.Delete(s.key))
	return err
}

// sweepBatch bounds the sessions one sweep step reads.
const sweepBatch = 500

// sweep removes the expired sessions and returns how many.
func (ss *sessions) sweep(ctx context.Context) (int, error) {
	removed, after := 0, ""
	for {
		lctx, cancel := context.WithTimeout(ctx, storeTimeout)
		kvs, err := ss.store.List(lctx, sessionPrefix, after, sweepBatch)
		cancel()
		if err != nil {
			return removed, err
		}
		now := ss.now().UTC()
		for _, kv := range kvs {
			var s session
			gone := json.Unmarshal(kv.Value, &s) != nil
			if !gone {
				gone, _ = ss.expired(&s, now)
			}
			if gone {
				dctx, cancel := context.WithTimeout(ctx, storeTimeout)
				_, err := ss.store.Txn(dctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key))
				cancel()
				if err == nil {
					removed++
				} else if !errors.Is(err, state.ErrConflict) {
					return removed, err
				}
			}
		}
		if len(kvs) < sweepBatch {
			return removed, nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// sweepEvery sweeps until ctx ends.
func (ss *sessions) sweepEvery(ctx context.Context, every time.Duration, log *zap.Logger) {
	every = max(every, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := ss.sweep(ctx); err != nil && ctx.Err() == nil {
			log.Warn("sweeping console sessions", zap.Error(err))
		} else if n > 0 {
			log.Debug("console sessions expired", zap.Int("removed", n))
		}
	}
}

// setCookie sets a cookie of the console: HttpOnly, SameSite=Strict,
// path /console/, Secure under TLS (or when configured). maxAge < 0
// deletes it; 0 makes a browser-session cookie.
func (con *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || con.c.SecureCookies,
	})
}
