package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestSignatureAndHeaders: every delivery carries the event id and type,
// and a signature that verifies with the webhook's secret (and not with
// another, nor over another body).
func TestSignatureAndHeaders(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	w := subscribe(t, s, TagPush, "team/app", rc.url())
	evs, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", "1.0"))
	if err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "one delivery", func(d []delivery) bool { return len(d) == 1 })[0]
	if h := got.header.Get(HeaderEventID); h != evs[0].ID {
		t.Errorf("%s = %q, want %q", HeaderEventID, h, evs[0].ID)
	}
	if h := got.header.Get(HeaderEventType); h != string(TagPush) {
		t.Errorf("%s = %q", HeaderEventType, h)
	}
	if h := got.header.Get(HeaderWebhookID); h != w.ID {
		t.Errorf("%s = %q, want %q", HeaderWebhookID, h, w.ID)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	sig := got.header.Get(HeaderSignature)
	if !Verify(w.Secret, got.body, sig) {
		t.Fatalf("signature %q does not verify with the webhook's secret", sig)
	}
	if Verify(newSecret(), got.body, sig) {
		t.Error("signature verifies with another secret")
	}
	if Verify(w.Secret, append(got.body, ' '), sig) {
		t.Error("signature verifies over another body")
	}
}

// TestPayloadFields: a TAG_PUSH has DTR's wrapper and contents fields.
func TestPayloadFields(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{Host: "dtr.example.org"})
	rc := newReceiver(t)
	subscribe(t, s, TagPush, "", rc.url())
	img := Image{Repository: "team/app", Tag: "1.0", Digest: sampleDigest, Host: "dtr.example.org", OS: "linux", Architecture: "arm64"}
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	ev, err := NewImageEvent(TagPush, img, "alice", at, SourceOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Outbox.Emit(ctxT(t), ev); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "one delivery", func(d []delivery) bool { return len(d) == 1 })[0]
	var wrapper map[string]json.RawMessage
	if err := json.Unmarshal(got.body, &wrapper); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "createdAt", "id", "contents"} {
		if _, ok := wrapper[k]; !ok {
			t.Errorf("payload has no %q: %s", k, got.body)
		}
	}
	var contents map[string]any
	if err := json.Unmarshal(wrapper["contents"], &contents); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"namespace": "team", "repository": "app", "tag": "1.0", "digest": sampleDigest,
		"imageName": "dtr.example.org/team/app:1.0", "os": "linux", "architecture": "arm64",
		"author": "alice", "pushedAt": "2025-03-04T05:06:07Z",
	}
	for k, v := range want {
		if contents[k] != v {
			t.Errorf("contents.%s = %v, want %v", k, contents[k], v)
		}
	}
}

// TestEveryTypeHasASample: the samples (the test endpoint and the
// README's examples) exist for every type and match subscriptions of
// their own scope.
func TestEveryTypeHasASample(t *testing.T) {
	for _, typ := range Types {
		ev, err := Sample(typ, "dtr.example.org")
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if ev.Type != typ {
			t.Errorf("sample of %s has type %s", typ, ev.Type)
		}
		repo := ev.Repository()
		if typ.Scope() == ScopeGlobal {
			if repo != "" {
				t.Errorf("%s: global event about repository %q", typ, repo)
			}
		} else if !(Webhook{Type: typ, Key: "foo"}).Matches(typ, repo) {
			t.Errorf("%s: a subscription to namespace foo does not match its sample (repository %q)", typ, repo)
		}
	}
}

// TestMatching: keys select repositories, namespaces or everything.
func TestMatching(t *testing.T) {
	tests := []struct {
		key, repo string
		want      bool
	}{
		{"", "a/b", true},
		{"a/b", "a/b", true},
		{"a/b", "a/bc", false},
		{"a/b", "a/b/c", false},
		{"a", "a/b", true},
		{"a", "a", true},
		{"a", "ab/c", false},
		{"a", "b/a", false},
	}
	for _, tt := range tests {
		t.Run(tt.key+"~"+tt.repo, func(t *testing.T) {
			if got := (Webhook{Type: TagPush, Key: tt.key}).Matches(TagPush, tt.repo); got != tt.want {
				t.Errorf("got %v", got)
			}
			if (Webhook{Type: TagDelete, Key: tt.key}).Matches(TagPush, tt.repo) {
				t.Error("matches another type")
			}
		})
	}
}

