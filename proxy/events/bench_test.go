package events

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap"
)

// countingReceiver counts the deliveries it accepts and says when a count
// is reached.
type countingReceiver struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func (c *countingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if c.n.Add(1) == c.target.Load() {
		c.done <- struct{}{}
	}
}

// BenchmarkEmitAndDeliver: 1,000 events emitted one transaction each (as
// 1,000 pushes would), delivered to a loopback receiver, on Badger and on
// a one-member etcd (WAL synced) in the same run. Each event needs one
// synced store write (its outbox entry) and one POST, in two stages that
// overlap (cursor writes are batched); the limit is the slower stage
// alone, measured in the same run on the same store, and of-limit the
// pipeline against it.
func BenchmarkEmitAndDeliver(b *testing.B) {
	b.Run("badger", func(b *testing.B) { benchEmitAndDeliver(b, newStore(b)) })
	b.Run("etcd", func(b *testing.B) {
		c := etcdtest.Start(b, 1, etcdtest.Options{})
		s, err := etcdstate.Open(context.Background(), etcdstate.Config{Endpoints: c.Endpoints(), Prefix: "/bench-events/", Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		benchEmitAndDeliver(b, s)
	})
}

func benchEmitAndDeliver(b *testing.B, store state.Store) {
	const events = 1000
	rc := &countingReceiver{done: make(chan struct{}, 1)}
	srv := httptest.NewServer(rc)
	b.Cleanup(srv.Close)

	writes, posts := measureLimits(b, store, srv.URL)
	limit := 1 / max(writes.Seconds(), posts.Seconds())

	d := fastDelivery(b)
	s := startService(b, store, Config{Delivery: d, Logger: zap.NewNop()})
	subscribe(b, s, TagPush, "", srv.URL)
	ev := tagPush(b, "team/app", "1.0")
	var emitTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc.target.Store(rc.n.Load() + events)
		start := time.Now()
		for j := 0; j < events; j++ {
			e := ev
			if _, err := s.Outbox.Emit(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
		emitTime += time.Since(start)
		select {
		case <-rc.done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("only %d of %d delivered", rc.n.Load(), rc.target.Load())
		}
	}
	b.StopTimer()
	perEvent := b.Elapsed().Seconds() / float64(b.N*events)
	b.ReportMetric(1/perEvent, "events/s")
	b.ReportMetric(float64(b.N*events)/emitTime.Seconds(), "emitted/s")
	b.ReportMetric(limit, "limit-events/s")
	b.ReportMetric(1/(limit*perEvent), "of-limit")
	b.ReportMetric(writes.Seconds()*1e3, "write-ms")
	b.ReportMetric(posts.Seconds()*1e3, "post-ms")
}

// measureLimits times one synced store write and one POST to url (the
// parts every delivered event needs), averaged over 200 of each.
func measureLimits(b *testing.B, store state.Store, url string) (write, post time.Duration) {
	const n = 200
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := store.Txn(context.Background(), nil, state.Put("bench/"+strconv.Itoa(i), []byte("x"))); err != nil {
			b.Fatal(err)
		}
	}
	write = time.Since(start) / n
	body := bytes.Repeat([]byte("x"), 400)
	client := &http.Client{}
	start = time.Now()
	for i := 0; i < n; i++ {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post = time.Since(start) / n
	return write, post
}
