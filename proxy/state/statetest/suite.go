// Package statetest is the test suite every state.Store implementation
// passes, the way every distribution storage driver passes its testsuites:
// write the suite against the interface, run it against each store.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// Factory opens stores for the suite.
type Factory struct {
	// New returns a fresh, empty store; the suite closes it.
	New func(t *testing.T) state.Store
	// Peer returns a second handle onto the same data as s (another
	// origin replica's client), or s itself for an embedded store; the
	// suite does not close it.
	Peer func(t *testing.T, s state.Store) state.Store
}

// Run runs the whole suite.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f Factory)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"Conditions", testConditions},
		{"AtomicTxn", testAtomicTxn},
		{"Delete", testDelete},
		{"List", testList},
		{"Watch", testWatch},
		{"WatchPeer", testWatchPeer},
		{"WatchCancel", testWatchCancel},
		{"ConcurrentUpdate", testConcurrentUpdate},
		{"Append", testAppend},
		{"Claim", testClaim},
		{"ClaimPeer", testClaimPeer},
		{"ClaimNamespace", testClaimNamespace},
		{"ClaimInvalid", testClaimInvalid},
		{"Limits", testLimits},
		{"View", testView},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, f) })
	}
}

func open(t *testing.T, f Factory) state.Store {
	t.Helper()
	s := f.New(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s state.Store, key, value string) int64 {
	t.Helper()
	rev, err := s.Txn(ctxT(t), nil, state.Put(key, []byte(value)))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return rev
}

func testGetMissing(t *testing.T, f Factory) {
	s := open(t, f)
	if _, err := s.Get(ctxT(t), "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
}

func testPutGet(t *testing.T, f Factory) {
	s := open(t, f)
	r1 := put(t, s, "a/1", "one")
	r2 := put(t, s, "a/1", "uno")
	if r1 <= 0 || r2 <= r1 {
		t.Fatalf("revisions %d then %d: want positive and growing", r1, r2)
	}
	kv, err := s.Get(ctxT(t), "a/1")
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) != "uno" || kv.Rev != r2 || kv.Key != "a/1" {
		t.Fatalf("Get = %+v, want a/1=uno at %d", kv, r2)
	}
	empty := put(t, s, "a/empty", "")
	if kv, err := s.Get(ctxT(t), "a/empty"); err != nil || len(kv.Value) != 0 || kv.Rev != empty {
		t.Fatalf("empty value: %+v %v", kv, err)
	}
}

func testConditions(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	rev, err := s.Txn(ctx, []state.Cond{{Key: "c", Rev: 0}}, state.Put("c", []byte("v1")))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.Txn(ctx, []state.Cond{{Key: "c", Rev: 0}}, state.Put("c", []byte("again"))); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	rev2, err := s.Txn(ctx, []state.Cond{{Key: "c", Rev: rev}}, state.Put("c", []byte("v2")))
	if err != nil {
		t.Fatalf("update at the right revision: %v", err)
	}
	if _, err := s.Txn(ctx, []state.Cond{{Key: "c", Rev: rev}}, state.Put("c", []byte("stale"))); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("update at a stale revision: %v, want ErrConflict", err)
	}
	if _, err := s.Txn(ctx, []state.Cond{{Key: "missing", Rev: 5}}, state.Put("c", []byte("x"))); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("condition on a missing key with a revision: %v, want ErrConflict", err)
	}
	kv, _ := s.Get(ctx, "c")
	if string(kv.Value) != "v2" || kv.Rev != rev2 {
		t.Fatalf("after conflicts: %+v, want v2 at %d", kv, rev2)
	}
}

func testAtomicTxn(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	put(t, s, "x", "1")
	_, err := s.Txn(ctx, []state.Cond{{Key: "x", Rev: 0}}, state.Put("y", []byte("2")), state.Put("z", []byte("3")))
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("txn with a failing condition: %v", err)
	}
	for _, k := range []string{"y", "z"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("%s written by a failed txn: %v", k, err)
		}
	}
	rev, err := s.Txn(ctx, nil, state.Put("y", []byte("2")), state.Put("z", []byte("3")), state.Delete("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"y", "z"} {
		if kv, err := s.Get(ctx, k); err != nil || kv.Rev != rev {
			t.Fatalf("%s: %+v %v, want revision %d (one revision per txn)", k, kv, err, rev)
		}
	}
	if _, err := s.Get(ctx, "x"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("x not deleted: %v", err)
	}
}

