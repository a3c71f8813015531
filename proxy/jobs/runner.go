package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// Executor does the work of one kind of job.
type Executor interface {
	// Execute runs the job until it is done, fails, or ctx ends (the job
	// was cancelled, its claim was lost, or the runner is stopping). It
	// reports through r. A nil error ends the job done.
	Execute(ctx context.Context, r *Run) error
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, r *Run) error

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, r *Run) error { return f(ctx, r) }

// Classify says whether err is worth another attempt, and how long to
// wait at least (a registry's Retry-After).
type Classify func(err error) (transient bool, retryAfter time.Duration)

// Runner works off the queue on this replica. Its zero value is not
// usable: set Queue, Executors and Classify.
type Runner struct {
	// Queue holds the jobs.
	Queue *Queue
	// Executors by job action.
	Executors map[string]Executor
	// Classify tells transient from permanent failures (nil: every
	// failure is permanent).
	Classify Classify
	// Workers bounds the jobs this replica runs at once (0: 4).
	Workers int
	// Replica names this origin replica in job records.
	Replica string
	// ClaimTTL is how long a claim outlives a replica that died (0: 15s).
	ClaimTTL time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (0: 1s
	// and 5m); the wait doubles per attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// ProgressEvery is how often a running job's progress is stored (0: 1s).
	ProgressEvery time.Duration
	// ScanEvery is how often the open jobs are listed when nothing else
	// wakes the runner (0: 1s): due retries, jobs orphaned by a replica
	// that died.
	ScanEvery time.Duration
	// Logger gets one line per state change.
	Logger *zap.Logger
	// Metrics, if set, counts transitions and run durations.
	Metrics *Metrics

	// mu guards running.
	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
	wg      sync.WaitGroup
}

// errCancelled is the cause of a run's context when the job was cancelled.
var errCancelled = errors.New("jobs: cancelled")

// errClaimLost is the cause when this replica lost the job's claim.
var errClaimLost = errors.New("jobs: claim lost")

func (r *Runner) log() *zap.Logger {
	if r.Logger == nil {
		return zap.NewNop()
	}
	return r.Logger
}

func (r *Runner) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return 4
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Run works off jobs until ctx ends, then waits for the running jobs to
// stop (they are left running in the store, claim released, and resume on
// the next start or on another replica).
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.running = map[string]context.CancelCauseFunc{}
	r.mu.Unlock()
	defer r.wg.Wait()
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watch(ctx, poke)
	}()
	t := time.NewTicker(orDefault(r.ScanEvery, time.Second))
	defer t.Stop()
	for {
		if err := r.scan(ctx, poke); err != nil && ctx.Err() == nil {
			r.log().Warn("listing open jobs", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-t.C:
		}
	}
}

// watch pokes the loop on every change of the open index and passes
// cancellations to the running jobs.
func (r *Runner) watch(ctx context.Context, poke func()) {
	for ctx.Err() == nil {
		events, err := r.Queue.Store.Watch(ctx, openPrefix)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		poke() // a change may have happened before the watch began
		for ev := range events {
			id := strings.TrimPrefix(ev.Key, openPrefix)
			if ev.Type == state.EventPut && string(ev.Value) == openCancel {
				r.mu.Lock()
				cancel := r.running[id]
				r.mu.Unlock()
				if cancel != nil {
					cancel(errCancelled)
				}
			}
			poke()
		}
	}
}

