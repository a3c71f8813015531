package etcdstate_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap"
)

// The benchmarks run each measurement on Badger (the embedded store, every
// write synced) and on a one-member embedded etcd (write-ahead log synced:
// no --unsafe-no-fsync) in the same run, on the same disk, so their ratio
// is what choosing etcd costs on this machine. Each store's peer is a
// second handle: the same Badger store, a second etcd client.

type benchStores struct {
	name        string
	store, peer state.Store
}

func openBenchStores(b *testing.B) []benchStores {
	b.Helper()
	bs, err := badgerstate.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bs.Close() })
	c := etcdtest.Start(b, 1, etcdtest.Options{})
	open := func() *etcdstate.Store {
		s, err := etcdstate.Open(context.Background(), etcdstate.Config{Endpoints: c.Endpoints(), Prefix: "/bench/", Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	return []benchStores{{"badger", bs, bs}, {"etcd", open(), open()}}
}

// BenchmarkTxn measures conditional read-modify-write transactions
// (state.Update of a counter key per writer), by one writer and by 8 at
// once (each on its own key, as replicas updating different records).
func BenchmarkTxn(b *testing.B) {
	for _, s := range openBenchStores(b) {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/writers=%d", s.name, writers), func(b *testing.B) {
				ctx := context.Background()
				var n atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key := fmt.Sprintf("bench/txn/%d", w)
						for n.Add(1) <= int64(b.N) {
							if _, err := state.Update(ctx, s.store, key, func(v *int, _ bool) error { *v++; return nil }); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
			})
		}
	}
}

// BenchmarkJobClaim measures the job queue's whole path per job: enqueue,
// claim (a lease on etcd), running, done, with a runner of 4 workers
// working off batches of 50 jobs; an iteration is one job.
func BenchmarkJobClaim(b *testing.B) {
	const batch = 50
	for _, s := range openBenchStores(b) {
		b.Run(s.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			q := &jobs.Queue{Store: s.store}
			ended, err := s.peer.Watch(ctx, "jobopen/")
			if err != nil {
				b.Fatal(err)
			}
			r := &jobs.Runner{Queue: &jobs.Queue{Store: s.peer}, Workers: 4, Replica: "bench", ScanEvery: time.Second,
				Executors: map[string]jobs.Executor{"noop": jobs.ExecutorFunc(func(context.Context, *jobs.Run) error { return nil })}}
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			b.ResetTimer()
			for left := b.N; left > 0; {
				n := min(batch, left)
				left -= n
				for range n {
					if _, _, err := q.Enqueue(ctx, jobs.Spec{Action: "noop"}); err != nil {
						b.Fatal(err)
					}
				}
				for finished := 0; finished < n; { // a job's open entry goes when it ends
					ev, ok := <-ended
					if !ok {
						b.Fatal("watch ended")
					}
					if ev.Type == state.EventDelete {
						finished++
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkWatchLatency measures how long a write takes to reach another
// client's watch: from the start of the Txn to the event's arrival.
func BenchmarkWatchLatency(b *testing.B) {
	for _, s := range openBenchStores(b) {
		b.Run(s.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events, err := s.peer.Watch(ctx, "bench/watch/")
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := s.store.Txn(ctx, nil, state.Put("bench/watch/k", []byte(fmt.Sprint(i)))); err != nil {
					b.Fatal(err)
				}
				if _, ok := <-events; !ok {
					b.Fatal("watch ended")
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