func testDelete(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	rev := put(t, s, "d", "v")
	if _, err := s.Txn(ctx, []state.Cond{{Key: "d", Rev: rev + 1000}}, state.Delete("d")); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("conditional delete at a wrong revision: %v", err)
	}
	if _, err := s.Txn(ctx, []state.Cond{{Key: "d", Rev: rev}}, state.Delete("d")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "d"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := s.Txn(ctx, nil, state.Delete("never-was")); err != nil {
		t.Fatalf("delete of a missing key: %v, want no error", err)
	}
}

func testList(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	for _, k := range []string{"p/c", "p/a", "p/b", "pz", "o/a", "p/d"} {
		put(t, s, k, "v-"+k)
	}
	keys := func(kvs []state.KV) string {
		out := ""
		for _, kv := range kvs {
			out += kv.Key + " "
		}
		return out
	}
	tests := []struct {
		prefix, after string
		limit         int
		want          string
	}{
		{"p/", "", 0, "p/a p/b p/c p/d "},
		{"p/", "p/b", 0, "p/c p/d "},
		{"p/", "", 2, "p/a p/b "},
		{"p/", "p/a", 2, "p/b p/c "},
		{"p/", "p/d", 0, ""},
		{"p/", "o", 0, "p/a p/b p/c p/d "}, // after sorts before the prefix
		{"p/", "a", 1, "p/a "},
		{"p/", "p/", 0, "p/a p/b p/c p/d "},
		{"p/", "q", 0, ""}, // after sorts after the prefix
		{"q/", "", 0, ""},
		{"", "", 0, "o/a p/a p/b p/c p/d pz "},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix, tt.after, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if keys(got) != tt.want {
			t.Errorf("List(%q, %q, %d) = %q, want %q", tt.prefix, tt.after, tt.limit, keys(got), tt.want)
		}
		for _, kv := range got {
			if string(kv.Value) != "v-"+kv.Key || kv.Rev <= 0 {
				t.Errorf("List entry %+v", kv)
			}
		}
	}
}

// next waits for one event.
func next(t *testing.T, ch <-chan state.Event) state.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return state.Event{}
}

func testWatch(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	put(t, s, "w/before", "x")
	ch, err := s.Watch(ctx, "w/")
	if err != nil {
		t.Fatal(err)
	}
	r1 := put(t, s, "w/a", "1")
	put(t, s, "other", "ignored")
	r2, err := s.Txn(ctx, nil, state.Put("w/b", []byte("2")), state.Delete("w/a"))
	if err != nil {
		t.Fatal(err)
	}
	want := []state.Event{
		{Type: state.EventPut, Key: "w/a", Value: []byte("1"), Rev: r1},
		{Type: state.EventPut, Key: "w/b", Value: []byte("2"), Rev: r2},
		{Type: state.EventDelete, Key: "w/a", Rev: r2},
	}
	got := []state.Event{next(t, ch), next(t, ch), next(t, ch)}
	// Within one txn the order of events is not specified.
	if got[1].Key == "w/a" {
		got[1], got[2] = got[2], got[1]
	}
	for i := range want {
		if got[i].Type != want[i].Type || got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) || got[i].Rev != want[i].Rev {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func testWatchPeer(t *testing.T, f Factory) {
	s := open(t, f)
	peer := f.Peer(t, s)
	ctx := ctxT(t)
	ch, err := peer.Watch(ctx, "shared/")
	if err != nil {
		t.Fatal(err)
	}
	rev := put(t, s, "shared/k", "from s")
	ev := next(t, ch)
	if ev.Key != "shared/k" || string(ev.Value) != "from s" || ev.Rev != rev {
		t.Fatalf("peer saw %+v", ev)
	}
	if kv, err := peer.Get(ctx, "shared/k"); err != nil || kv.Rev != rev {
		t.Fatalf("peer Get: %+v %v", kv, err)
	}
}

func testWatchCancel(t *testing.T, f Factory) {
	s := open(t, f)
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context ended")
		}
	}
}

