package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// transientErr is what the test executors return for a failure worth
// retrying.
type transientErr struct{ after time.Duration }

func (e transientErr) Error() string { return "temporarily unavailable" }

func classify(err error) (bool, time.Duration) {
	var t transientErr
	if errors.As(err, &t) {
		return true, t.after
	}
	return false, 0
}

func newStore(t *testing.T) state.Store {
	t.Helper()
	s, err := badgerstate.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startRunner runs a runner until the test ends (or stop is called).
func startRunner(t *testing.T, q *jobs.Queue, name string, execs map[string]jobs.Executor) (stop func()) {
	t.Helper()
	r := &jobs.Runner{Queue: q, Executors: execs, Classify: classify, Replica: name, Workers: 4,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, ScanEvery: 20 * time.Millisecond,
		ProgressEvery: time.Millisecond, Logger: zaptest.NewLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls the job until cond holds (a condition, not a sleep).
func waitFor(t *testing.T, q *jobs.Queue, id string, what string, cond func(jobs.Job) bool) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := q.Get(context.Background(), id)
		if err == nil && cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: not %s within 15s (now %+v, %v)", id, what, j, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitState(t *testing.T, q *jobs.Queue, id string, s jobs.State) jobs.Job {
	t.Helper()
	return waitFor(t, q, id, string(s), func(j jobs.Job) bool { return j.State == s })
}

func enqueue(t *testing.T, q *jobs.Queue, spec jobs.Spec) (jobs.Job, bool) {
	t.Helper()
	j, created, err := q.Enqueue(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return j, created
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		maxAttempts  int
		failures     []error // returned by attempts 1..n, then success
		wantState    jobs.State
		wantAttempts int
		wantError    string
		wantLog      string
	}{
		{"success", 0, nil, jobs.Done, 1, "", "done"},
		{"transient then success", 0, []error{transientErr{}, transientErr{}}, jobs.Done, 3, "", "retrying in"},
		{"permanent", 0, []error{errors.New("401 UNAUTHORIZED: authentication required")}, jobs.Error, 1, "401 UNAUTHORIZED: authentication required", "permanent error"},
		{"gives up", 3, []error{transientErr{}, transientErr{}, transientErr{}, transientErr{}}, jobs.Error, 3, "temporarily unavailable", "gave up after 3 attempts"},
		{"transient then permanent", 0, []error{transientErr{}, errors.New("MANIFEST_INVALID")}, jobs.Error, 2, "MANIFEST_INVALID", "permanent error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &jobs.Queue{Store: newStore(t)}
			var calls atomic.Int32
			exec := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
				n := int(calls.Add(1))
				if n <= len(tt.failures) {
					return tt.failures[n-1]
				}
				return nil
			})
			startRunner(t, q, "r1", map[string]jobs.Executor{"copy": exec})
			j, _ := enqueue(t, q, jobs.Spec{Action: "copy", MaxAttempts: tt.maxAttempts})
			j = waitFor(t, q, j.ID, "finished", func(j jobs.Job) bool { return j.State.Terminal() })
			if j.State != tt.wantState || j.Attempts != tt.wantAttempts || j.LastError != tt.wantError {
				t.Fatalf("state %s attempts %d error %q; want %s %d %q", j.State, j.Attempts, j.LastError, tt.wantState, tt.wantAttempts, tt.wantError)
			}
			if int(calls.Load()) != tt.wantAttempts {
				t.Fatalf("executor ran %d times, want %d", calls.Load(), tt.wantAttempts)
			}
			if !logHas(j, tt.wantLog) {
				t.Fatalf("log %+v has no %q", j.Log, tt.wantLog)
			}
			if j.EndedAt.IsZero() || j.StartedAt.IsZero() {
				t.Fatalf("times not set: %+v", j)
			}
		})
	}
}

func logHas(j jobs.Job, s string) bool {
	for _, l := range j.Log {
		if strings.Contains(l.Message, s) {
			return true
		}
	}
	return false
}

