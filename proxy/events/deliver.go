package events

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// How often a deliverer writes its cursor. After a failed attempt it
// always does, at once. After successes it does when it has nothing more
// to send, or after batchDeliveries of them or batchTime, whichever comes
// first: a burst of events costs one write per batch, not one per event,
// and a crash sends at most that batch again (with the same ids). Having
// passed only events not meant for its webhook, it waits flushDelay.
const (
	batchDeliveries = 64
	batchTime       = time.Second
	flushDelay      = 2 * time.Second
)

// deliverer sends the outbox to one webhook, in order, while it holds the
// webhook's claim.
type deliverer struct {
	d      *Dispatcher
	w      Webhook
	log    *zap.Logger
	client *endpointClient

	st      deliveryState
	rev     int64 // of the state record; 0: none yet
	hookRev int64 // of the webhook record (its creation)
	dirty   bool  // st changed since it was written
	// unwritten counts the deliveries since the last write, which was
	// at written.
	unwritten int
	written   time.Time
	// committed says whether the last write stored the state (false: it
	// met a conflict and read the state again instead).
	committed bool
}

// deliverTo runs the deliverer of w until ctx ends, w goes inactive, or
// its state disappears (the webhook was deleted).
func (d *Dispatcher) deliverTo(ctx context.Context, w Webhook) {
	log := d.log.With(zap.String("webhook", w.ID), zap.String("type", string(w.Type)), zap.String("endpointHost", endpointHost(w.Endpoint)))
	client, err := newEndpointClient(d.cfg.Guard, w.SkipTLSVerification, w.TLSCert, d.cfg.Timeout)
	if err != nil {
		log.Error("events: webhook client", zap.Error(err))
		return
	}
	defer client.close()
	dl := &deliverer{d: d, w: w, log: log, client: client}
	if !dl.load(ctx) {
		return
	}
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	skipped := 0
	for ctx.Err() == nil {
		e, changed, ok := d.feed.next(dl.st.Cursor)
		if !ok {
			if dl.unwritten > 0 {
				if !dl.write(ctx, nil) {
					return
				}
				continue
			}
			if dl.dirty {
				flush.Reset(flushDelay)
			}
			select {
			case <-ctx.Done():
			case <-changed:
			case <-flush.C:
				if dl.dirty && !dl.write(ctx, nil) {
					return
				}
			}
			continue
		}
		if !w.Matches(e.typ, e.repo) {
			dl.st.Cursor, dl.dirty = e.pos, true
			if skipped++; skipped%1024 == 0 && !dl.write(ctx, nil) {
				return
			}
			continue
		}
		if !dl.attempt(ctx, e) {
			return
		}
	}
}

// load reads the webhook's state; a new webhook starts after the
// revision that created it.
func (dl *deliverer) load(ctx context.Context) bool {
	st, rev, found, err := dl.d.subs.deliveryState(ctx, dl.w.ID)
	if err != nil {
		if ctx.Err() == nil {
			dl.log.Warn("events: reading a webhook's state", zap.Error(err))
		}
		return false
	}
	kv, err := dl.d.store.Get(ctx, hookPrefix+dl.w.ID)
	if err != nil {
		return false // deleted, or the store is unwell: the next scan tries again
	}
	// The store, not this replica's view of it, says whether the webhook
	// is inactive: the view learns of a mark a moment after it is written
	// (by the deliverer that gave up, an admin, another replica), and a
	// scan in that moment starts a deliverer.
	switch _, err := dl.d.store.Get(ctx, inactivePrefix+dl.w.ID); {
	case err == nil:
		return false
	case !errors.Is(err, state.ErrNotFound):
		if ctx.Err() == nil {
			dl.log.Warn("events: reading a webhook's inactive mark", zap.Error(err))
		}
		return false
	}
	if !found {
		st = deliveryState{Cursor: pos{Rev: kv.Rev}}
	}
	dl.st, dl.rev, dl.hookRev, dl.dirty, dl.unwritten, dl.written = st, rev, kv.Rev, false, 0, time.Now()
	return true
}

