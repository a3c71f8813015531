package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Prefix is where the verdicts are kept in the state store: one key per
// node, Prefix + cache + "/" + the node URL query-escaped.
const Prefix = "health/"

// record is a verdict as stored, with the node it is about.
type record struct {
	Cache string `json:"cache"`
	Node  string `json:"node"`
	Verdict
}

// Board holds the verdicts every origin replica shares: a state.View of
// the store's records, written with conditional transactions. It is safe
// for concurrent use. Without a Store the verdicts live in this process
// only (a single origin, tests).
type Board struct {
	// Store is the origin's state store; nil keeps verdicts in memory.
	Store state.Store
	// Logger receives broken watches and undecodable records.
	Logger *zap.Logger

	once sync.Once
	view *state.View[record]
	// mu orders local-only updates (Store nil).
	mu  sync.Mutex
	rev atomic.Int64
}

func (b *Board) init() {
	b.once.Do(func() {
		b.view = &state.View[record]{Store: b.Store, Prefix: Prefix, Logger: b.Logger,
			Decode: func(_ string, v []byte) (record, error) {
				var r record
				err := json.Unmarshal(v, &r)
				return r, err
			}}
	})
}

func storeKey(k Key) string { return Prefix + k.Cache + "/" + url.QueryEscape(k.Node) }

// Run keeps the board current with the store until ctx ends (nothing to
// do without a Store). It returns ctx's error.
func (b *Board) Run(ctx context.Context) error {
	b.init()
	if b.Store == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.view.Run(ctx)
}

// Get returns k's verdict, and whether there is one.
func (b *Board) Get(k Key) (Verdict, bool) {
	b.init()
	r, ok := b.view.Get(storeKey(k))
	return r.Verdict, ok
}

// Nodes returns the verdicts of a cache's nodes, by node URL.
func (b *Board) Nodes(cache string) map[string]Verdict {
	b.init()
	out := map[string]Verdict{}
	for _, r := range b.view.All() {
		if r.Cache == cache {
			out[r.Node] = r.Verdict
		}
	}
	return out
}

// Update changes k's verdict: decide gets the current one (ok false when
// there is none) and returns the new one and whether to write it. The
// write is conditional on the verdict read, and decide is asked again
// when another replica wrote in between, so a change is written once. It
// returns the verdict now stored and whether this call wrote it.
func (b *Board) Update(ctx context.Context, k Key, decide func(cur Verdict, ok bool) (Verdict, bool)) (Verdict, bool, error) {
	b.init()
	key := storeKey(k)
	if b.Store == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		cur, ok := b.view.Get(key)
		next, write := decide(cur.Verdict, ok)
		if !write {
			return cur.Verdict, false, nil
		}
		v, _ := json.Marshal(record{Cache: k.Cache, Node: k.Node, Verdict: next})
		b.view.Observe(key, v, b.rev.Add(1))
		return next, true, nil
	}
	for range 5 {
		var cur record
		var rev int64
		kv, err := b.Store.Get(ctx, key)
		switch {
		case err == nil:
			if json.Unmarshal(kv.Value, &cur) != nil {
				cur = record{}
			}
			rev = kv.Rev
		case !errors.Is(err, state.ErrNotFound):
			return Verdict{}, false, fmt.Errorf("health: read %s: %w", key, err)
		}
		next, write := decide(cur.Verdict, rev != 0)
		if !write {
			b.view.Observe(key, kv.Value, rev)
			return cur.Verdict, false, nil
		}
		v, err := json.Marshal(record{Cache: k.Cache, Node: k.Node, Verdict: next})
		if err != nil {
			return Verdict{}, false, err
		}
		wrev, err := b.Store.Txn(ctx, []state.Cond{{Key: key, Rev: rev}}, state.Put(key, v))
		if errors.Is(err, state.ErrConflict) {
			continue
		}
		if err != nil {
			return Verdict{}, false, fmt.Errorf("health: write %s: %w", key, err)
		}
		b.view.Observe(key, v, wrev)
		return next, true, nil
	}
	return Verdict{}, false, fmt.Errorf("health: write %s: %w", key, state.ErrConflict)
}

// Forget removes the verdicts of a cache's nodes (a cache removed).
func (b *Board) Forget(ctx context.Context, cache string) error {
	b.init()
	prefix := Prefix + cache + "/"
	if b.Store == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, r := range b.view.All() {
			if r.Cache == cache {
				b.view.ObserveDelete(storeKey(Key{r.Cache, r.Node}), b.rev.Add(1))
			}
		}
		return nil
	}
	kvs, err := b.Store.List(ctx, prefix, "", 0)
	if err != nil {
		return fmt.Errorf("health: forget %s: %w", cache, err)
	}
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, prefix) {
			continue
		}
		rev, err := b.Store.Txn(ctx, nil, state.Delete(kv.Key))
		if err != nil {
			return fmt.Errorf("health: forget %s: %w", cache, err)
		}
		b.view.ObserveDelete(kv.Key, rev)
	}
	return nil
}
