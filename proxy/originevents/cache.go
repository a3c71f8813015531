package originevents

import (
	"context"
	"errors"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// cachePrefix keeps the last verdict recorded for each cache:
// events/caches/<name> → cacheVerdict.
const cachePrefix = "events/caches/"

type cacheVerdict struct {
	Up bool      `json:"up"`
	At time.Time `json:"at"`
}

// CacheChanged records a change of a cache's health as CACHE_DOWN or
// CACHE_UP (origin.Prober.OnChange). The verdict is kept in the state
// store and changed with a conditional write that carries the event, so
// replicas probing the same cache, and a restarted origin probing it for
// the first time, make one event per change: a cache first seen up makes
// none, one first seen down makes CACHE_DOWN.
func (w *Wiring) CacheChanged(ctx context.Context, c origin.Cache, h origin.CacheHealth) {
	key := cachePrefix + c.Name
	at := h.Checked
	if at.IsZero() {
		at = time.Now()
	}
	for range 10 {
		var v cacheVerdict
		rev, err := state.GetJSON(ctx, w.c.Store, key, &v)
		found := err == nil
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			w.log.Error("events: reading a cache's verdict", zap.String("cache", c.Name), zap.Error(err))
			return
		}
		if found && v.Up == h.Healthy {
			return // another replica recorded it, or nothing changed
		}
		put, err := state.PutJSON(key, cacheVerdict{Up: h.Healthy, At: at.UTC()})
		if err != nil {
			return
		}
		ops := []state.Op{put}
		if found || !h.Healthy {
			ev, err := events.NewCacheEvent(c.Name, c.Host, h.Healthy, h.Reason, at)
			if err != nil {
				w.log.Error("events: making a cache event", zap.Error(err))
				return
			}
			more, err := w.svc.Outbox.Ops(ev)
			if err != nil {
				w.log.Error("events: making a cache event", zap.Error(err))
				return
			}
			ops = append(ops, more...)
		}
		if _, err := w.c.Store.Txn(ctx, []state.Cond{{Key: key, Rev: rev}}, ops...); errors.Is(err, state.ErrConflict) {
			continue
		} else if err != nil {
			w.log.Error("events: recording a cache's health", zap.String("cache", c.Name), zap.Error(err))
		}
		return
	}
}