func TestRetryAfterIsHonoured(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	var calls atomic.Int32
	exec := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		if calls.Add(1) == 1 {
			return transientErr{after: 400 * time.Millisecond}
		}
		return nil
	})
	startRunner(t, q, "r1", map[string]jobs.Executor{"copy": exec})
	j, _ := enqueue(t, q, jobs.Spec{Action: "copy"})
	w := waitFor(t, q, j.ID, "scheduled for a retry", func(j jobs.Job) bool { return j.State == jobs.Waiting && j.Attempts == 1 })
	if gap := w.ScheduledAt.Sub(w.UpdatedAt); gap < 400*time.Millisecond {
		t.Fatalf("retry scheduled %s after the failure; Retry-After asked for 400ms", gap)
	}
	d := waitState(t, q, j.ID, jobs.Done)
	if d.StartedAt.Before(w.ScheduledAt) {
		t.Fatalf("second attempt started at %s, before its schedule %s", d.StartedAt, w.ScheduledAt)
	}
}

func TestKeyAllowsOneOpenJobAndOneFollowUp(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	release := make(chan struct{})
	started := make(chan string, 10)
	var runs atomic.Int32
	exec := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		runs.Add(1)
		started <- r.Job().ID
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	spec := jobs.Spec{Action: "copy", PolicyID: "p1", Key: "p1/app:1.0", Params: map[string]string{"tag": "1.0"}}
	first, created := enqueue(t, q, spec)
	if !created {
		t.Fatal("first enqueue did not create")
	}
	again, created := enqueue(t, q, spec)
	if created || again.ID != first.ID {
		t.Fatalf("second enqueue while waiting: created=%v id=%s, want the same job %s", created, again.ID, first.ID)
	}
	startRunner(t, q, "r1", map[string]jobs.Executor{"copy": exec})
	if id := <-started; id != first.ID {
		t.Fatalf("started %s, want %s", id, first.ID)
	}
	for range 3 { // three pushes while it runs: one follow-up
		if j, created := enqueue(t, q, spec); created || j.ID != first.ID {
			t.Fatalf("enqueue while running: created=%v id=%s", created, j.ID)
		}
	}
	if j, _ := q.Get(context.Background(), first.ID); !j.FollowUp {
		t.Fatal("running job not marked for a follow-up")
	}
	release <- struct{}{}
	done := waitState(t, q, first.ID, jobs.Done)
	follow := <-started
	if follow == first.ID || !logHas(done, "follow-up run queued as job "+follow) {
		t.Fatalf("follow-up %s; log of the first: %+v", follow, done.Log)
	}
	f, _ := q.Get(context.Background(), follow)
	if f.FollowUpOf != first.ID || f.Key != spec.Key || string(f.Params) != string(first.Params) {
		t.Fatalf("follow-up job %+v", f)
	}
	close(release)
	waitState(t, q, follow, jobs.Done)
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2 (the job and one follow-up)", n)
	}
	// The key is free again.
	if _, created := enqueue(t, q, spec); !created {
		t.Fatal("key still taken after both runs ended")
	}
}

