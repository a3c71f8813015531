package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// cleanupBatch bounds the deletes of one transaction.
const cleanupBatch = 256

// cleanup deletes the outbox entries every webhook has passed once they
// are older than Retention, and every entry older than MaxRetention. One
// replica at a time does it (a claim); the others skip.
func (d *Dispatcher) cleanup(ctx context.Context) {
	known, ready := d.feed.knownPos()
	if !ready || ctx.Err() != nil {
		return
	}
	claim, err := d.store.Claim(ctx, cleanupClaim, d.cfg.ClaimTTL)
	if err != nil {
		return // another replica cleans
	}
	defer claim.Release(context.WithoutCancel(ctx))
	passed, err := d.slowestCursor(ctx, known)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("events: outbox cleanup", zap.Error(err))
		}
		return
	}
	now := time.Now()
	cutoff, hard := now.Add(-d.cfg.Retention), now.Add(-d.cfg.MaxRetention)
	var ops []state.Op
	flush := func() bool {
		if len(ops) == 0 {
			return true
		}
		_, err := d.store.Txn(ctx, nil, ops...)
		ops = ops[:0]
		if err != nil && ctx.Err() == nil {
			d.log.Warn("events: outbox cleanup", zap.Error(err))
		}
		return err == nil
	}
	for _, e := range d.feed.snapshot() {
		done := !passed.less(e.pos) && e.created.Before(cutoff)
		if !done && !e.created.Before(hard) {
			continue
		}
		ops = append(ops, state.Delete(entryPrefix+e.ID))
		if len(ops) == cleanupBatch && !flush() {
			return
		}
	}
	flush()
}

// slowestCursor returns the outbox place every webhook has passed (limit
// when there are none), and deletes the state of webhooks that are gone.
func (d *Dispatcher) slowestCursor(ctx context.Context, limit pos) (pos, error) {
	hooks, err := d.store.List(ctx, hookPrefix, "", 0)
	if err != nil {
		return pos{}, err
	}
	states, err := d.store.List(ctx, hookStatePrefix, "", 0)
	if err != nil {
		return pos{}, err
	}
	cursors := make(map[string]pos, len(states))
	revs := make(map[string]int64, len(states))
	for _, kv := range states {
		id := strings.TrimPrefix(kv.Key, hookStatePrefix)
		var st deliveryState
		if json.Unmarshal(kv.Value, &st) == nil {
			cursors[id], revs[id] = st.Cursor, kv.Rev
		}
	}
	slowest := limit
	for _, kv := range hooks {
		id := strings.TrimPrefix(kv.Key, hookPrefix)
		c, ok := cursors[id]
		if !ok {
			c = pos{Rev: kv.Rev} // nothing delivered yet: it starts after its creation
		}
		delete(cursors, id)
		if c.less(slowest) {
			slowest = c
		}
	}
	for id := range cursors {
		// State without a webhook: left by a delete racing a deliverer
		// (or a webhook made since the listing: look again first).
		if _, err := d.store.Get(ctx, hookPrefix+id); errors.Is(err, state.ErrNotFound) {
			d.store.Txn(ctx, []state.Cond{{Key: hookStatePrefix + id, Rev: revs[id]}}, state.Delete(hookStatePrefix+id))
		}
	}
	return slowest, nil
}