// scan starts due waiting jobs and adopts orphaned running ones while
// workers are free.
func (r *Runner) scan(ctx context.Context, poke func()) error {
	open, ids, err := r.Queue.open(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r.mu.Lock()
		_, mine := r.running[id]
		busy := len(r.running)
		r.mu.Unlock()
		if mine {
			if open[id] == openCancel {
				r.cancelRun(id, errCancelled)
			}
			continue
		}
		if busy >= r.workers() {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		r.tryStart(ctx, id, open[id], poke)
	}
	return nil
}

func (r *Runner) cancelRun(id string, cause error) {
	r.mu.Lock()
	cancel := r.running[id]
	r.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// tryStart claims a job and moves it to running; a job whose claim is held
// elsewhere is someone else's.
func (r *Runner) tryStart(ctx context.Context, id, openState string, poke func()) {
	if openState == openWaiting {
		j, err := r.Queue.Get(ctx, id)
		if err != nil || j.State != Waiting || j.ScheduledAt.After(r.Queue.now()) {
			return
		}
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	claim, err := r.Queue.Store.Claim(runCtx, claimPrefix+id, orDefault(r.ClaimTTL, 15*time.Second))
	if err != nil {
		cancel(err)
		if !errors.Is(err, state.ErrClaimed) && ctx.Err() == nil {
			r.log().Warn("claiming a job", zap.String("job", id), zap.Error(err))
		}
		return
	}
	var prev State
	j, err := r.Queue.transition(ctx, id, func(j *Job) error {
		if j.State != Waiting && j.State != Running {
			return errRetry
		}
		if j.State == Waiting && j.ScheduledAt.After(r.Queue.now()) {
			return errRetry
		}
		prev = j.State
		now := r.Queue.now()
		if j.State == Running {
			j.logf(now, "warn", fmt.Sprintf("resumed on %s: replica %s stopped while running it", r.Replica, j.Replica))
		}
		j.State, j.Attempts, j.Replica, j.StartedAt, j.EndedAt = Running, j.Attempts+1, r.Replica, now, time.Time{}
		j.logf(now, "info", fmt.Sprintf("running on %s (attempt %d of %d)", r.Replica, j.Attempts, j.MaxAttempts))
		return nil
	})
	if err != nil {
		claim.Release(context.WithoutCancel(ctx))
		cancel(err)
		return
	}
	r.mu.Lock()
	r.running[id] = cancel
	r.mu.Unlock()
	r.Metrics.transition(j.Action, Running)
	r.log().Info("job running", zap.String("job", id), zap.String("action", j.Action), zap.String("policy", j.PolicyID),
		zap.Int("attempt", j.Attempts), zap.Bool("resumed", prev == Running))
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		select {
		case <-claim.Lost():
			cancel(errClaimLost)
		case <-runCtx.Done():
		}
	}()
	go func() {
		defer r.wg.Done()
		defer poke()
		r.execute(runCtx, j, claim)
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
		cancel(nil)
	}()
}

// execute runs one attempt and records how it ended.
func (r *Runner) execute(ctx context.Context, j Job, claim state.Claim) {
	defer claim.Release(context.WithoutCancel(ctx))
	run := &Run{job: j, r: r, ctx: ctx}
	start := time.Now()
	var err error
	exec := r.Executors[j.Action]
	if exec == nil {
		err = fmt.Errorf("no executor for action %q", j.Action)
	} else {
		err = safeExecute(ctx, exec, run)
	}
	r.Metrics.observe(j.Action, time.Since(start))
	cause := context.Cause(ctx)
	// The record is written with a context that outlives a stopping
	// runner: the outcome of work that was done is never dropped.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch {
	case errors.Is(cause, errClaimLost):
		r.log().Warn("job claim lost; another replica takes it over", zap.String("job", j.ID))
		return
	case ctx.Err() != nil && !errors.Is(cause, errCancelled):
		// The runner is stopping: leave the job running in the store; it
		// resumes from its checkpoint on the next start.
		run.flush(wctx)
		r.log().Info("job interrupted by shutdown; resumes on the next start", zap.String("job", j.ID))
		return
	}
	next, err := r.Queue.transition(wctx, j.ID, func(s *Job) error {
		if s.State != Running || s.Replica != r.Replica || s.Attempts != j.Attempts {
			return errRetry // taken over meanwhile
		}
		now := r.Queue.now()
		run.mu.Lock()
		s.Progress, s.Checkpoint, s.Result = run.job.Progress, run.job.Checkpoint, run.job.Result
		s.Log = append(s.Log, run.pending...)
		run.pending = nil
		run.mu.Unlock()
		switch {
		case errors.Is(cause, errCancelled):
			s.State, s.EndedAt, s.FollowUp = Cancelled, now, false
			s.logf(now, "info", "cancelled while running")
		case err == nil:
			s.State, s.EndedAt, s.LastError = Done, now, ""
			s.logf(now, "info", "done")
		default:
			s.LastError = truncate(err.Error(), maxErrorText)
			transient, after := false, time.Duration(0)
			if r.Classify != nil {
				transient, after = r.Classify(err)
			}
			if transient && s.Attempts < s.MaxAttempts {
				wait := max(r.backoff(s.Attempts), after)
				s.State, s.ScheduledAt = Waiting, now.Add(wait)
				s.logf(now, "warn", fmt.Sprintf("attempt %d failed (%s); retrying in %s", s.Attempts, s.LastError, wait.Round(time.Millisecond)))
			} else {
				s.State, s.EndedAt = Error, now
				why := "permanent error"
				if transient {
					why = fmt.Sprintf("gave up after %d attempts", s.Attempts)
				}
				s.logf(now, "error", why+": "+s.LastError)
			}
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errRetry) {
			r.log().Error("recording a job's end", zap.String("job", j.ID), zap.Error(err))
		}
		return
	}
	r.Metrics.transition(next.Action, next.State)
	fields := []zap.Field{zap.String("job", j.ID), zap.String("action", j.Action), zap.String("policy", j.PolicyID),
		zap.String("state", string(next.State)), zap.Int("attempt", next.Attempts), zap.Duration("took", time.Since(start))}
	switch next.State {
	case Error:
		r.log().Error("job failed", append(fields, zap.String("error", next.LastError))...)
	case Waiting:
		r.log().Warn("job will retry", append(fields, zap.String("error", next.LastError), zap.Time("at", next.ScheduledAt))...)
	default:
		r.log().Info("job ended", fields...)
	}
}

// safeExecute turns an executor's panic into a failure of its job.
func safeExecute(ctx context.Context, e Executor, run *Run) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("executor panicked: %v", p)
		}
	}()
	return e.Execute(ctx, run)
}

