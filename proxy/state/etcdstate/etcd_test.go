package etcdstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/etcdstate"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

// claimTTL is the ttl of the claims whose holders die in these tests; the
// embedded members' election timeout (500ms) allows a lease this short.
const claimTTL = 2 * time.Second

// expirySlack is how much later than the ttl an expired lease may become
// claimable: the leader checks for expired leases every 500ms, and the
// peer polls.
const expirySlack = 1500 * time.Millisecond

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// claimWhenFree polls a claim until it is taken, returning when.
func claimWhenFree(t *testing.T, s state.Store, key string, within time.Duration) (state.Claim, time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := s.Claim(ctxT(t), key, claimTTL)
		if err == nil {
			return c, time.Now()
		}
		if !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("claim %s: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still claimed after %s: %v", key, within, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

// TestClaimOfACutOffHolder cuts a holder off the cluster (its only link
// goes through a relay that is cut): the peer can take the key within the
// ttl, not before the lease ran out, and the holder saw its claim lost
// before the peer could take it.
func TestClaimOfACutOffHolder(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	relay := etcdtest.NewRelay(t, c.Members[0].ClientURL)
	holder := openStore(t, []string{relay.URL()}, "/cut/")
	peer := openStore(t, c.Endpoints(), "/cut/")
	ctx := ctxT(t)
	for _, wait := range []time.Duration{0, claimTTL} { // cut before the first renewal, and after a few
		key := fmt.Sprintf("jobclaim/%s", wait)
		claim, err := holder.Claim(ctx, key, claimTTL)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait) // lets renewals go by; the test waits for events below
		lostAt := make(chan time.Time, 1)
		go func() { <-claim.Lost(); lostAt <- time.Now() }()
		relay.Cut()
		cut := time.Now()
		if _, err := peer.Claim(ctx, key, claimTTL); !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("peer claim right after the cut: %v, want ErrClaimed (the lease outlives its holder by the ttl)", err)
		}
		taken, at := claimWhenFree(t, peer, key, claimTTL+expirySlack)
		select {
		case <-claim.Lost():
		default:
			t.Fatal("the peer took the key while the cut-off holder still believed it held it")
		}
		t.Logf("cut after %s: holder saw the loss after %s, the peer claimed after %s (ttl %s)", wait,
			(<-lostAt).Sub(cut).Round(time.Millisecond), at.Sub(cut).Round(time.Millisecond), claimTTL)
		relay.Heal()
		// Healed, the old holder sees the new one's claim.
		if _, err := holder.Claim(ctx, key, claimTTL); !errors.Is(err, state.ErrClaimed) {
			t.Fatalf("old holder, healed: %v, want ErrClaimed", err)
		}
		taken.Release(ctx)
	}
}

// TestClaimOfAKilledHolder kills (SIGKILL) a process holding a claim: it
// releases nothing, and the peer takes the key within the ttl.
func TestClaimOfAKilledHolder(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	peer := openStore(t, c.Endpoints(), "/killed/")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldClaim$", "-test.v")
	cmd.Env = append(os.Environ(), "ETCDSTATE_HELPER=1", "ETCDSTATE_ENDPOINTS="+strings.Join(c.Endpoints(), ","), "ETCDSTATE_PREFIX=/killed/")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	claimed := false
	for !claimed && lines.Scan() {
		claimed = lines.Text() == "claimed"
	}
	if !claimed {
		t.Fatal("the helper process did not claim")
	}
	ctx := ctxT(t)
	if _, err := peer.Claim(ctx, "jobclaim/k", claimTTL); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("peer claim while the helper holds it: %v, want ErrClaimed", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	taken, at := claimWhenFree(t, peer, "jobclaim/k", claimTTL+expirySlack)
	defer taken.Release(ctx)
	t.Logf("claimable %s after the kill (ttl %s)", at.Sub(killed).Round(time.Millisecond), claimTTL)
}

// TestHelperHoldClaim is the process TestClaimOfAKilledHolder kills.
func TestHelperHoldClaim(t *testing.T) {
	if os.Getenv("ETCDSTATE_HELPER") == "" {
		t.Skip("the helper process of TestClaimOfAKilledHolder")
	}
	ctx := context.Background()
	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: strings.Split(os.Getenv("ETCDSTATE_ENDPOINTS"), ","), Prefix: os.Getenv("ETCDSTATE_PREFIX")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, "jobclaim/k", claimTTL)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("claimed")
	<-c.Lost() // until killed
	t.Fatal("claim lost while the helper ran")
}