func testConcurrentUpdate(t *testing.T, f Factory) {
	s := open(t, f)
	peer := f.Peer(t, s)
	ctx := ctxT(t)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		st := s
		if i%2 == 1 {
			st = peer
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := state.Update(ctx, st, "counter", func(n *int, _ bool) error { *n++; return nil }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int
	if _, err := state.GetJSON(ctx, s, "counter", &n); err != nil || n != workers*each {
		t.Fatalf("counter = %d (%v), want %d: an update was lost", n, err, workers*each)
	}
}

func testAppend(t *testing.T, f Factory) {
	s := open(t, f)
	peer := f.Peer(t, s)
	ctx := ctxT(t)
	const workers, each = 4, 20
	var wg sync.WaitGroup
	for i := range workers {
		st := s
		if i%2 == 1 {
			st = peer
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if _, err := state.Append(ctx, st, "seq/counter", "seq/e/", []byte(fmt.Sprintf("%d-%d", i, j))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	kvs, err := s.List(ctx, "seq/e/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != workers*each {
		t.Fatalf("%d entries, want %d", len(kvs), workers*each)
	}
	seen := map[string]bool{}
	for i, kv := range kvs {
		n, err := state.ParseSeqKey("seq/e/", kv.Key)
		if err != nil || n != uint64(i+1) {
			t.Fatalf("entry %d has key %s (%d, %v): want gap-free numbers from 1", i, kv.Key, n, err)
		}
		if seen[string(kv.Value)] {
			t.Fatalf("value %s appended twice", kv.Value)
		}
		seen[string(kv.Value)] = true
	}
}

func testClaim(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	c, err := s.Claim(ctx, "claims/job1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "claims/job1", 5*time.Second); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("second claim: %v, want ErrClaimed", err)
	}
	other, err := s.Claim(ctx, "claims/job2", 5*time.Second)
	if err != nil {
		t.Fatalf("a different key: %v", err)
	}
	select {
	case <-c.Lost():
		t.Fatal("claim lost while held")
	default:
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after Release")
	}
	c2, err := s.Claim(ctx, "claims/job1", 5*time.Second)
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	c2.Release(ctx)

	// A claim whose context ends is released.
	cctx, cancel := context.WithCancel(ctx)
	c3, err := s.Claim(cctx, "claims/job3", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c3.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after the claim's context ended")
	}
	waitClaimable(t, s, "claims/job3")
	other.Release(ctx)
}

// waitClaimable waits until key can be claimed (a released claim may take
// a round trip to disappear from a shared store).
func waitClaimable(t *testing.T, s state.Store, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := s.Claim(ctxT(t), key, 5*time.Second)
		if err == nil {
			c.Release(ctxT(t))
			return
		}
		if !errors.Is(err, state.ErrClaimed) || time.Now().After(deadline) {
			t.Fatalf("claim %s: %v", key, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not asserting after a sleep
	}
}

func testClaimPeer(t *testing.T, f Factory) {
	s := open(t, f)
	peer := f.Peer(t, s)
	ctx := ctxT(t)
	c, err := s.Claim(ctx, "claims/shared", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Claim(ctx, "claims/shared", 5*time.Second); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("peer claim of a held key: %v, want ErrClaimed", err)
	}
	c.Release(ctx)
	waitClaimable(t, peer, "claims/shared")
}

func testView(t *testing.T, f Factory) {
	s := open(t, f)
	peer := f.Peer(t, s)
	ctx, cancel := context.WithCancel(ctxT(t))
	put(t, s, "v/a", "1")
	changes := make(chan string, 100)
	v := &state.View[string]{Store: peer, Prefix: "v/",
		Decode:   func(_ string, b []byte) (string, error) { return string(b), nil },
		OnChange: func(k string, exists bool) { changes <- fmt.Sprintf("%s:%v", k, exists) }}
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Get("v/a"); !ok || got != "1" {
		t.Fatalf("after the first listing: %q %v", got, ok)
	}
	waitChange := func(want string) {
		t.Helper()
		for {
			select {
			case c := <-changes:
				if c == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no change %s", want)
			}
		}
	}
	put(t, s, "v/b", "2")
	waitChange("v/b:true")
	if _, err := s.Txn(ctx, nil, state.Delete("v/a")); err != nil {
		t.Fatal(err)
	}
	waitChange("v/a:false")
	if got := v.All(); len(got) != 1 || got[0] != "2" {
		t.Fatalf("All = %q, want [2]", got)
	}
	// Read your own write, and an older event never overwrites it.
	rev := put(t, s, "v/c", "new")
	v.Observe("v/c", []byte("new"), rev)
	if got, _ := v.Get("v/c"); got != "new" {
		t.Fatalf("Observe: %q", got)
	}
	v.Observe("v/c", []byte("old"), rev-1)
	if got, _ := v.Get("v/c"); got != "new" {
		t.Fatalf("an older revision overwrote a newer one: %q", got)
	}
	v.ObserveDelete("v/c", rev-1)
	if _, ok := v.Get("v/c"); !ok {
		t.Fatal("an older delete removed a newer value")
	}
}

func testClosed(t *testing.T, f Factory) {
	s := f.New(t)
	ctx := ctxT(t)
	ch, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	held, err := s.Claim(ctx, "claims/held", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch not closed by Close")
	}
	select {
	case <-held.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("a claim held at Close was not lost")
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := s.List(ctx, "", "", 0); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("List after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Txn(ctx, nil, state.Put("k", nil)); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Txn after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Watch(ctx, ""); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Claim(ctx, "claims/after", time.Second); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Claim after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// testClaimNamespace pins that claims are not keys: Get, List and Watch do
// not see them, and a stored key can be claimed.
func testClaimNamespace(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	ch, err := s.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "ns/claimed", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	if _, err := s.Get(ctx, "ns/claimed"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Get of a claimed key: %v, want ErrNotFound", err)
	}
	if kvs, err := s.List(ctx, "", "", 0); err != nil || len(kvs) != 0 {
		t.Fatalf("List after a claim: %v %v, want nothing", kvs, err)
	}
	rev := put(t, s, "ns/stored", "v")
	if ev := next(t, ch); ev.Key != "ns/stored" || ev.Rev != rev {
		t.Fatalf("first event %+v, want the put of ns/stored (a claim is no event)", ev)
	}
	c2, err := s.Claim(ctx, "ns/stored", 5*time.Second)
	if err != nil {
		t.Fatalf("claim of a stored key: %v", err)
	}
	c2.Release(ctx)
	if kv, err := s.Get(ctx, "ns/stored"); err != nil || string(kv.Value) != "v" || kv.Rev != rev {
		t.Fatalf("a stored key after its claim was released: %+v %v", kv, err)
	}
}

func testClaimInvalid(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := s.Claim(ctx, "claims/bad", ttl); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("Claim with ttl %s: %v, want ErrInvalid", ttl, err)
		}
	}
	if _, err := s.Claim(ctx, "", time.Second); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("Claim of the empty key: %v, want ErrInvalid", err)
	}
}

// testLimits pins the limits of a transaction (the package doc of state):
// the same everywhere, so code that works on one store works on the other.
func testLimits(t *testing.T, f Factory) {
	s := open(t, f)
	ctx := ctxT(t)
	many := func(n int, prefix string) []state.Op {
		ops := make([]state.Op, n)
		for i := range ops {
			ops[i] = state.Put(fmt.Sprintf("%s%03d", prefix, i), []byte("v"))
		}
		return ops
	}
	big := make([]byte, state.MaxTxnBytes)
	tests := []struct {
		name  string
		conds []state.Cond
		ops   []state.Op
	}{
		{"too many writes", nil, many(state.MaxTxnOps+1, "lim/many/")},
		{"too many conditions", make([]state.Cond, state.MaxTxnOps+1), []state.Op{state.Put("lim/x", nil)}},
		{"a key written twice", nil, []state.Op{state.Put("lim/dup", []byte("1")), state.Put("lim/dup", []byte("2"))}},
		{"a put and a delete of one key", nil, []state.Op{state.Put("lim/pd", []byte("1")), state.Delete("lim/pd")}},
		{"the empty key", nil, []state.Op{state.Put("lim/ok", nil), state.Put("", []byte("x"))}},
		{"too many bytes", nil, []state.Op{state.Put("lim/big", big)}},
	}
	for i := range tests[1].conds {
		tests[1].conds[i] = state.Cond{Key: fmt.Sprintf("lim/c%03d", i)}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Txn(ctx, tt.conds, tt.ops...); !errors.Is(err, state.ErrInvalid) {
				t.Fatalf("Txn: %v, want ErrInvalid", err)
			}
		})
	}
	if kvs, err := s.List(ctx, "lim/", "", 0); err != nil || len(kvs) != 0 {
		t.Fatalf("%d keys written by refused transactions (%v)", len(kvs), err)
	}
	// At the limits, a transaction goes through.
	rev, err := s.Txn(ctx, nil, many(state.MaxTxnOps, "lim/many/")...)
	if err != nil {
		t.Fatalf("%d writes: %v", state.MaxTxnOps, err)
	}
	if kvs, err := s.List(ctx, "lim/many/", "", 0); err != nil || len(kvs) != state.MaxTxnOps || kvs[0].Rev != rev {
		t.Fatalf("after %d writes: %d keys (%v)", state.MaxTxnOps, len(kvs), err)
	}
	large := big[:state.MaxTxnBytes-len("lim/large")]
	large[0], large[len(large)-1] = 'a', 'z'
	if _, err := s.Txn(ctx, nil, state.Put("lim/large", large)); err != nil {
		t.Fatalf("a transaction of exactly MaxTxnBytes: %v", err)
	}
	if kv, err := s.Get(ctx, "lim/large"); err != nil || len(kv.Value) != len(large) || kv.Value[0] != 'a' || kv.Value[len(large)-1] != 'z' {
		t.Fatalf("large value read back: %d bytes, %v", len(kv.Value), err)
	}
}
