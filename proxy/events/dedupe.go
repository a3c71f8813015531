package events

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Keys of the de-duplication records.
const (
	slotPrefix     = "events/dedupe/" // events/dedupe/<hash of the operation> → slot
	heldPrefix     = "events/held/"   // events/held/<due, 20 digits>-<random> → slot key: registry reports waiting
	notifPrefix    = "events/notif/"  // events/notif/<hash of a notification id> → until (idempotent notifications)
	reposPrefix    = "events/repos/"  // events/repos/<repository>: repositories known to exist
	reposSeededKey = "events/repos-seeded"
)

// Action is what a registry operation did.
type Action string

// The actions.
const (
	ActionPush   Action = "push"
	ActionDelete Action = "delete"
	ActionPull   Action = "pull"
)

// Occurrence is one registry operation, as either source saw it: the
// origin (a request it proxied) or the registry (its notification). Two
// reports of one operation have the same Occurrence.
type Occurrence struct {
	Action     Action `json:"action"`
	Repository string `json:"repository"`
	// Tag is the tag pushed, pulled or deleted by name ("" by digest).
	Tag string `json:"tag,omitempty"`
	// Digest is the manifest's ("" for a tag delete).
	Digest string `json:"digest,omitempty"`
	// Author is who did it (the author of a REPO_EVENT it causes).
	Author string `json:"author,omitempty"`
}

func (o Occurrence) slotKey() string {
	h := sha256.Sum256([]byte(string(o.Action) + "\x00" + o.Repository + "\x00" + o.Tag + "\x00" + o.Digest))
	return slotPrefix + hex.EncodeToString(h[:20])
}

// slot is what is known of one Occurrence that is not yet matched.
type slot struct {
	// Origin counts the origin's reports not yet matched by the
	// registry's, until OriginUntil.
	Origin      int       `json:"origin,omitempty"`
	OriginUntil time.Time `json:"originUntil,omitzero"`
	// Held are the registry's reports waiting for the origin's.
	Held []heldGroup `json:"held,omitempty"`
}

func (s slot) empty(now time.Time) bool {
	return len(s.Held) == 0 && (s.Origin == 0 || s.OriginUntil.Before(now))
}

type heldGroup struct {
	Due      time.Time  `json:"due"`
	IndexKey string     `json:"indexKey"`
	Occ      Occurrence `json:"occ"`
	Events   []Event    `json:"events"`
}

// Deduper records registry operations from both sources so that each
// operation becomes its events once.
//
// The rule, for one Occurrence (action, repository, tag, digest):
//   - A report from the origin is recorded at once. If a registry report
//     of the same occurrence is waiting, that one is dropped (the
//     origin's is richer: it knows the user); otherwise the origin's
//     count goes up by one, for Window.
//   - A report from the registry whose occurrence has an origin count is
//     the same operation: the count goes down by one and nothing more is
//     recorded. Otherwise it waits Grace for the origin's report (a push
//     through the origin whose notification came first), then is recorded
//     as it is: a push made straight to the registry.
//
// Counting, not flagging, keeps a re-push of the same tag and digest
// through the origin its own event: each push adds one, each notification
// takes one. Every step is one conditional transaction, with the events'
// outbox entries in it.
type Deduper struct {
	// Store keeps the records; Outbox writes the events.
	Store  state.Store
	Outbox *Outbox
	// Window is how long an origin report waits for the registry's
	// [10m]; Grace how long a registry report waits for the origin's [5s].
	Window, Grace time.Duration
	// Host is the registry host clients use (for REPO_EVENT's imageName).
	Host    string
	Logger  *zap.Logger
	Metrics *Metrics
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	pokeOnce sync.Once
	poke     chan struct{}
	seeded   atomic.Bool
}

func (d *Deduper) window() time.Duration {
	if d.Window > 0 {
		return d.Window
	}
	return 10 * time.Minute
}

func (d *Deduper) grace() time.Duration {
	if d.Grace > 0 {
		return d.Grace
	}
	return 5 * time.Second
}

func (d *Deduper) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

func (d *Deduper) log() *zap.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return zap.NewNop()
}

func (d *Deduper) readSlot(ctx context.Context, key string) (slot, int64, error) {
	var s slot
	rev, err := state.GetJSON(ctx, d.Store, key, &s)
	if errors.Is(err, state.ErrNotFound) {
		return slot{}, 0, nil
	}
	return s, rev, err
}

