package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// Keys in the state store.
const (
	jobPrefix    = "jobs/"      // jobs/<id> → Job
	openPrefix   = "jobopen/"   // jobopen/<id> → "waiting" | "running" | "cancel": the open jobs
	activePrefix = "jobactive/" // jobactive/<key> → id of the key's open job
	claimPrefix  = "jobclaim/"  // jobclaim/<id>: the runner's claim
)

// Values of open index entries.
const (
	openWaiting = "waiting"
	openRunning = "running"
	openCancel  = "cancel" // running, asked to stop
)

// Errors of the queue.
var (
	ErrNotFound = errors.New("jobs: no such job")
	// ErrFinished: the job has already ended.
	ErrFinished = errors.New("jobs: job has already finished")
)

// Spec describes a job to enqueue.
type Spec struct {
	Action   string
	PolicyID string
	// Key, if set, allows one open job per key (see the package doc).
	Key    string
	Params any
	// MaxAttempts bounds the runs for transient failures (0: the
	// queue's default).
	MaxAttempts int
	// NotBefore delays the first run.
	NotBefore time.Time
}

// Hook returns writes to make in the same transaction as a job's
// transition from old to new (old is nil for a new job): events for the
// webhook outbox, so an event exists exactly when its transition does.
type Hook func(old *Job, new Job) []state.Op

// Queue stores jobs. It is safe for concurrent use by any number of
// goroutines and origin replicas sharing the store.
type Queue struct {
	// Store holds the jobs.
	Store state.Store
	// MaxAttempts is the default bound of runs (0: 10).
	MaxAttempts int
	// Hook, if set, adds writes to every transition.
	Hook Hook
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// idMu guards lastMS and seq, which order the ids made in one
	// millisecond.
	idMu   sync.Mutex
	lastMS int64
	seq    uint16
}

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now().UTC()
	}
	return time.Now().UTC()
}

// newID returns an id that sorts by creation time: the millisecond, a
// sequence number that orders the ids this queue makes within one
// millisecond, and random bytes that keep replicas' ids apart.
func (q *Queue) newID(t time.Time) string {
	ms := t.UnixMilli()
	q.idMu.Lock()
	if ms <= q.lastMS {
		ms = q.lastMS
		q.seq++
	} else {
		q.lastMS, q.seq = ms, 0
	}
	seq := q.seq
	q.idMu.Unlock()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%012x-%04x%s", ms, seq, hex.EncodeToString(b[:]))
}

// Enqueue creates a job for spec, or, when spec.Key already has an open
// job, returns that job: unchanged if it is waiting, marked for a
// follow-up run if it is running. created says which.
func (q *Queue) Enqueue(ctx context.Context, spec Spec) (job Job, created bool, err error) {
	params, err := json.Marshal(spec.Params)
	if err != nil {
		return Job{}, false, fmt.Errorf("jobs: encode parameters: %w", err)
	}
	for {
		if spec.Key != "" {
			existing, found, err := q.openFor(ctx, spec.Key)
			if err != nil {
				return Job{}, false, err
			}
			if found {
				if existing.State == Running && !existing.FollowUp {
					j, err := q.transition(ctx, existing.ID, func(j *Job) error {
						if j.State != Running {
							return errRetry
						}
						j.FollowUp = true
						j.logf(q.now(), "info", "triggered again while running: one follow-up run queued")
						return nil
					})
					if errors.Is(err, errRetry) {
						continue
					}
					return j, false, err
				}
				return existing, false, nil
			}
		}
		now := q.now()
		j := Job{
			ID: q.newID(now), Action: spec.Action, PolicyID: spec.PolicyID, Key: spec.Key, Params: params,
			State: Waiting, MaxAttempts: spec.MaxAttempts, CreatedAt: now, ScheduledAt: now, UpdatedAt: now,
		}
		if j.MaxAttempts <= 0 {
			j.MaxAttempts = q.maxAttempts()
		}
		if spec.NotBefore.After(now) {
			j.ScheduledAt = spec.NotBefore.UTC()
		}
		j.logf(now, "info", "created")
		conds, ops, err := q.createOps(j, nil)
		if err != nil {
			return Job{}, false, err
		}
		if _, err := q.Store.Txn(ctx, conds, ops...); errors.Is(err, state.ErrConflict) {
			continue // another trigger of the same key won: look again
		} else if err != nil {
			return Job{}, false, fmt.Errorf("jobs: enqueue: %w", err)
		}
		return j, true, nil
	}
}

func (q *Queue) maxAttempts() int {
	if q.MaxAttempts > 0 {
		return q.MaxAttempts
	}
	return 10
}