// attempt delivers e once (after the wait its previous failures set) and
// records the outcome. It returns false when the deliverer must stop.
func (dl *deliverer) attempt(ctx context.Context, e *entry) bool {
	cfg := &dl.d.cfg
	if f := dl.st.Failing; f != nil && f.EventID != e.ID {
		dl.st.Failing = nil // it failed at an event that is gone since
	}
	n := 1
	if f := dl.st.Failing; f != nil {
		n = f.Attempts + 1
		if wait := time.Until(f.NextAt); wait > 0 && !sleep(ctx, wait) {
			return false
		}
	}
	res := dl.client.send(ctx, dl.w.Endpoint, deliveryHeaders(dl.w.ID, dl.w.Secret, cfg.UserAgent, e, n), e.body)
	if ctx.Err() != nil {
		return false // stopped mid-attempt: whoever delivers next sends it again
	}
	now := time.Now().UTC()
	cfg.Metrics.delivery(res.label(), res.duration)
	a := Attempt{Time: now, EventID: e.ID, EventType: e.typ, Attempt: n, Status: res.status,
		DurationMS: float64(res.duration.Microseconds()) / 1000, Error: res.text(), Success: res.ok()}
	dl.st.History = append(dl.st.History, a)
	if over := len(dl.st.History) - cfg.HistoryLimit; over > 0 {
		dl.st.History = append(dl.st.History[:0:0], dl.st.History[over:]...)
	}
	var extra []state.Op
	giveUp := false
	if res.ok() {
		dl.st.Cursor, dl.st.LastSuccessfulAt, dl.st.Failing = e.pos, now, nil
		cfg.Metrics.delivered(e.created)
		dl.log.Debug("events: delivered", zap.String("event", e.ID), zap.Int("status", res.status), zap.Duration("duration", res.duration))
	} else {
		f := dl.st.Failing
		if f == nil {
			f = &failing{EventID: e.ID, Since: now}
			dl.st.Failing = f
		}
		f.Attempts = n
		wait := dl.d.backoff(n)
		if res.retryAfter > wait {
			wait = min(res.retryAfter, cfg.BackoffMax)
		}
		f.NextAt = now.Add(wait)
		giveUp = n >= cfg.MaxAttempts || now.Sub(f.Since) >= cfg.MaxFailureTime
		if giveUp {
			reason := fmt.Sprintf("%d failed attempts in %s at event %s; last: %s", n, now.Sub(f.Since).Round(time.Second), e.ID, res.text())
			op, err := state.PutJSON(inactivePrefix+dl.w.ID, inactiveMark{Since: now, Reason: reason, By: "delivery"})
			if err != nil {
				return false
			}
			extra = append(extra, op)
			// Re-enabled, it starts again at this event with a fresh count.
			dl.st.Failing = nil
		} else {
			dl.log.Info("events: delivery failed; will retry", zap.String("event", e.ID), zap.Int("attempt", n),
				zap.Int("status", res.status), zap.String("error", res.text()), zap.Duration("retryIn", wait))
		}
	}
	if res.ok() {
		dl.dirty = true
		if dl.unwritten++; dl.unwritten < batchDeliveries && time.Since(dl.written) < batchTime {
			return true
		}
	}
	if !dl.write(ctx, extra) {
		return false
	}
	if giveUp {
		if !dl.committed {
			return true // the state changed under it (re-enabled, say): go on from what was read
		}
		// The scan that follows must see the mark, not wait for the view's watch.
		dl.d.subs.inactive.Observe(extra[0].Key, extra[0].Value, dl.rev)
		dl.log.Warn("events: webhook marked inactive after failed deliveries; re-enable it with PATCH /api/v0/webhooks/{id} {\"inactive\":false}",
			zap.String("event", e.ID), zap.Int("attempts", n), zap.String("lastError", res.text()))
		cfg.Metrics.inactivatedOne()
		dl.d.wake()
		return false
	}
	return true
}

// write stores the state (and extra) if nobody else wrote it since it
// was read; on a conflict (re-enabled, deleted) it reads it again. A
// write the store fails otherwise (unreachable, electing a leader) is
// tried again, after the delivery backoff, for as long as the deliverer
// holds its claim (ctx): stopping would hand the webhook to a deliverer
// that starts at the last cursor written and sends again what this one
// already delivered. A failed write that did commit comes back as a
// conflict, and the state read then has its cursor. It returns false
// when the deliverer must stop.
func (dl *deliverer) write(ctx context.Context, extra []state.Op) bool {
	op, err := state.PutJSON(hookStatePrefix+dl.w.ID, dl.st)
	if err != nil {
		return false
	}
	// The webhook record never changes: its revision proves it still
	// exists, so a deleted webhook's deliverer cannot leave state behind.
	// Nor can one made inactive meanwhile: the write conflicts, and load
	// finds the mark.
	conds := []state.Cond{{Key: op.Key, Rev: dl.rev}, {Key: hookPrefix + dl.w.ID, Rev: dl.hookRev},
		{Key: inactivePrefix + dl.w.ID, Rev: 0}}
	ops := append([]state.Op{op}, extra...)
	for failures := 0; ; failures++ {
		rev, err := dl.d.store.Txn(ctx, conds, ops...)
		dl.committed = err == nil
		switch {
		case err == nil:
			if failures > 0 {
				dl.log.Info("events: webhook state written after failed writes", zap.Int("failedWrites", failures))
			}
			dl.rev, dl.dirty, dl.unwritten, dl.written = rev, false, 0, time.Now()
			return true
		case errors.Is(err, state.ErrConflict):
			if _, ok := dl.d.subs.Get(dl.w.ID); !ok {
				return false
			}
			dl.log.Info("events: webhook state changed under its deliverer; reading it again")
			return dl.load(ctx)
		case errors.Is(err, state.ErrInvalid) || ctx.Err() != nil:
			if ctx.Err() == nil {
				dl.log.Error("events: writing a webhook's state", zap.Error(err))
			}
			return false
		}
		wait := dl.d.backoff(failures + 1)
		if failures == 0 {
			dl.log.Warn("events: writing a webhook's state failed; trying again while the claim holds", zap.Error(err), zap.Duration("retryIn", wait))
		}
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// sleep waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is the wait after the nth failed attempt: BackoffMin doubled
// n-1 times, at most BackoffMax, less up to half of it at random.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.cfg.BackoffMin
	for i := 1; i < n && w < d.cfg.BackoffMax; i++ {
		w *= 2
	}
	w = min(w, d.cfg.BackoffMax)
	if half := int64(w / 2); half > 0 {
		w -= time.Duration(rand.Int64N(half))
	}
	return w
}

// endpointHost is what logs say of an endpoint: its host, never the path
// or query (they often hold a token).
func endpointHost(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(invalid)"
	}
	return u.Host
}