func TestCancel(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	started := make(chan struct{}, 1)
	exec := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	ctx := context.Background()

	// Waiting: cancelled at once (no runner yet).
	w, _ := enqueue(t, q, jobs.Spec{Action: "copy", Key: "k"})
	c, err := q.Cancel(ctx, w.ID)
	if err != nil || c.State != jobs.Cancelled {
		t.Fatalf("cancel a waiting job: %+v %v", c, err)
	}
	if _, err := q.Cancel(ctx, w.ID); !errors.Is(err, jobs.ErrFinished) {
		t.Fatalf("cancel a cancelled job: %v, want ErrFinished", err)
	}
	if _, err := q.Cancel(ctx, "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("cancel a missing job: %v", err)
	}

	// Running: the executor's context ends, the job ends cancelled, and a
	// queued follow-up is dropped with it.
	startRunner(t, q, "r1", map[string]jobs.Executor{"copy": exec})
	r, created := enqueue(t, q, jobs.Spec{Action: "copy", Key: "k"})
	if !created {
		t.Fatal("key of a cancelled job still taken")
	}
	<-started
	enqueue(t, q, jobs.Spec{Action: "copy", Key: "k"}) // follow-up
	if _, err := q.Cancel(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	j := waitState(t, q, r.ID, jobs.Cancelled)
	if j.Attempts != 1 || !logHas(j, "cancelled while running") {
		t.Fatalf("cancelled job %+v", j)
	}
	open, err := q.List(ctx, jobs.Filter{States: []jobs.State{jobs.Waiting, jobs.Running}})
	if err != nil || len(open) != 0 {
		t.Fatalf("open jobs after cancel: %+v %v (a cancelled job queues no follow-up)", open, err)
	}
}

// TestResumeAfterShutdownAndOrphan: a runner stopped in the middle of a job
// leaves it running with its checkpoint; the next runner resumes it from
// there. The same happens to a job whose replica died (no live claim).
func TestResumeFromCheckpoint(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	checkpointed := make(chan struct{})
	type cp struct{ Offset int64 }
	var resumedFrom atomic.Int64
	first := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		r.Progress(jobs.Progress{BytesDone: 1 << 20, BlobsTotal: 3})
		if err := r.Checkpoint(ctx, cp{Offset: 12345}); err != nil {
			return err
		}
		close(checkpointed)
		<-ctx.Done()
		return ctx.Err()
	})
	stop := startRunner(t, q, "r1", map[string]jobs.Executor{"copy": first})
	j, _ := enqueue(t, q, jobs.Spec{Action: "copy"})
	<-checkpointed
	stop()
	s, _ := q.Get(context.Background(), j.ID)
	if s.State != jobs.Running || string(s.Checkpoint) != `{"Offset":12345}` || s.Progress.BytesDone != 1<<20 {
		t.Fatalf("after shutdown: %+v", s)
	}
	second := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		var c cp
		if len(r.Job().Checkpoint) > 0 {
			if err := jsonUnmarshal(r.Job().Checkpoint, &c); err != nil {
				return err
			}
		}
		resumedFrom.Store(c.Offset)
		return nil
	})
	startRunner(t, q, "r2", map[string]jobs.Executor{"copy": second})
	d := waitState(t, q, j.ID, jobs.Done)
	if resumedFrom.Load() != 12345 || d.Attempts != 2 || d.Replica != "r2" || !logHas(d, "replica r1 stopped while running it") {
		t.Fatalf("resumed from %d; job %+v", resumedFrom.Load(), d)
	}
}

func TestTwoRunnersRunEachJobOnce(t *testing.T) {
	store := newStore(t)
	q := &jobs.Queue{Store: store}
	var mu sync.Mutex
	ran := map[string][]string{}
	exec := func(name string) jobs.Executor {
		return jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
			mu.Lock()
			ran[r.Job().ID] = append(ran[r.Job().ID], name)
			mu.Unlock()
			return nil
		})
	}
	var ids []string
	for i := range 30 {
		j, _ := enqueue(t, q, jobs.Spec{Action: "copy", Key: fmt.Sprintf("k%d", i)})
		ids = append(ids, j.ID)
	}
	startRunner(t, q, "a", map[string]jobs.Executor{"copy": exec("a")})
	startRunner(t, q, "b", map[string]jobs.Executor{"copy": exec("b")})
	for _, id := range ids {
		waitState(t, q, id, jobs.Done)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if len(ran[id]) != 1 {
			t.Errorf("job %s ran %d times (%v)", id, len(ran[id]), ran[id])
		}
	}
}

func TestHookWritesWithTheTransition(t *testing.T) {
	store := newStore(t)
	q := &jobs.Queue{Store: store, Hook: func(old *jobs.Job, n jobs.Job) []state.Op {
		return []state.Op{state.Put(fmt.Sprintf("events/%s/%d-%s", n.ID, n.Attempts, n.State), nil)}
	}}
	var calls atomic.Int32
	startRunner(t, q, "r1", map[string]jobs.Executor{"copy": jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		if calls.Add(1) == 1 {
			return transientErr{}
		}
		return nil
	})})
	j, _ := enqueue(t, q, jobs.Spec{Action: "copy"})
	waitState(t, q, j.ID, jobs.Done)
	kvs, err := store.List(context.Background(), "events/"+j.ID+"/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, strings.TrimPrefix(kv.Key, "events/"+j.ID+"/"))
	}
	want := "0-waiting 1-running 1-waiting 2-done 2-running"
	if strings.Join(got, " ") != want {
		t.Fatalf("hook writes %q, want %q", strings.Join(got, " "), want)
	}
}

