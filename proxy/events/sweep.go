package events

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// gcInterval is how often expired de-duplication records are removed.
const gcInterval = time.Minute

func (d *Deduper) pokeCh() chan struct{} {
	d.pokeOnce.Do(func() { d.poke = make(chan struct{}, 1) })
	return d.poke
}

func (d *Deduper) wake() {
	select {
	case d.pokeCh() <- struct{}{}:
	default:
	}
}

// Run records the registry reports whose grace has passed (on any
// replica; the transactions are conditional, so each is recorded once)
// and removes expired records, until ctx ends.
func (d *Deduper) Run(ctx context.Context) {
	poke := d.pokeCh()
	lastGC := time.Time{}
	for {
		next := d.sweep(ctx)
		if time.Since(lastGC) >= gcInterval {
			d.gc(ctx)
			lastGC = time.Now()
		}
		wait := gcInterval
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(d.now()), time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// sweep records every held report that is due, and returns when the next
// one is (zero: none).
func (d *Deduper) sweep(ctx context.Context) time.Time {
	kvs, err := d.Store.List(ctx, heldPrefix, "", 0)
	if err != nil {
		if ctx.Err() == nil {
			d.log().Warn("events: listing held registry reports", zap.Error(err))
		}
		return d.now().Add(time.Second)
	}
	now := d.now()
	for _, kv := range kvs {
		due, ok := parseHeldKey(kv.Key)
		if !ok {
			d.Store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key))
			continue
		}
		if due.After(now) {
			return due
		}
		if err := d.release(ctx, string(kv.Value), kv); err != nil && ctx.Err() == nil {
			d.log().Warn("events: recording a held registry report", zap.Error(err))
			return d.now().Add(time.Second)
		}
	}
	return time.Time{}
}

// release records the due held groups of one slot.
func (d *Deduper) release(ctx context.Context, key string, index state.KV) error {
	for attempt := 0; attempt < 10; attempt++ {
		s, rev, err := d.readSlot(ctx, key)
		if err != nil {
			return err
		}
		now := d.now()
		var due, kept []heldGroup
		for _, g := range s.Held {
			if !g.Due.After(now) || g.IndexKey == index.Key {
				due = append(due, g)
			} else {
				kept = append(kept, g)
			}
		}
		if len(due) == 0 {
			// The origin's report took it: only the index is left.
			_, err := d.Store.Txn(ctx, []state.Cond{{Key: index.Key, Rev: index.Rev}}, state.Delete(index.Key))
			if errors.Is(err, state.ErrConflict) {
				err = nil
			}
			return err
		}
		s.Held = kept
		conds := []state.Cond{{Key: key, Rev: rev}}
		op, err := slotOp(key, s, now)
		if err != nil {
			return err
		}
		ops := []state.Op{op}
		for _, g := range due {
			ops = append(ops, state.Delete(g.IndexKey))
			c, o, err := d.emitOps(ctx, g.Occ, g.Events)
			if err != nil {
				return err
			}
			conds, ops = append(conds, c...), append(ops, o...)
		}
		sortOps(ops)
		_, err = d.Store.Txn(ctx, conds, ops...)
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		return err
	}
	return errors.New("events: a held report kept changing under the sweeper")
}

// gc removes expired origin counts and notification ids.
func (d *Deduper) gc(ctx context.Context) {
	now := d.now()
	if kvs, err := d.Store.List(ctx, slotPrefix, "", 0); err == nil {
		for _, kv := range kvs {
			if s, err := decodeSlot(kv.Value); err != nil || s.empty(now) {
				d.Store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key))
			}
		}
	}
	if kvs, err := d.Store.List(ctx, notifPrefix, "", 0); err == nil {
		for _, kv := range kvs {
			var until time.Time
			if json.Unmarshal(kv.Value, &until) != nil || until.Before(now) {
				d.Store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key))
			}
		}
	}
}
