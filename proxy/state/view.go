package state

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// View is an in-memory copy of every key under a prefix, decoded, kept up
// to date by a watch: the redirect path reads caches and settings from a
// View instead of asking the store on every request, and a change made on
// one origin replica reaches the others' Views within a watch round trip.
// It is safe for concurrent use.
//
// Writers that want to read their own write at once pass it to Observe
// (the typed stores do); events are applied by revision, so an older event
// arriving later never overwrites a newer value.
type View[T any] struct {
	// Store and Prefix say what to copy.
	Store  Store
	Prefix string
	// Decode turns a stored value into T.
	Decode func(key string, value []byte) (T, error)
	// Logger receives decode errors and broken watches; nil means none.
	Logger *zap.Logger
	// OnChange, if set, is called (outside the lock) after each applied
	// change with the key and whether it now exists.
	OnChange func(key string, exists bool)

	// mu guards items, tombs and ready.
	mu    sync.RWMutex
	items map[string]viewItem[T]
	tombs map[string]int64 // key → revision of its delete, until a relist
	ready bool
	// readyCh is closed once the first list has been applied.
	readyOnce sync.Once
	readyCh   chan struct{}
}

type viewItem[T any] struct {
	v   T
	rev int64
}

func (v *View[T]) init() {
	v.readyOnce.Do(func() { v.readyCh = make(chan struct{}) })
}

// Run keeps the view current until ctx ends: watch, list, apply the
// events; when the watch breaks, again after a short pause. It returns
// ctx's error.
func (v *View[T]) Run(ctx context.Context) error {
	v.init()
	log := v.Logger
	if log == nil {
		log = zap.NewNop()
	}
	backoff := 50 * time.Millisecond
	for {
		err := v.once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("state view: watch broken; listing again", zap.String("prefix", v.Prefix), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (v *View[T]) once(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := v.Store.Watch(wctx, v.Prefix)
	if err != nil {
		return err
	}
	kvs, err := v.Store.List(ctx, v.Prefix, "", 0)
	if err != nil {
		return err
	}
	v.relist(kvs)
	for ev := range events {
		switch ev.Type {
		case EventPut:
			v.observe(ev.Key, ev.Value, ev.Rev, false)
		case EventDelete:
			v.observe(ev.Key, nil, ev.Rev, true)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}

// relist replaces the contents with a fresh listing. An entry the view
// holds with a newer revision than the listing shows (observed while the
// listing was read) is kept; the watch events that follow settle the rest.
func (v *View[T]) relist(kvs []KV) {
	fresh := make(map[string]viewItem[T], len(kvs))
	for _, kv := range kvs {
		if t, ok := v.decode(kv.Key, kv.Value); ok {
			fresh[kv.Key] = viewItem[T]{v: t, rev: kv.Rev}
		}
	}
	var changed []string
	v.mu.Lock()
	for k, old := range v.items {
		n, ok := fresh[k]
		switch {
		case ok && n.rev < old.rev:
			fresh[k] = old
		case !ok:
			changed = append(changed, k)
		}
	}
	for k, n := range fresh {
		if old, ok := v.items[k]; !ok || old.rev != n.rev {
			changed = append(changed, k)
		}
	}
	v.items = fresh
	v.tombs = map[string]int64{}
	v.ready = true
	v.mu.Unlock()
	v.init()
	select {
	case <-v.readyCh:
	default:
		close(v.readyCh)
	}
	v.notify(changed)
}

// Observe applies a write the caller made itself (rev from Txn), so that
// it reads its own write before the watch delivers it.
func (v *View[T]) Observe(key string, value []byte, rev int64) {
	v.observe(key, value, rev, false)
}

// ObserveDelete applies a delete the caller made itself.
func (v *View[T]) ObserveDelete(key string, rev int64) {
	v.observe(key, nil, rev, true)
}

func (v *View[T]) observe(key string, value []byte, rev int64, del bool) {
	if !strings.HasPrefix(key, v.Prefix) {
		return
	}
	var t T
	if !del {
		var ok bool
		if t, ok = v.decode(key, value); !ok {
			return
		}
	}
	v.mu.Lock()
	if v.items == nil {
		v.items = map[string]viewItem[T]{}
		v.tombs = map[string]int64{}
	}
	old, exists := v.items[key]
	if (exists && old.rev >= rev) || v.tombs[key] >= rev {
		v.mu.Unlock()
		return
	}
	if del {
		delete(v.items, key)
		v.tombs[key] = rev
	} else {
		v.items[key] = viewItem[T]{v: t, rev: rev}
	}
	v.mu.Unlock()
	if del && !exists {
		return
	}
	v.notify([]string{key})
}

func (v *View[T]) notify(keys []string) {
	if v.OnChange == nil {
		return
	}
	for _, k := range keys {
		v.mu.RLock()
		_, ok := v.items[k]
		v.mu.RUnlock()
		v.OnChange(k, ok)
	}
}

func (v *View[T]) decode(key string, value []byte) (T, bool) {
	t, err := v.Decode(key, value)
	if err != nil {
		if v.Logger != nil {
			v.Logger.Error("state view: undecodable value; ignored", zap.String("key", key), zap.Error(err))
		}
		return t, false
	}
	return t, true
}

// WaitReady blocks until the first listing has been applied or ctx ends.
func (v *View[T]) WaitReady(ctx context.Context) error {
	v.init()
	select {
	case <-v.readyCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready reports whether the first listing has been applied.
func (v *View[T]) Ready() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.ready
}

// Get returns the value under key (the whole key, prefix included).
func (v *View[T]) Get(key string) (T, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	it, ok := v.items[key]
	return it.v, ok
}

// All returns every value, in key order.
func (v *View[T]) All() []T {
	v.mu.RLock()
	keys := make([]string, 0, len(v.items))
	for k := range v.items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, v.items[k].v)
	}
	v.mu.RUnlock()
	return out
}
