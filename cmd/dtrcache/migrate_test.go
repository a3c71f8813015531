package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap/zaptest"
)

type checkpoint struct{ Blobs int }

// runJobs runs a runner on q until the jobs in ids reach a state cond
// accepts, then stops it.
func runJobs(t *testing.T, q *jobs.Queue, execs map[string]jobs.Executor, cond func(jobs.Job) bool, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &jobs.Runner{Queue: q, Executors: execs, Replica: "single", ClaimTTL: 2 * time.Second, ScanEvery: 20 * time.Millisecond,
		Logger: zaptest.NewLogger(t)}
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			j, err := q.Get(ctx, id)
			if err == nil && cond(j) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s: %+v %v", id, j, err)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition
		}
	}
}

// populate writes a single-node origin's state into dataDir the way the
// origin does: caches and settings through its DB, jobs through the queue
// (one done, one running with a checkpoint as a stopped origin leaves it,
// one waiting), and enough settings for several pages and transactions.
func populate(t *testing.T, dataDir string) (runningID string) {
	t.Helper()
	store, err := badgerstate.Open(filepath.Join(dataDir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	db := origin.NewDB(store, zaptest.NewLogger(t))
	defer db.Close()
	if err := db.AddCache(origin.Cache{Name: "asia", Host: "https://cache-asia.example.org", Account: "cache-asia"}); err != nil {
		t.Fatal(err)
	}
	for i := range 700 {
		if err := db.SetSettings(fmt.Sprintf("user%03d", i), origin.Settings{ContentCache: "asia"}); err != nil {
			t.Fatal(err)
		}
	}
	q := &jobs.Queue{Store: store}
	ctx := context.Background()
	done, _, err := q.Enqueue(ctx, jobs.Spec{Action: "finish", PolicyID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	running, _, err := q.Enqueue(ctx, jobs.Spec{Action: "copy", PolicyID: "p2", Key: "p2/latest", Params: map[string]string{"tag": "latest"}})
	if err != nil {
		t.Fatal(err)
	}
	checkpointed := make(chan struct{})
	runJobs(t, q, map[string]jobs.Executor{
		"finish": jobs.ExecutorFunc(func(context.Context, *jobs.Run) error { return nil }),
		"copy": jobs.ExecutorFunc(func(ctx context.Context, r *jobs.Run) error {
			if err := r.Checkpoint(ctx, checkpoint{Blobs: 3}); err != nil {
				return err
			}
			close(checkpointed)
			<-ctx.Done() // the origin stops mid-copy
			return ctx.Err()
		}),
	}, func(j jobs.Job) bool {
		return j.State == jobs.Done || (j.State == jobs.Running && len(j.Checkpoint) > 0)
	}, done.ID, running.ID)
	<-checkpointed
	if _, _, err := q.Enqueue(ctx, jobs.Spec{Action: "finish", NotBefore: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return running.ID
}

// TestMigrateBadgerToEtcd migrates a populated single-node state and
// reads it back through etcd with the origin's own code; the job the
// stopped origin left running resumes on etcd from its checkpoint.
func TestMigrateBadgerToEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	dataDir := t.TempDir()
	runningID := populate(t, dataDir)
	src, err := badgerstate.Open(filepath.Join(dataDir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := src.List(context.Background(), "", "", 0)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	migrate := func(extra ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		args := append([]string{"origin", "migrate", "--from", "badger:" + dataDir, "--to", "etcd:" + strings.Join(c.Endpoints(), ","), "--prefix", "/dc1/"}, extra...)
		code := run(context.Background(), args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := migrate()
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, fmt.Sprintf("verified %d keys key by key", len(want))) {
		t.Fatalf("migrate output lacks the verification of %d keys:\n%s", len(want), out)
	}

	ctx := context.Background()
	dst, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: c.Endpoints(), Prefix: "/dc1/", Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.List(ctx, "", "", 0)
	if err != nil || len(got) != len(want) {
		t.Fatalf("etcd holds %d keys (%v), the source %d", len(got), err, len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Fatalf("key %d: %s in etcd, %s in Badger (or the values differ)", i, got[i].Key, want[i].Key)
		}
	}
	db := origin.NewDB(dst, zaptest.NewLogger(t))
	defer db.Close()
	caches, err := db.Caches()
	if err != nil || len(caches) != 1 || caches[0].Host != "https://cache-asia.example.org" || caches[0].Account != "cache-asia" {
		t.Fatalf("caches through etcd: %+v %v", caches, err)
	}
	if s, err := db.Settings("user699"); err != nil || s.ContentCache != "asia" {
		t.Fatalf("settings through etcd: %+v %v", s, err)
	}
	q := &jobs.Queue{Store: dst}
	all, err := q.List(ctx, jobs.Filter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("jobs through etcd: %d (%v)", len(all), err)
	}
	states := map[jobs.State]int{}
	for _, j := range all {
		states[j.State]++
	}
	if states[jobs.Done] != 1 || states[jobs.Running] != 1 || states[jobs.Waiting] != 1 {
		t.Fatalf("job states through etcd: %v", states)
	}
	var resumed checkpoint
	runJobs(t, q, map[string]jobs.Executor{"copy": jobs.ExecutorFunc(func(_ context.Context, r *jobs.Run) error {
		return json.Unmarshal(r.Job().Checkpoint, &resumed)
	})}, func(j jobs.Job) bool { return j.State == jobs.Done }, runningID)
	if resumed.Blobs != 3 {
		t.Fatalf("the running job resumed from %+v, want its checkpoint", resumed)
	}

	// etcd holds a state now: a second migration is refused, unless forced.
	if code, _, errOut := migrate(); code != 1 || !strings.Contains(errOut, "refusing to mix states") {
		t.Fatalf("second migration: exit %d, %s", code, errOut)
	}
	if _, err := dst.Txn(ctx, nil, state.Put("extra/only-in-etcd", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := migrate("--force"); code != 0 || !strings.Contains(out, "(1 keys under the prefix were there before and stay)") {
		t.Fatalf("forced migration: exit %d\n%s%s", code, out, errOut)
	}
}

// TestMigrateRefuses: a running origin (its database locked), a directory
// without a database and bad flags are refused, and nothing is created.
func TestMigrateRefuses(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	to := "etcd:" + c.Members[0].ClientURL
	locked := t.TempDir()
	s, err := badgerstate.Open(filepath.Join(locked, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"running origin", []string{"--from", "badger:" + locked, "--to", to}, 1, "is still running"},
		{"no database", []string{"--from", "badger:" + empty, "--to", to}, 1, "no Badger database in " + empty},
		{"bad from", []string{"--from", empty, "--to", to}, 2, "--from must be badger:DIR"},
		{"bad to", []string{"--from", "badger:" + empty, "--to", c.Members[0].ClientURL}, 2, "--to must be etcd:"},
		{"bad endpoint", []string{"--from", "badger:" + empty, "--to", "etcd:127.0.0.1:2379"}, 2, "state.etcd.endpoints[0]: invalid endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"origin", "migrate"}, tt.args...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("the migration created %d files in a directory without a database", len(entries))
	}
	if n, err := dstKeys(t, c.Endpoints()); err != nil || n != 0 {
		t.Fatalf("refused migrations wrote %d keys to etcd (%v)", n, err)
	}
}

func dstKeys(t *testing.T, endpoints []string) (int64, error) {
	s, err := etcdstate.Open(context.Background(), etcdstate.Config{Endpoints: endpoints})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.KeyCount(context.Background())
}