// slotOp writes s, or deletes it once nothing is left in it.
func slotOp(key string, s slot, now time.Time) (state.Op, error) {
	if s.empty(now) {
		return state.Delete(key), nil
	}
	return state.PutJSON(key, s)
}

// Origin records what the origin saw, with its events (none: an operation
// the registry reports that makes no event of ours, such as a blob delete
// or the origin's own look-ups). When it returns nil the events are in
// the outbox.
func (d *Deduper) Origin(ctx context.Context, occ Occurrence, evs ...Event) error {
	key := occ.slotKey()
	for {
		s, rev, err := d.readSlot(ctx, key)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		now := d.now()
		conds := []state.Cond{{Key: key, Rev: rev}}
		var ops []state.Op
		matched := false
		if len(s.Held) > 0 {
			ops = append(ops, state.Delete(s.Held[0].IndexKey))
			s.Held = s.Held[1:]
			matched = true
		} else {
			if s.OriginUntil.Before(now) {
				s.Origin = 0
			}
			s.Origin++
			s.OriginUntil = now.Add(d.window())
		}
		op, err := slotOp(key, s, now)
		if err != nil {
			return err
		}
		ops = append(ops, op)
		if len(evs) > 0 {
			c, o, err := d.emitOps(ctx, occ, evs)
			if err != nil {
				return err
			}
			conds, ops = append(conds, c...), append(ops, o...)
		}
		if _, err := d.Store.Txn(ctx, conds, ops...); errors.Is(err, state.ErrConflict) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		} else if err != nil {
			return fmt.Errorf("events: record %s of %s: %w", occ.Action, occ.Repository, err)
		}
		if matched {
			d.Metrics.dedupe(SourceRegistry)
		}
		return nil
	}
}

// Registry records what the registry's notification id reported. build
// makes the events; it is called only when the report is not the
// origin's operation over again. A notification id seen before (the
// registry sending it again) changes nothing.
func (d *Deduper) Registry(ctx context.Context, id string, occ Occurrence, build func(context.Context) ([]Event, error)) (recorded bool, err error) {
	key := occ.slotKey()
	var built []Event
	for {
		s, rev, err := d.readSlot(ctx, key)
		if err != nil {
			return false, fmt.Errorf("events: %w", err)
		}
		now := d.now()
		conds := []state.Cond{{Key: key, Rev: rev}}
		var ops []state.Op
		if id != "" {
			nk := notifKey(id)
			if _, err := d.Store.Get(ctx, nk); err == nil {
				return false, nil // sent again
			} else if !errors.Is(err, state.ErrNotFound) {
				return false, fmt.Errorf("events: %w", err)
			}
			op, err := state.PutJSON(nk, now.Add(d.window()))
			if err != nil {
				return false, err
			}
			conds, ops = append(conds, state.Cond{Key: nk, Rev: 0}), append(ops, op)
		}
		matched := s.Origin > 0 && !s.OriginUntil.Before(now)
		if matched {
			s.Origin--
		} else {
			if built == nil {
				if built, err = build(ctx); err != nil {
					return false, err
				}
				for i := range built {
					if built[i], _, err = d.Outbox.Prepare(built[i]); err != nil {
						return false, err
					}
				}
			}
			g := heldGroup{Due: now.Add(d.grace()), Occ: occ, Events: built}
			g.IndexKey = heldKey(g.Due, built)
			s.Held = append(s.Held, g)
			ops = append(ops, state.Put(g.IndexKey, []byte(key)))
		}
		op, err := slotOp(key, s, now)
		if err != nil {
			return false, err
		}
		ops = append(ops, op)
		if _, err := d.Store.Txn(ctx, conds, ops...); errors.Is(err, state.ErrConflict) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			continue
		} else if err != nil {
			return false, fmt.Errorf("events: record a notification: %w", err)
		}
		if matched {
			d.Metrics.dedupe(SourceRegistry)
			return false, nil
		}
		d.wake()
		return true, nil
	}
}

func notifKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return notifPrefix + hex.EncodeToString(h[:16])
}

// heldKey orders held reports by when they are due, then by their first
// event's id (which grows within a process), so reports due together are
// recorded in the order they came.
func heldKey(due time.Time, evs []Event) string {
	suffix := ""
	if len(evs) > 0 {
		suffix = evs[0].ID
	} else {
		var b [8]byte
		rand.Read(b[:])
		suffix = hex.EncodeToString(b[:])
	}
	return fmt.Sprintf("%s%020d-%s", heldPrefix, due.UnixNano(), suffix)
}

