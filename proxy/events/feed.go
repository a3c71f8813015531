package events

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// pos is a place in the outbox: the store revision of an entry's write,
// then its event id (the entries of one transaction share a revision).
type pos struct {
	Rev int64  `json:"rev"`
	ID  string `json:"id,omitempty"`
}

func (p pos) less(q pos) bool {
	if p.Rev != q.Rev {
		return p.Rev < q.Rev
	}
	return p.ID < q.ID
}

// entry is one event of the outbox, held in memory.
type entry struct {
	pos
	typ     Type
	repo    string
	created time.Time
	body    []byte
	dead    bool // deleted from the store; dropped at the next compaction
}

// feed is every outbox entry in commit order, kept current by a watch, and
// how far that order is known to be complete.
//
// Completeness is what makes revision order safe. A watch is started
// first; then a barrier key is written, at revision B; then the entries
// are listed. Every entry committed before B is in the listing (it was
// committed before the listing began); every entry committed after the
// watch began arrives on the watch, in revision order. So after the
// listing everything up to B is known, and after each watch event
// everything up to that event. Deliverers only go up to known: an entry
// that commits later always has a higher revision than anything a
// deliverer has passed.
type feed struct {
	store   state.Store
	log     *zap.Logger
	metrics *Metrics

	// mu guards entries, index, dead, known, ready and changed.
	mu      sync.RWMutex
	entries []*entry // in pos order
	index   map[string]*entry
	dead    int
	known   pos
	ready   bool
	// changed is closed (and replaced) whenever entries or known change.
	changed chan struct{}
}

func newFeed(store state.Store, log *zap.Logger, m *Metrics) *feed {
	return &feed{store: store, log: log, metrics: m, index: map[string]*entry{}, changed: make(chan struct{})}
}

// run keeps the feed current until ctx ends.
func (f *feed) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		err := f.once(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("events: outbox watch broken; listing again", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (f *feed) once(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := f.store.Watch(wctx, outboxPrefix)
	if err != nil {
		return err
	}
	barrier, err := f.store.Txn(ctx, nil, state.Put(barrierKey, []byte(time.Now().UTC().Format(time.RFC3339Nano))))
	if err != nil {
		return err
	}
	kvs, err := f.store.List(ctx, entryPrefix, "", 0)
	if err != nil {
		return err
	}
	entries := make([]*entry, 0, len(kvs))
	for _, kv := range kvs {
		if e, ok := f.decode(kv.Key, kv.Value, kv.Rev); ok {
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].pos.less(entries[j].pos) })
	f.reset(entries, pos{Rev: barrier})
	for ev := range ch {
		f.apply(ev)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}

func (f *feed) decode(key string, value []byte, rev int64) (*entry, bool) {
	id := strings.TrimPrefix(key, entryPrefix)
	var ev Event
	if err := json.Unmarshal(value, &ev); err != nil || ev.ID != id {
		f.log.Error("events: undecodable outbox entry; skipped", zap.String("key", key), zap.Error(err))
		return nil, false
	}
	return &entry{pos: pos{Rev: rev, ID: id}, typ: ev.Type, repo: ev.Repository(), created: ev.CreatedAt, body: value}, true
}

func (f *feed) reset(entries []*entry, known pos) {
	f.mu.Lock()
	f.entries = entries
	f.index = make(map[string]*entry, len(entries))
	for _, e := range entries {
		f.index[e.ID] = e
	}
	f.dead = 0
	if f.known.less(known) {
		f.known = known
	}
	f.ready = true
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *feed) apply(ev state.Event) {
	switch {
	case ev.Key == barrierKey:
		f.advance(pos{Rev: ev.Rev})
	case !strings.HasPrefix(ev.Key, entryPrefix):
	case ev.Type == state.EventDelete:
		f.mu.Lock()
		if e, ok := f.index[strings.TrimPrefix(ev.Key, entryPrefix)]; ok {
			e.dead = true
			delete(f.index, e.ID)
			f.dead++
			f.compactLocked()
		}
		if f.known.less(pos{Rev: ev.Rev}) {
			f.known = pos{Rev: ev.Rev}
		}
		f.notifyLocked()
		f.mu.Unlock()
	default:
		e, ok := f.decode(ev.Key, ev.Value, ev.Rev)
		if !ok {
			f.advance(pos{Rev: ev.Rev})
			return
		}
		f.mu.Lock()
		if _, seen := f.index[e.ID]; !seen {
			f.insertLocked(e)
			f.metrics.emitted(e.typ)
		}
		if f.known.less(e.pos) {
			f.known = e.pos
		}
		f.notifyLocked()
		f.mu.Unlock()
	}
}

func (f *feed) advance(p pos) {
	f.mu.Lock()
	if f.known.less(p) {
		f.known = p
		f.notifyLocked()
	}
	f.mu.Unlock()
}

// insertLocked adds e in pos order (almost always at the end).
func (f *feed) insertLocked(e *entry) {
	n := len(f.entries)
	if n == 0 || f.entries[n-1].pos.less(e.pos) {
		f.entries = append(f.entries, e)
	} else {
		i := sort.Search(n, func(i int) bool { return e.pos.less(f.entries[i].pos) })
		f.entries = append(f.entries, nil)
		copy(f.entries[i+1:], f.entries[i:])
		f.entries[i] = e
		if !f.known.less(e.pos) {
			f.log.Error("events: an outbox entry arrived behind the known order; a deliverer may have passed it",
				zap.String("id", e.ID), zap.Int64("rev", e.Rev))
		}
	}
	f.index[e.ID] = e
}

// compactLocked drops deleted entries once they are half the slice.
func (f *feed) compactLocked() {
	if f.dead < 64 || f.dead*2 < len(f.entries) {
		return
	}
	live := f.entries[:0]
	for _, e := range f.entries {
		if !e.dead {
			live = append(live, e)
		}
	}
	clear(f.entries[len(live):])
	f.entries, f.dead = live, 0
}

func (f *feed) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
	f.metrics.depth(len(f.entries) - f.dead)
}

// next returns the first entry after p that is known to be in order, or
// false and a channel closed when that may have changed.
func (f *feed) next(p pos) (*entry, <-chan struct{}, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	i := sort.Search(len(f.entries), func(i int) bool { return p.less(f.entries[i].pos) })
	for ; i < len(f.entries); i++ {
		e := f.entries[i]
		if f.known.less(e.pos) {
			break
		}
		if !e.dead {
			return e, nil, true
		}
	}
	return nil, f.changed, false
}

// knownPos returns how far the order is complete, and whether the first
// listing is in.
func (f *feed) knownPos() (pos, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.known, f.ready
}

// snapshot returns the live entries up to known (for cleanup).
func (f *feed) snapshot() []*entry {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*entry, 0, len(f.entries)-f.dead)
	for _, e := range f.entries {
		if f.known.less(e.pos) {
			break
		}
		if !e.dead {
			out = append(out, e)
		}
	}
	return out
}