// backoff is the wait after the given failed attempt: doubling from
// MinBackoff, capped, with ±25 % jitter.
func (r *Runner) backoff(attempt int) time.Duration {
	lo, hi := orDefault(r.MinBackoff, time.Second), orDefault(r.MaxBackoff, 5*time.Minute)
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return max(d+jitter, time.Millisecond)
}

// Run is an executor's handle on its job.
type Run struct {
	r   *Runner
	ctx context.Context

	// mu guards job and pending.
	mu      sync.Mutex
	job     Job
	pending []LogLine
	dirty   bool
	flushed time.Time
}

// Job returns the job as it was when the run began (with the checkpoint of
// the previous attempt, if any).
func (r *Run) Job() Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.job
}

// Params decodes the job's parameters into v.
func (r *Run) Params(v any) error {
	if err := json.Unmarshal(r.Job().Params, v); err != nil {
		return fmt.Errorf("jobs: parameters of %s: %w", r.Job().ID, err)
	}
	return nil
}

// Logf adds a line to the job's log (stored with the next progress write).
func (r *Run) Logf(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.pending = append(r.pending, LogLine{Time: r.r.Queue.now(), Level: level, Message: truncate(msg, maxLineLength)})
	if len(r.pending) > maxLogLines {
		r.pending = r.pending[len(r.pending)-maxLogLines:]
	}
	r.dirty = true
	r.mu.Unlock()
}

// Progress records progress; it is stored at most every ProgressEvery.
func (r *Run) Progress(p Progress) {
	r.mu.Lock()
	r.job.Progress, r.dirty = p, true
	due := time.Since(r.flushed) >= orDefault(r.r.ProgressEvery, time.Second)
	r.mu.Unlock()
	if due {
		r.flush(r.ctx)
	}
}

// Checkpoint records resume state and stores it (with the progress) at
// once: a run that dies after Checkpoint returns resumes from it.
func (r *Run) Checkpoint(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("jobs: encode checkpoint: %w", err)
	}
	r.mu.Lock()
	r.job.Checkpoint, r.dirty = b, true
	r.mu.Unlock()
	return r.flush(ctx)
}

// SetResult records the run's output, stored when the job ends.
func (r *Run) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("jobs: encode result: %w", err)
	}
	r.mu.Lock()
	r.job.Result = b
	r.mu.Unlock()
	return nil
}

// flush stores progress, checkpoint and pending log lines.
func (r *Run) flush(ctx context.Context) error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	p, cp, lines := r.job.Progress, r.job.Checkpoint, r.pending
	r.pending, r.dirty, r.flushed = nil, false, time.Now()
	attempt := r.job.Attempts
	r.mu.Unlock()
	_, err := r.r.Queue.transition(ctx, r.job.ID, func(j *Job) error {
		if j.State != Running || j.Replica != r.r.Replica || j.Attempts != attempt {
			return errRetry
		}
		j.Progress, j.Checkpoint = p, cp
		j.Log = append(j.Log, lines...)
		if n := len(j.Log); n > maxLogLines {
			j.Log = j.Log[n-maxLogLines:]
		}
		return nil
	})
	if errors.Is(err, errRetry) {
		return errClaimLost
	}
	return err
}
