package events

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"go.uber.org/zap/zaptest"
)

type permanentErr struct{}

func (permanentErr) Error() string { return "manifest unknown at the source" }

// TestJobHook: each finished job makes one event, written with the job's
// end: a success, a failure, and a job that succeeded after two retries
// (one event, not three).
func TestJobHook(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	hook := subscribe(t, s, Promotion, "team", rc.url())
	mirror := subscribe(t, s, PushMirroring, "", rc.url())
	type params struct{ Tag string }
	q := &jobs.Queue{Store: store, Hook: JobHook(s.Outbox, func(j jobs.Job) (Event, bool) {
		var p params
		json.Unmarshal(j.Params, &p)
		t := Promotion
		if j.Action == "push_mirror" {
			t = PushMirroring
		}
		ev, err := JobEvent(t, "team/app", j, JobContents{
			Source: ImageRef{Repository: "team/app", Tag: p.Tag}, Target: ImageRef{Repository: "team/app-prod", Tag: p.Tag}, Digest: sampleDigest})
		return ev, err == nil
	}, nil)}
	var flaky atomic.Int32
	exec := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		var p params
		r.Params(&p)
		r.Progress(jobs.Progress{BytesDone: 1234})
		switch p.Tag {
		case "bad":
			return permanentErr{}
		case "flaky":
			if flaky.Add(1) < 3 {
				return errors.New("registry unavailable")
			}
		}
		return nil
	})
	runner := &jobs.Runner{Queue: q, Executors: map[string]jobs.Executor{"promote": exec, "push_mirror": exec},
		Classify:   func(err error) (bool, time.Duration) { return !errors.As(err, new(permanentErr)), 0 },
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, ScanEvery: 20 * time.Millisecond, Logger: zaptest.NewLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var ids []string
	for _, spec := range []jobs.Spec{
		{Action: "promote", Params: params{"good"}}, {Action: "promote", Params: params{"bad"}},
		{Action: "promote", Params: params{"flaky"}}, {Action: "push_mirror", Params: params{"good"}},
	} {
		j, _, err := q.Enqueue(ctxT(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	waitUntil(t, "every job to finish", func() bool {
		for _, id := range ids {
			if j, err := q.Get(ctxT(t), id); err != nil || !j.State.Terminal() {
				return false
			}
		}
		return true
	})
	// The events were written with the jobs' ends: all are in the outbox now.
	byJob := map[string]JobContents{}
	for _, ev := range outboxEvents(t, store) {
		var c JobContents
		json.Unmarshal(ev.Contents, &c)
		if _, dup := byJob[c.JobID]; dup {
			t.Fatalf("job %s made two events", c.JobID)
		}
		byJob[c.JobID] = c
	}
	if len(byJob) != 4 {
		t.Fatalf("%d events for 4 finished jobs", len(byJob))
	}
	want := []struct {
		state    string
		attempts int
		err      bool
	}{{"done", 1, false}, {"error", 1, true}, {"done", 3, false}, {"done", 1, false}}
	for i, id := range ids {
		c := byJob[id]
		if c.State != want[i].state || c.Attempts != want[i].attempts || (c.Error != "") != want[i].err ||
			c.Bytes != 1234 || c.Digest != sampleDigest || c.Namespace != "team" || c.Repository != "app" || c.Ended.IsZero() {
			t.Errorf("job %d: %+v", i, c)
		}
	}
	got := rc.waitFor(t, "four deliveries", func(d []delivery) bool { return len(d) == 4 })
	n := map[string]int{}
	for _, d := range got {
		n[d.header.Get(HeaderWebhookID)]++
	}
	if n[hook.ID] != 3 || n[mirror.ID] != 1 {
		t.Fatalf("deliveries per webhook: %v", n)
	}
}