// TestReceiverDownThenBack: while the receiver is unreachable (its
// connections cut) and then answering 503, events wait; once it is back
// they arrive in the order they were made, each accepted once.
func TestReceiverDownThenBack(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	var mu sync.Mutex
	down := true
	rc.set(func(n int, _ Event) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}, func(n int) bool { mu.Lock(); defer mu.Unlock(); return down && n%2 == 0 })
	w := subscribe(t, s, TagPush, "team/app", rc.url())
	var want []string
	for i := range 20 {
		evs, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, evs[0].ID)
	}
	rc.waitFor(t, "several failed attempts", func(d []delivery) bool { return len(d) >= 6 })
	for _, d := range rc.all() {
		if d.event.ID != want[0] {
			t.Fatalf("while the first event fails, %s was sent", d.event.ID)
		}
	}
	mu.Lock()
	down = false
	mu.Unlock()
	got := rc.waitFor(t, "all 20 accepted", func(d []delivery) bool { return len(accepted(d)) == 20 })
	if g := ids(accepted(got)); !slices.Equal(g, want) {
		t.Fatalf("accepted in order %v, want %v", g, want)
	}
	for _, d := range got {
		if !Verify(w.Secret, d.body, d.header.Get(HeaderSignature)) {
			t.Fatal("a retry's signature does not verify")
		}
	}
	if _, off := s.Subscriptions.Inactive(w.ID); off {
		t.Fatal("webhook went inactive")
	}
}

func accepted(ds []delivery) []delivery {
	var out []delivery
	for _, d := range ds {
		if d.status >= 200 && d.status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// TestInactiveAfterTheLimit: a receiver that answers 500 forever makes the
// webhook inactive after MaxAttempts; the history shows each attempt;
// re-enabled, it delivers from the event it stopped at.
func TestInactiveAfterTheLimit(t *testing.T) {
	store := newStore(t)
	d := fastDelivery(t)
	d.MaxAttempts = 4
	s := startService(t, store, Config{Delivery: d})
	rc := newReceiver(t)
	var mu sync.Mutex
	status := http.StatusInternalServerError
	rc.set(func(int, Event) int { mu.Lock(); defer mu.Unlock(); return status }, nil)
	w := subscribe(t, s, TagPush, "team/app", rc.url())
	evs, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", "a"), tagPush(t, "team/app", "b"))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the webhook to go inactive", func() bool { _, off := s.Subscriptions.Inactive(w.ID); return off })
	if n := len(rc.all()); n != 4 {
		t.Errorf("%d attempts before inactive, want 4", n)
	}
	st, _, _, err := s.Subscriptions.deliveryState(ctxT(t), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.History) != 4 {
		t.Fatalf("history has %d attempts, want 4", len(st.History))
	}
	for i, a := range st.History {
		if a.Status != 500 || a.Success || a.Attempt != i+1 || a.EventID != evs[0].ID || a.Error == "" {
			t.Errorf("attempt %d: %+v", i, a)
		}
	}
	mark, _ := s.Subscriptions.Inactive(w.ID)
	if mark.By != "delivery" || mark.Reason == "" {
		t.Errorf("inactive mark %+v", mark)
	}
	mu.Lock()
	status = http.StatusNoContent
	mu.Unlock()
	if err := s.Subscriptions.SetInactive(ctxT(t), w.ID, false, "admin", ""); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "both delivered after re-enabling", func(d []delivery) bool { return len(accepted(d)) == 2 })
	if g := ids(accepted(got)); !slices.Equal(g, []string{evs[0].ID, evs[1].ID}) {
		t.Fatalf("accepted %v", g)
	}
}

// TestRetryAfter: a 429 with Retry-After waits at least that long.
func TestRetryAfter(t *testing.T) {
	store := newStore(t)
	d := fastDelivery(t)
	d.BackoffMax = 5 * time.Second
	s := startService(t, store, Config{Delivery: d})
	rc := newReceiver(t)
	rc.set(func(n int, _ Event) int {
		if n == 0 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	}, nil)
	rc.mu.Lock()
	rc.header = http.Header{"Retry-After": {"1"}}
	rc.mu.Unlock()
	subscribe(t, s, TagPush, "", rc.url())
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "x/y", "1")); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "the retry", func(d []delivery) bool { return len(d) == 2 })
	if gap := got[1].at.Sub(got[0].at); gap < 900*time.Millisecond {
		t.Fatalf("retried after %s, Retry-After said 1s", gap)
	}
}

// TestCommitOrderNotKeyOrder: an entry whose key sorts first but commits
// later (as a slow writer on another replica would) is still delivered,
// after the one that committed first.
func TestCommitOrderNotKeyOrder(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	subscribe(t, s, TagPush, "", rc.url())
	late, early := tagPush(t, "a/b", "late"), tagPush(t, "a/b", "early")
	late.ID, early.ID = "zzzz-first-committed", "aaaa-second-committed"
	if _, err := s.Outbox.Emit(ctxT(t), late); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the first", func(d []delivery) bool { return len(d) == 1 })
	if _, err := s.Outbox.Emit(ctxT(t), early); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "both", func(d []delivery) bool { return len(d) == 2 })
	if g := ids(got); !slices.Equal(g, []string{late.ID, early.ID}) {
		t.Fatalf("delivered %v", g)
	}
}

// TestConcurrentWriters: many writers at once; every event is delivered,
// none skipped, each once (the receiver never fails).
func TestConcurrentWriters(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	subscribe(t, s, TagPush, "", rc.url())
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", fmt.Sprintf("%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := rc.waitFor(t, "every event", func(d []delivery) bool { return len(d) >= writers*each })
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d.event.ID] {
			t.Fatalf("%s delivered twice", d.event.ID)
		}
		seen[d.event.ID] = true
	}
}

