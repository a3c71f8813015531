package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// Keys in the state store.
const (
	outboxPrefix = "events/out/"   // watched: entries and the barrier
	entryPrefix  = "events/out/e/" // events/out/e/<event id> → Event
	barrierKey   = "events/out/b"  // written by a feed to learn how far its watch has come

	hookPrefix      = "events/hooks/"     // events/hooks/<id> → Webhook (immutable)
	hookStatePrefix = "events/hookstate/" // events/hookstate/<id> → deliveryState
	inactivePrefix  = "events/inactive/"  // events/inactive/<id> → inactiveMark
	claimPrefix     = "events/claim/"     // events/claim/<id>: the deliverer's claim

	cleanupClaim = "events/claim-cleanup"
)

// Outbox writes events to the state store, where the deliverers find
// them. It is safe for concurrent use.
//
// An event exists once the transaction that writes it commits, and is
// delivered in commit order: by the store revision of its entry, never by
// its key, so a writer on another replica whose entry commits later can
// never be skipped because its key sorts first.
type Outbox struct {
	// Store holds the outbox.
	Store state.Store
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// mu guards lastMS and seq, which make the ids of one process
	// increase.
	mu     sync.Mutex
	lastMS int64
	seq    uint32
}

func (o *Outbox) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// newID returns an id that is unique (random suffix) and grows within
// this process (time in milliseconds, then a counter), so the entries of
// one transaction sort in the order they were made.
func (o *Outbox) newID(t time.Time) string {
	o.mu.Lock()
	ms := t.UnixMilli()
	if ms <= o.lastMS {
		ms = o.lastMS
		o.seq++
	} else {
		o.lastMS, o.seq = ms, 0
	}
	seq := o.seq
	o.mu.Unlock()
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%012x%06x-%s", ms, seq&0xffffff, hex.EncodeToString(b[:]))
}

// Prepare gives ev an id and a creation time if it has none, and returns
// it with its stored bytes.
func (o *Outbox) Prepare(ev Event) (Event, []byte, error) {
	if !ev.Type.Valid() {
		return ev, nil, fmt.Errorf("events: unknown event type %q", ev.Type)
	}
	if ev.CreatedAt.IsZero() {
		ev.CreatedAt = o.now()
	}
	if ev.ID == "" {
		ev.ID = o.newID(o.now())
	}
	if strings.ContainsAny(ev.ID, "/") {
		return ev, nil, fmt.Errorf("events: invalid event id %q", ev.ID)
	}
	if len(ev.Contents) == 0 {
		ev.Contents = json.RawMessage("{}")
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return ev, nil, fmt.Errorf("events: encode %s event: %w", ev.Type, err)
	}
	return ev, b, nil
}

// Ops returns the writes that put evs into the outbox, for a transaction
// of the caller's (a job's transition, a push's de-duplication record):
// the events exist exactly when that transaction commits. The writes come
// in key order, which is the order of evs; keep them in that order.
func (o *Outbox) Ops(evs ...Event) ([]state.Op, error) {
	ops := make([]state.Op, 0, len(evs))
	for _, ev := range evs {
		ev, b, err := o.Prepare(ev)
		if err != nil {
			return nil, err
		}
		ops = append(ops, state.Put(entryPrefix+ev.ID, b))
	}
	sortOps(ops)
	return ops, nil
}

// sortOps puts the outbox entries among ops in key order, in the places
// they hold, so that a watch (which reports a transaction's writes in
// their order) sees them in the order deliverers go through them.
func sortOps(ops []state.Op) {
	var at []int
	var entries []state.Op
	for i, op := range ops {
		if strings.HasPrefix(op.Key, entryPrefix) {
			at = append(at, i)
			entries = append(entries, op)
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	for n, i := range at {
		ops[i] = entries[n]
	}
}

// Emit writes evs to the outbox in one transaction and returns them with
// their ids. When it returns nil they are durable.
func (o *Outbox) Emit(ctx context.Context, evs ...Event) ([]Event, error) {
	out := make([]Event, 0, len(evs))
	ops := make([]state.Op, 0, len(evs))
	for _, ev := range evs {
		ev, b, err := o.Prepare(ev)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
		ops = append(ops, state.Put(entryPrefix+ev.ID, b))
	}
	if len(ops) == 0 {
		return out, nil
	}
	if _, err := o.Store.Txn(ctx, nil, ops...); err != nil {
		return nil, fmt.Errorf("events: write to the outbox: %w", err)
	}
	return out, nil
}