// TestViewRelistsAfterCompaction cuts a View's client off while the peer
// writes, deletes and compacts the history: the watch cannot resume from a
// compacted revision, so its channel closes, and the View lists again and
// drops the key whose delete event is gone.
func TestViewRelistsAfterCompaction(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	relay := etcdtest.NewRelay(t, c.Members[0].ClientURL)
	viewer := openStore(t, []string{relay.URL()}, "/compact/")
	writer := openStore(t, c.Endpoints(), "/compact/")
	ctx := ctxT(t)
	for _, k := range []string{"v/a", "v/b"} {
		if _, err := writer.Txn(ctx, nil, state.Put(k, []byte(k))); err != nil {
			t.Fatal(err)
		}
	}
	changes := make(chan string, 100)
	v := &state.View[string]{Store: viewer, Prefix: "v/", Logger: zaptest.NewLogger(t),
		Decode:   func(_ string, b []byte) (string, error) { return string(b), nil },
		OnChange: func(k string, exists bool) { changes <- fmt.Sprintf("%s:%v", k, exists) }}
	vctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.Run(vctx) }()
	defer func() { stop(); <-done }()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := viewer.Watch(ctx, "v/")
	if err != nil {
		t.Fatal(err)
	}

	relay.Cut()
	var rev int64
	for _, op := range []state.Op{state.Put("v/c", []byte("v/c")), state.Delete("v/a"), state.Put("v/d", []byte("v/d"))} {
		if rev, err = writer.Txn(ctx, nil, op); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := writer.Client().Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	relay.Heal()

	// The raw watch ends: its next revision is compacted away.
	for closed := false; !closed; {
		select {
		case _, ok := <-raw:
			closed = !ok
		case <-time.After(30 * time.Second):
			t.Fatal("a watch resumed across a compaction was not closed")
		}
	}
	// The View lists again and settles on the state after the cut.
	want := map[string]bool{"v/a:false": true, "v/c:true": true, "v/d:true": true}
	for len(want) > 0 {
		select {
		case ch := <-changes:
			delete(want, ch)
		case <-time.After(30 * time.Second):
			t.Fatalf("the View did not recover; still missing %v", want)
		}
	}
	if got := v.All(); strings.Join(got, " ") != "v/b v/c v/d" {
		t.Fatalf("View after the relist: %q", got)
	}
}