// TestTwoReplicas: two services on one store (two replicas) deliver each
// event once: one deliverer per webhook.
func TestTwoReplicas(t *testing.T) {
	store := newStore(t)
	a := startService(t, store, Config{})
	b := startService(t, store, Config{})
	rc := newReceiver(t)
	subscribe(t, a, TagPush, "", rc.url())
	for i := range 30 {
		writer := a
		if i%2 == 1 {
			writer = b
		}
		if _, err := writer.Outbox.Emit(ctxT(t), tagPush(t, "a/b", strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := rc.waitFor(t, "30 deliveries", func(d []delivery) bool { return len(d) >= 30 })
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d.event.ID] {
			t.Fatalf("%s delivered twice", d.event.ID)
		}
		seen[d.event.ID] = true
	}
}

// TestDeletedWebhookStops: after a delete nothing more is sent and its
// state is gone.
func TestDeletedWebhookStops(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	w := subscribe(t, s, TagPush, "", rc.url())
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "1")); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "one", func(d []delivery) bool { return len(d) == 1 })
	if err := s.Subscriptions.Delete(ctxT(t), w.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the deliverer to stop", func() bool {
		s.Dispatcher.mu.Lock()
		defer s.Dispatcher.mu.Unlock()
		return len(s.Dispatcher.running) == 0
	})
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "2")); err != nil {
		t.Fatal(err)
	}
	// A second webhook proves the event went by: once it has it, the
	// deleted one would have had it too.
	rc2 := newReceiver(t)
	subscribe(t, s, TagPush, "", rc2.url())
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "3")); err != nil {
		t.Fatal(err)
	}
	rc2.waitFor(t, "the other webhook's delivery", func(d []delivery) bool { return len(d) == 1 })
	if n := len(rc.all()); n != 1 {
		t.Fatalf("the deleted webhook got %d deliveries", n)
	}
	if _, _, found, _ := s.Subscriptions.deliveryState(ctxT(t), w.ID); found {
		t.Fatal("the deleted webhook's state is still stored")
	}
}

// TestCleanup: delivered events are removed after the retention; events a
// webhook has not passed stay.
func TestCleanup(t *testing.T) {
	store := newStore(t)
	d := fastDelivery(t)
	d.Retention = time.Nanosecond
	s := startService(t, store, Config{Delivery: d})
	rc := newReceiver(t)
	rc.set(func(_ int, ev Event) int {
		var c ImageContents
		json.Unmarshal(ev.Contents, &c)
		if c.Tag == "blocked" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}, nil)
	subscribe(t, s, TagPush, "", rc.url())
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "1"), tagPush(t, "a/b", "2")); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "both", func(d []delivery) bool { return len(accepted(d)) == 2 })
	waitUntil(t, "the delivered entries to be cleaned up", func() bool {
		kvs, _ := store.List(ctxT(t), entryPrefix, "", 0)
		return len(kvs) == 0
	})
	blocked, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "blocked"))
	if err != nil {
		t.Fatal(err)
	}
	// Refused by the receiver: a cleanup round must keep it.
	rc.waitFor(t, "an attempt at the blocked event", func(d []delivery) bool { return len(d) >= 3 })
	s.Dispatcher.cleanup(ctxT(t))
	if _, err := store.Get(ctxT(t), entryPrefix+blocked[0].ID); err != nil {
		t.Fatalf("an undelivered entry was cleaned up: %v", err)
	}
}

// TestNoDeliveryToAnInactiveWebhook: a deliverer started while the
// replica's view of the inactive marks lags the store (the mark written by
// a deliverer that just gave up, or by another replica) must not send: it
// reads the mark from the store. Before, such a deliverer made one more
// attempt (CI saw 7 attempts in the history of a webhook inactive after 6).
func TestNoDeliveryToAnInactiveWebhook(t *testing.T) {
	store := newStore(t)
	s := startService(t, store, Config{})
	rc := newReceiver(t)
	w := subscribe(t, s, TagPush, "team/app", rc.url())
	if err := s.Subscriptions.SetInactive(ctxT(t), w.ID, true, "admin", "paused"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", "a")); err != nil {
		t.Fatal(err)
	}
	// A second dispatcher's deliverer, started as a scan with a stale view
	// would start it.
	d2, err := NewDispatcher(store, s.Subscriptions, fastDelivery(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d2.feed.run(ctx)
	}()
	defer wg.Wait()
	defer cancel()
	rc.mu.Lock()
	sent := rc.changed // closed at the endpoint's first request
	rc.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d2.deliverTo(ctx, w)
	}()
	select {
	case <-done:
	case <-sent:
		t.Fatal("a deliverer sent an event to an inactive webhook")
	}
	if n := len(rc.all()); n != 0 {
		t.Fatalf("the inactive webhook's endpoint got %d requests, want 0", n)
	}
	if ctx.Err() != nil {
		t.Fatal("the deliverer of an inactive webhook ran until its context ended")
	}
}