// errRetry aborts a transition whose precondition no longer holds, so the
// caller looks again.
var errRetry = errors.New("jobs: state changed; look again")

// createOps are the writes that create j (and take its key).
func (q *Queue) createOps(j Job, old *Job) ([]state.Cond, []state.Op, error) {
	op, err := state.PutJSON(jobPrefix+j.ID, j)
	if err != nil {
		return nil, nil, err
	}
	conds := []state.Cond{{Key: jobPrefix + j.ID, Rev: 0}}
	ops := []state.Op{op, state.Put(openPrefix+j.ID, []byte(openWaiting))}
	if j.Key != "" && old == nil {
		conds = append(conds, state.Cond{Key: activePrefix + j.Key, Rev: 0})
	}
	if j.Key != "" {
		ops = append(ops, state.Put(activePrefix+j.Key, []byte(j.ID)))
	}
	if q.Hook != nil {
		ops = append(ops, q.Hook(nil, j)...)
	}
	return conds, ops, nil
}

// openFor returns the open job of key.
func (q *Queue) openFor(ctx context.Context, key string) (Job, bool, error) {
	kv, err := q.Store.Get(ctx, activePrefix+key)
	if errors.Is(err, state.ErrNotFound) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("jobs: %w", err)
	}
	j, _, err := q.get(ctx, string(kv.Value))
	if errors.Is(err, ErrNotFound) {
		return Job{}, false, nil
	}
	return j, err == nil, err
}

// Get returns one job.
func (q *Queue) Get(ctx context.Context, id string) (Job, error) {
	j, _, err := q.get(ctx, id)
	return j, err
}

func (q *Queue) get(ctx context.Context, id string) (Job, int64, error) {
	if id == "" || strings.Contains(id, "/") {
		return Job{}, 0, ErrNotFound
	}
	var j Job
	rev, err := state.GetJSON(ctx, q.Store, jobPrefix+id, &j)
	if errors.Is(err, state.ErrNotFound) {
		return Job{}, 0, ErrNotFound
	}
	if err != nil {
		return Job{}, 0, fmt.Errorf("jobs: %w", err)
	}
	return j, rev, nil
}

// transition applies fn to the stored job and writes the result together
// with the index changes its new state implies, retrying on conflicts.
// fn may return errRetry or any error to abort.
func (q *Queue) transition(ctx context.Context, id string, fn func(j *Job) error) (Job, error) {
	for {
		old, rev, err := q.get(ctx, id)
		if err != nil {
			return Job{}, err
		}
		j := old
		j.Log = append([]LogLine(nil), old.Log...)
		now := q.now()
		if err := fn(&j); err != nil {
			return old, err
		}
		j.UpdatedAt = now
		op, err := state.PutJSON(jobPrefix+id, j)
		if err != nil {
			return old, err
		}
		conds := []state.Cond{{Key: jobPrefix + id, Rev: rev}}
		ops := []state.Op{op}
		if j.State != old.State || j.State.Terminal() {
			switch {
			case j.State == Waiting:
				ops = append(ops, state.Put(openPrefix+id, []byte(openWaiting)))
			case j.State == Running && old.State != Running:
				ops = append(ops, state.Put(openPrefix+id, []byte(openRunning)))
			case j.State.Terminal() && !old.State.Terminal():
				ops = append(ops, state.Delete(openPrefix+id))
				follow, fops, fconds, err := q.followUp(j)
				if err != nil {
					return old, err
				}
				conds = append(conds, fconds...)
				ops = append(ops, fops...)
				if follow != nil {
					j.logf(now, "info", "follow-up run queued as job "+follow.ID)
					if ops[0], err = state.PutJSON(jobPrefix+id, j); err != nil {
						return old, err
					}
				}
			}
		}
		if q.Hook != nil && (j.State != old.State || j.Attempts != old.Attempts) {
			ops = append(ops, q.Hook(&old, j)...)
		}
		if _, err := q.Store.Txn(ctx, conds, ops...); errors.Is(err, state.ErrConflict) {
			if ctx.Err() != nil {
				return old, ctx.Err()
			}
			continue
		} else if err != nil {
			return old, fmt.Errorf("jobs: update %s: %w", id, err)
		}
		return j, nil
	}
}