// emitOps are the writes (and conditions) that put evs in the outbox,
// with a REPO_CREATED event when a push is a repository's first.
func (d *Deduper) emitOps(ctx context.Context, occ Occurrence, evs []Event) ([]state.Cond, []state.Op, error) {
	var conds []state.Cond
	if occ.Action == ActionPush {
		created, err := d.firstPush(ctx, occ.Repository)
		if err != nil {
			return nil, nil, err
		}
		if created {
			ev, err := NewRepoEvent(RepoCreated, occ.Repository, d.Host, occ.Author, d.now())
			if err != nil {
				return nil, nil, err
			}
			evs = append(append([]Event{}, evs...), ev)
			conds = append(conds, state.Cond{Key: reposPrefix + occ.Repository, Rev: 0})
		}
	}
	ops, err := d.Outbox.Ops(evs...)
	if err != nil {
		return nil, nil, err
	}
	if len(conds) > 0 {
		ops = append(ops, state.Put(reposPrefix+occ.Repository, []byte("1")))
	}
	return conds, ops, nil
}

// firstPush reports whether repo is not known to exist, once the known
// repositories were seeded (before that nobody can tell).
func (d *Deduper) firstPush(ctx context.Context, repo string) (bool, error) {
	if !d.seeded.Load() {
		if _, err := d.Store.Get(ctx, reposSeededKey); errors.Is(err, state.ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("events: %w", err)
		}
		d.seeded.Store(true)
	}
	_, err := d.Store.Get(ctx, reposPrefix+repo)
	if errors.Is(err, state.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("events: %w", err)
	}
	return false, nil
}

// Seeded reports whether the known repositories were seeded.
func (d *Deduper) Seeded(ctx context.Context) (bool, error) {
	_, err := d.Store.Get(ctx, reposSeededKey)
	if errors.Is(err, state.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// SeedRepositories records names as existing (the registry's catalog when
// events are first turned on); with done, it marks the seeding finished,
// after which a push to a repository not known makes REPO_CREATED.
func (d *Deduper) SeedRepositories(ctx context.Context, names []string, done bool) error {
	for len(names) > 0 {
		n := min(len(names), cleanupBatch)
		ops := make([]state.Op, 0, n)
		for _, name := range names[:n] {
			ops = append(ops, state.Put(reposPrefix+name, []byte("1")))
		}
		if _, err := d.Store.Txn(ctx, nil, ops...); err != nil {
			return fmt.Errorf("events: seed repositories: %w", err)
		}
		names = names[n:]
	}
	if done {
		if _, err := d.Store.Txn(ctx, nil, state.Put(reposSeededKey, []byte(time.Now().UTC().Format(time.RFC3339)))); err != nil {
			return fmt.Errorf("events: seed repositories: %w", err)
		}
	}
	return nil
}

// RepoDeleted records the registry's report that a repository was deleted
// (notification id, as for Registry).
func (d *Deduper) RepoDeleted(ctx context.Context, id, repo, author string, at time.Time) error {
	ev, err := NewRepoEvent(RepoDeleted, repo, d.Host, author, at)
	if err != nil {
		return err
	}
	ops, err := d.Outbox.Ops(ev)
	if err != nil {
		return err
	}
	ops = append(ops, state.Delete(reposPrefix+repo))
	var conds []state.Cond
	if id != "" {
		nk := notifKey(id)
		op, err := state.PutJSON(nk, d.now().Add(d.window()))
		if err != nil {
			return err
		}
		conds, ops = []state.Cond{{Key: nk, Rev: 0}}, append(ops, op)
	}
	if _, err := d.Store.Txn(ctx, conds, ops...); errors.Is(err, state.ErrConflict) {
		return nil // sent again
	} else if err != nil {
		return fmt.Errorf("events: record a repository delete: %w", err)
	}
	return nil
}

// parseHeldKey returns the due time of a held index key.
func parseHeldKey(key string) (time.Time, bool) {
	rest := key[len(heldPrefix):]
	if len(rest) < 20 {
		return time.Time{}, false
	}
	var ns int64
	if _, err := fmt.Sscanf(rest[:20], "%d", &ns); err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func decodeSlot(b []byte) (slot, error) {
	var s slot
	err := json.Unmarshal(b, &s)
	return s, err
}
