package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap/zaptest"
)

// etcdStore opens a client of the cluster at endpoints, closed when the
// test ends: each origin replica has its own.
func etcdStore(t *testing.T, endpoints []string) *etcdstate.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: endpoints, Prefix: "/jobs-test/", DialTimeout: 2 * time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startReplica runs a runner with a short claim ttl until the test ends.
func startReplica(t *testing.T, q *jobs.Queue, name string, execs map[string]jobs.Executor) {
	t.Helper()
	r := &jobs.Runner{Queue: q, Executors: execs, Classify: classify, Replica: name, Workers: 4, ClaimTTL: 2 * time.Second,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, ScanEvery: 50 * time.Millisecond,
		ProgressEvery: time.Millisecond, Logger: zaptest.NewLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestReplicasOnEtcdRunEachJobOnce runs two replicas, each with its own
// etcd client, on one queue: every job runs exactly once.
func TestReplicasOnEtcdRunEachJobOnce(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	qa := &jobs.Queue{Store: etcdStore(t, c.Endpoints())}
	qb := &jobs.Queue{Store: etcdStore(t, c.Endpoints())}
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
		q := qa
		if i%2 == 1 {
			q = qb
		}
		j, _ := enqueue(t, q, jobs.Spec{Action: "copy", Key: fmt.Sprintf("k%d", i)})
		ids = append(ids, j.ID)
	}
	startReplica(t, qa, "a", map[string]jobs.Executor{"copy": exec("a")})
	startReplica(t, qb, "b", map[string]jobs.Executor{"copy": exec("b")})
	for _, id := range ids {
		waitState(t, qa, id, jobs.Done)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if len(ran[id]) != 1 {
			t.Errorf("job %s ran %d times (%v)", id, len(ran[id]), ran[id])
		}
	}
}

// TestReplicaCutOffMidJob cuts the replica running a job off the cluster:
// its claim is lost, its executor stops, and the other replica takes the
// job over after the lease ran out and resumes from the checkpoint.
func TestReplicaCutOffMidJob(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	relay := etcdtest.NewRelay(t, c.Members[0].ClientURL)
	qa := &jobs.Queue{Store: etcdStore(t, []string{relay.URL()})}
	qb := &jobs.Queue{Store: etcdStore(t, c.Endpoints())}
	type cp struct{ Offset int64 }
	checkpointed, stoppedA := make(chan struct{}), make(chan time.Time, 1)
	a := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		if err := r.Checkpoint(ctx, cp{Offset: 4242}); err != nil {
			return err
		}
		close(checkpointed)
		<-ctx.Done()
		stoppedA <- time.Now()
		return ctx.Err()
	})
	startedB := make(chan time.Time, 1)
	var resumedFrom cp
	b := jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
		startedB <- time.Now()
		return jsonUnmarshal(r.Job().Checkpoint, &resumedFrom)
	})
	startReplica(t, qa, "a", map[string]jobs.Executor{"copy": a})
	j, _ := enqueue(t, qa, jobs.Spec{Action: "copy"})
	<-checkpointed
	startReplica(t, qb, "b", map[string]jobs.Executor{"copy": b})
	relay.Cut()
	defer relay.Heal() // lets replica a stop quickly at the end
	d := waitState(t, qb, j.ID, jobs.Done)
	stopA, startB := <-stoppedA, <-startedB
	if stopA.After(startB) {
		t.Fatalf("replica b started the job %s before replica a stopped it", stopA.Sub(startB))
	}
	if resumedFrom.Offset != 4242 || d.Attempts != 2 || d.Replica != "b" || !logHas(d, "replica a stopped while running it") {
		t.Fatalf("resumed from %+v; job %+v", resumedFrom, d)
	}
}