// followUp returns the writes that end j's hold on its key: hand it to a
// new waiting job when a follow-up was asked for, else release it.
func (q *Queue) followUp(j Job) (*Job, []state.Op, []state.Cond, error) {
	if j.Key == "" {
		return nil, nil, nil, nil
	}
	if !j.FollowUp || j.State == Cancelled {
		return nil, []state.Op{state.Delete(activePrefix + j.Key)}, nil, nil
	}
	now := q.now()
	n := Job{
		ID: q.newID(now), Action: j.Action, PolicyID: j.PolicyID, Key: j.Key, Params: j.Params,
		State: Waiting, MaxAttempts: j.MaxAttempts, CreatedAt: now, ScheduledAt: now, UpdatedAt: now, FollowUpOf: j.ID,
	}
	n.logf(now, "info", "created: follow-up of job "+j.ID)
	conds, ops, err := q.createOps(n, &j)
	return &n, ops, conds, err
}

// Cancel stops a job: a waiting one ends cancelled at once, a running one
// is asked to stop (its runner ends it cancelled). ErrFinished if it has
// already ended.
func (q *Queue) Cancel(ctx context.Context, id string) (Job, error) {
	for {
		j, err := q.transition(ctx, id, func(j *Job) error {
			switch {
			case j.State.Terminal():
				return ErrFinished
			case j.State == Running:
				return errRetry // handled below, outside the record
			}
			now := q.now()
			j.State, j.EndedAt, j.FollowUp = Cancelled, now, false
			j.logf(now, "info", "cancelled while waiting")
			return nil
		})
		if !errors.Is(err, errRetry) {
			return j, err
		}
		kv, err := q.Store.Get(ctx, openPrefix+id)
		if errors.Is(err, state.ErrNotFound) {
			continue // it just ended: look again
		}
		if err != nil {
			return Job{}, fmt.Errorf("jobs: cancel %s: %w", id, err)
		}
		if string(kv.Value) != openRunning {
			if string(kv.Value) == openCancel {
				return q.Get(ctx, id)
			}
			continue
		}
		if _, err := q.Store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Put(kv.Key, []byte(openCancel))); errors.Is(err, state.ErrConflict) {
			continue
		} else if err != nil {
			return Job{}, fmt.Errorf("jobs: cancel %s: %w", id, err)
		}
		return q.Get(ctx, id)
	}
}

// Filter selects jobs for List. Zero fields select everything.
type Filter struct {
	Action   string
	PolicyID string
	States   []State
	// Since and Until bound the creation time.
	Since, Until time.Time
	// Limit bounds the answer (0: 100); jobs come newest first.
	Limit int
	// Before continues a listing: only jobs with smaller ids.
	Before string
}

func (f Filter) match(j Job) bool {
	if f.Action != "" && j.Action != f.Action {
		return false
	}
	if f.PolicyID != "" && j.PolicyID != f.PolicyID {
		return false
	}
	if len(f.States) > 0 {
		ok := false
		for _, s := range f.States {
			ok = ok || j.State == s
		}
		if !ok {
			return false
		}
	}
	if !f.Since.IsZero() && j.CreatedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && j.CreatedAt.After(f.Until) {
		return false
	}
	return f.Before == "" || j.ID < f.Before
}

// List returns the jobs f selects, newest first.
func (q *Queue) List(ctx context.Context, f Filter) ([]Job, error) {
	kvs, err := q.Store.List(ctx, jobPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	out := []Job{}
	for i := len(kvs) - 1; i >= 0 && len(out) < limit; i-- {
		var j Job
		if err := json.Unmarshal(kvs[i].Value, &j); err != nil {
			continue
		}
		if f.match(j) {
			out = append(out, j)
		}
	}
	return out, nil
}

// open returns the open index: id → value, and the jobs' ids in order.
func (q *Queue) open(ctx context.Context) (map[string]string, []string, error) {
	kvs, err := q.Store.List(ctx, openPrefix, "", 0)
	if err != nil {
		return nil, nil, err
	}
	m := make(map[string]string, len(kvs))
	ids := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		id := strings.TrimPrefix(kv.Key, openPrefix)
		m[id] = string(kv.Value)
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return m, ids, nil
}

// Prune deletes finished jobs that ended before cutoff, oldest first, at
// most limit of them, and returns how many.
func (q *Queue) Prune(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	kvs, err := q.Store.List(ctx, jobPrefix, "", 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		if n >= limit {
			break
		}
		var j Job
		if json.Unmarshal(kv.Value, &j) != nil || !j.State.Terminal() || j.EndedAt.After(cutoff) {
			continue
		}
		if _, err := q.Store.Txn(ctx, []state.Cond{{Key: kv.Key, Rev: kv.Rev}}, state.Delete(kv.Key)); err != nil && !errors.Is(err, state.ErrConflict) {
			return n, err
		}
		n++
	}
	return n, nil
}