// TestThreeMembersOneStopped stops the leader of a three-member cluster:
// clients given every endpoint go on through the other two (reads,
// conditional writes, watches, claims, and a claim held across the
// failover stays held); with a second member gone there is no quorum and
// requests fail instead of answering stale data.
func TestThreeMembersOneStopped(t *testing.T) {
	c := etcdtest.Start(t, 3, etcdtest.Options{NoFsync: true})
	a := openStore(t, c.Endpoints(), "/ha/")
	b := openStore(t, c.Endpoints(), "/ha/")
	ctx := ctxT(t)
	held, err := a.Claim(ctx, "jobclaim/long", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan string, 100)
	v := &state.View[string]{Store: a, Prefix: "k/", Logger: zaptest.NewLogger(t),
		Decode:   func(_ string, b []byte) (string, error) { return string(b), nil },
		OnChange: func(k string, exists bool) { changes <- fmt.Sprintf("%s:%v", k, exists) }}
	vctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.Run(vctx) }()
	defer func() { stop(); <-done }()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rev, err := b.Txn(ctx, nil, state.Put("k/before", []byte("1")))
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, "k/before:true")

	leader := c.Leader(t)
	c.Members[leader].Stop()
	c.Leader(t) // the other two elect one
	t.Logf("stopped member %d, the leader", leader)

	rev2, err := b.Txn(ctx, []state.Cond{{Key: "k/before", Rev: rev}}, state.Put("k/before", []byte("2")), state.Put("k/after", []byte("3")))
	if err != nil {
		t.Fatalf("conditional write after the failover: %v", err)
	}
	if kv, err := a.Get(ctx, "k/after"); err != nil || kv.Rev != rev2 {
		t.Fatalf("read on the other client: %+v %v", kv, err)
	}
	waitChange(t, changes, "k/after:true")
	if _, err := b.Claim(ctx, "jobclaim/long", 3*time.Second); !errors.Is(err, state.ErrClaimed) {
		t.Fatalf("a claim held across the failover: %v, want ErrClaimed", err)
	}
	select {
	case <-held.Lost():
		t.Fatal("the claim was lost in the failover")
	default:
	}
	fresh, err := a.Claim(ctx, "jobclaim/new", 3*time.Second)
	if err != nil {
		t.Fatalf("claim after the failover: %v", err)
	}
	fresh.Release(ctx)

	// A second member down: no quorum, no answer.
	for i, m := range c.Members {
		if i != leader {
			m.Stop()
			break
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := a.Get(qctx, "k/after"); err == nil {
		t.Fatal("a read without quorum answered")
	}
}

func waitChange(t *testing.T, changes <-chan string, want string) {
	t.Helper()
	for {
		select {
		case c := <-changes:
			if c == want {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no change %s", want)
		}
	}
}

// TestCloseStopsGoroutines opens a store, uses every part of it and closes
// it: no goroutine of it (or of its client) is left.
func TestCloseStopsGoroutines(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	ctx := ctxT(t)
	// A first client makes the member start all its serving goroutines,
	// which belong to the member, not to the store.
	warm, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()
	before := goleak.IgnoreCurrent()
	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: c.Endpoints(), Prefix: "/leak/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, ""); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	if _, err := s.Watch(wctx, "x/"); err != nil {
		t.Fatal(err)
	}
	cancel()
	held, err := s.Claim(ctx, "c/held", claimTTL)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	if _, err := s.Claim(cctx, "c/ended", claimTTL); err != nil {
		t.Fatal(err)
	}
	ccancel()
	r, err := s.Claim(ctx, "c/released", claimTTL)
	if err != nil {
		t.Fatal(err)
	}
	r.Release(ctx)
	if _, err := s.Txn(ctx, nil, state.Put("k", []byte("v"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-held.Lost()
	goleak.VerifyNone(t, before)
}

// TestOpenUnreachable: a cluster that does not answer fails Open within
// the dial timeout, naming the endpoint.
func TestOpenUnreachable(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	url := c.Members[0].ClientURL
	c.Members[0].Stop()
	start := time.Now()
	_, err := etcdstate.Open(ctxT(t), etcdstate.Config{Endpoints: []string{url}, DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("Open of a stopped member: %v, want an error naming %s", err, url)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %s with a 1s dial timeout", d)
	}
}

// TestTLSAndAuth runs against members that serve TLS, require a client
// certificate and have etcd's auth enabled: the store connects with the
// CA, its certificate and a password, and is refused without them.
func TestTLSAndAuth(t *testing.T) {
	files := etcdtest.NewTLSFiles(t)
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true, TLS: &files})
	ctx := ctxT(t)
	tlsCfg, err := etcdstate.ClientTLS(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: c.Endpoints(), TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	ec := admin.Client()
	for _, step := range []func() error{
		func() error { _, err := ec.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := ec.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := ec.UserAdd(ctx, "origin", "s3cret"); return err },
		func() error { _, err := ec.RoleAdd(ctx, "dtrcache"); return err },
		func() error {
			_, err := ec.RoleGrantPermission(ctx, "dtrcache", "/dtrcache/", "/dtrcache0", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := ec.UserGrantRole(ctx, "origin", "dtrcache"); return err },
		func() error { _, err := ec.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close()

	s, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: c.Endpoints(), TLS: tlsCfg, Username: "origin", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev, err := s.Txn(ctx, nil, state.Put("k", []byte("v")))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.Claim(ctx, "c", claimTTL)
	if err != nil {
		t.Fatalf("claim with auth: %v", err)
	}
	cl.Release(ctx)
	if kv, err := s.Get(ctx, "k"); err != nil || kv.Rev != rev {
		t.Fatalf("Get over TLS with auth: %+v %v", kv, err)
	}

	caOnly, err := etcdstate.ClientTLS(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]etcdstate.Config{
		"no client certificate": {TLS: caOnly, Username: "origin", Password: "s3cret"},
		"wrong password":        {TLS: tlsCfg, Username: "origin", Password: "wrong"},
		"no TLS":                {Username: "origin", Password: "s3cret"},
	} {
		cfg.Endpoints, cfg.DialTimeout = c.Endpoints(), 2*time.Second
		if s, err := etcdstate.Open(ctx, cfg); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func TestClientTLSRefusesReadableKey(t *testing.T) {
	files := etcdtest.NewTLSFiles(t)
	if err := os.Chmod(files.ClientKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdstate.ClientTLS(files.CA, files.ClientCert, files.ClientKey); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key readable by others: %v", err)
	}
	if _, err := etcdstate.ClientTLS(files.CA, files.ClientCert, ""); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
