package events

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// failingCursorStore is a real store whose next `fail` writes of a
// webhook's delivery state fail as an etcd leader election fails them:
// with an error that is not a conflict, before the write (it never
// reached the store) or after it (it committed, but the answer was lost).
// A fake, because no real store fails one chosen write.
type failingCursorStore struct {
	state.Store
	committed bool // the failing writes commit before they fail

	mu     sync.Mutex
	fail   int
	failed int
}

var errElection = errors.New("etcdserver: leader changed (injected)")

func (s *failingCursorStore) Txn(ctx context.Context, conds []state.Cond, ops ...state.Op) (int64, error) {
	cursor := len(ops) > 0 && strings.HasPrefix(ops[0].Key, hookStatePrefix)
	s.mu.Lock()
	fail := cursor && s.failed < s.fail
	if fail {
		s.failed++
	}
	s.mu.Unlock()
	if !fail {
		return s.Store.Txn(ctx, conds, ops...)
	}
	if s.committed {
		if _, err := s.Store.Txn(ctx, conds, ops...); err != nil {
			return 0, err
		}
	}
	return 0, errElection
}

// TestCursorWriteFailureResendsNothing: a cursor write that fails (the
// store lost its leader) is tried again by the same deliverer, which
// still holds its claim: no event already accepted is sent again, whether
// the failed write reached the store or not. Delivery is in order, so a
// last event accepted once proves nothing before it is still coming.
func TestCursorWriteFailureResendsNothing(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run("committed="+strconv.FormatBool(committed), func(t *testing.T) {
			store := &failingCursorStore{Store: newStore(t), committed: committed, fail: 3}
			s := startService(t, store, Config{})
			rc := newReceiver(t)
			subscribe(t, s, TagPush, "team/app", rc.url())
			var want []string
			emit := func(tag string) {
				evs, err := s.Outbox.Emit(ctxT(t), tagPush(t, "team/app", tag))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, evs[0].ID)
			}
			for i := range 5 {
				emit(strconv.Itoa(i))
				// One at a time: each delivery is followed by its own
				// cursor write, so the first three of them fail.
				rc.waitFor(t, "event "+strconv.Itoa(i), func(d []delivery) bool { return len(accepted(d)) >= len(want) })
			}
			waitUntil(t, "the three failing cursor writes", func() bool {
				store.mu.Lock()
				defer store.mu.Unlock()
				return store.failed == store.fail
			})
			emit("last")
			got := rc.waitFor(t, "the last event", func(d []delivery) bool {
				a := accepted(d)
				return len(a) > 0 && a[len(a)-1].event.ID == want[len(want)-1]
			})
			if g := ids(accepted(got)); strings.Join(g, " ") != strings.Join(want, " ") {
				t.Fatalf("accepted %d deliveries %v, want each of the %d events once, in order: %v", len(g), g, len(want), want)
			}
		})
	}
}
