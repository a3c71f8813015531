package etcdstate_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/proxy/state/statetest"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap/zaptest"
)

// openStore opens a store on endpoints under prefix, closed when the test
// ends.
func openStore(t testing.TB, endpoints []string, prefix string) *etcdstate.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: endpoints, Prefix: prefix, DialTimeout: 5 * time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSuite runs the suite of every state.Store on one embedded member;
// each store gets a prefix of its own, and its peer is a second client on
// the same prefix, so watches, conflicts and claims cross clients.
func TestSuite(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	var n atomic.Int64
	statetest.Run(t, statetest.Factory{
		New: func(t *testing.T) state.Store {
			return openStore(t, c.Endpoints(), fmt.Sprintf("/suite/%d/", n.Add(1)))
		},
		Peer: func(t *testing.T, s state.Store) state.Store {
			return openStore(t, c.Endpoints(), s.(*etcdstate.Store).Prefix())
		},
	})
}