func TestExecutorPanicFailsTheJobOnly(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	startRunner(t, q, "r1", map[string]jobs.Executor{
		"bad":  jobs.ExecutorFunc(func(context.Context, *jobs.Run) error { panic("boom") }),
		"good": jobs.ExecutorFunc(func(context.Context, *jobs.Run) error { return nil }),
	})
	b, _ := enqueue(t, q, jobs.Spec{Action: "bad"})
	j := waitState(t, q, b.ID, jobs.Error)
	if !strings.Contains(j.LastError, "panicked: boom") {
		t.Fatalf("error %q", j.LastError)
	}
	g, _ := enqueue(t, q, jobs.Spec{Action: "good"})
	waitState(t, q, g.ID, jobs.Done)
	u, _ := enqueue(t, q, jobs.Spec{Action: "unknown"})
	if j := waitState(t, q, u.ID, jobs.Error); !strings.Contains(j.LastError, `no executor for action "unknown"`) {
		t.Fatalf("error %q", j.LastError)
	}
}

func TestListFilters(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	ctx := context.Background()
	a, _ := enqueue(t, q, jobs.Spec{Action: "promote", PolicyID: "p1"})
	b, _ := enqueue(t, q, jobs.Spec{Action: "push_mirror", PolicyID: "p2"})
	c, _ := enqueue(t, q, jobs.Spec{Action: "promote", PolicyID: "p1"})
	q.Cancel(ctx, c.ID)
	ids := func(js []jobs.Job) string {
		var s []string
		for _, j := range js {
			s = append(s, j.ID)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		f    jobs.Filter
		want string
	}{
		{"all, newest first", jobs.Filter{}, ids([]jobs.Job{c, b, a})},
		{"by action", jobs.Filter{Action: "promote"}, ids([]jobs.Job{c, a})},
		{"by policy", jobs.Filter{PolicyID: "p2"}, b.ID},
		{"by state", jobs.Filter{States: []jobs.State{jobs.Cancelled}}, c.ID},
		{"limit", jobs.Filter{Limit: 1}, c.ID},
		{"before", jobs.Filter{Before: c.ID, Limit: 1}, b.ID},
		{"since the future", jobs.Filter{Since: time.Now().Add(time.Hour)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := q.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if ids(got) != tt.want {
				t.Fatalf("List = %s, want %s", ids(got), tt.want)
			}
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestIDsSortByCreationWithinAMillisecond enqueues jobs with a clock that
// stands still: their ids still sort in the order they were created, so
// List is newest first.
func TestIDsSortByCreationWithinAMillisecond(t *testing.T) {
	now := time.Now()
	q := &jobs.Queue{Store: newStore(t), Now: func() time.Time { return now }}
	var want []string
	for range 50 {
		j, _ := enqueue(t, q, jobs.Spec{Action: "promote"})
		want = append([]string{j.ID}, want...)
	}
	got, err := q.List(context.Background(), jobs.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("List[%d] = %s, want %s: ids made in one millisecond do not sort by creation", i, got[i].ID, want[i])
		}
	}
}

func TestOpenJobsCollector(t *testing.T) {
	q := &jobs.Queue{Store: newStore(t)}
	enqueue(t, q, jobs.Spec{Action: "promote", PolicyID: "p1", Key: "a"})
	enqueue(t, q, jobs.Spec{Action: "promote", PolicyID: "p1", Key: "b"})
	c, _ := enqueue(t, q, jobs.Spec{Action: "poll_mirror", PolicyID: "p2"})
	q.Cancel(context.Background(), c.ID)
	reg := prometheus.NewRegistry()
	reg.MustRegister(jobs.NewOpenJobsCollector(q))
	want := `
# HELP dtrcache_jobs_open Jobs waiting or running, by action, policy and state (counted in the state store when scraped).
# TYPE dtrcache_jobs_open gauge
dtrcache_jobs_open{action="promote",policy="p1",state="waiting"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dtrcache_jobs_open"); err != nil {
		t.Fatal(err)
	}
}
