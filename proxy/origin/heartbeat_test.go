package origin_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"go.uber.org/zap/zaptest"
)

// cacheState is the caches API's answer for one cache, in part.
type cacheState struct {
	Healthy    bool   `json:"healthy"`
	Mode       string `json:"mode"`
	Reason     string `json:"reason"`
	NodeHealth []struct {
		URL, Mode, Version string
		Healthy            bool
	} `json:"nodeHealth"`
}

func (tp *topology) cacheState(t *testing.T, name string) cacheState {
	t.Helper()
	code, body := tp.api(t, "alice", "GET", "/api/v0/content_caches/"+name, nil)
	var st cacheState
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("GET cache %s: %d %s", name, code, body)
	}
	return st
}

// waitCache waits until the API shows the cache in the wanted state.
func (tp *topology) waitCache(t *testing.T, name string, ok func(cacheState) bool) cacheState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := tp.cacheState(t, name)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache %s never reached the state wanted: %+v", name, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHeartbeatCache: a cache the origin cannot reach (registered with a
// probe address where nothing listens) is down and unused; once it posts
// heartbeats on its own account it is up in heartbeat mode, gets alice's
// redirects, and the origin's prefetch hints reach it in the heartbeats'
// answers; when the beats stop it is down within about two intervals
// (the reason says so) and alice pulls from the origin again.
func TestHeartbeatCache(t *testing.T) {
	tp := newTopology(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := "http://" + ln.Addr().String()
	ln.Close()
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]any{
		"name": "asia", "host": tp.cache.URL, "probeHost": unreachable, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	if code, body := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("settings: %d %s", code, body)
	}
	if st := tp.cacheState(t, "asia"); st.Healthy || st.Mode != "probe" {
		t.Fatalf("an unreachable cache: %+v", st)
	}

	// A heartbeat from another account is refused.
	req, _ := http.NewRequest(http.MethodPost, tp.origin.URL+regapi.HeartbeatPath("asia"), nil)
	req.SetBasicAuth("alice", password)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice's heartbeat for asia: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	tp.prober.Interval = 100 * time.Millisecond
	wg.Add(1)
	go func() { defer wg.Done(); tp.prober.Run(ctx) }() // expires missed beats; probes fail
	hbCtx, stopBeats := context.WithCancel(ctx)
	hb := &cache.Heartbeat{URL: tp.origin.URL, Cache: "asia", Username: "cache-asia", Password: password,
		Client: http.DefaultClient, Interval: 200 * time.Millisecond, Version: "test", Server: tp.cacheServer,
		Stats: func() (int64, int64, int64) { return 1, 2, 3 }}
	wg.Add(1)
	go func() { defer wg.Done(); hb.Run(hbCtx) }()
	st := tp.waitCache(t, "asia", func(s cacheState) bool { return s.Healthy })
	if st.Mode != "heartbeat" || len(st.NodeHealth) != 1 || st.NodeHealth[0].Version != "test" {
		t.Fatalf("a heartbeating cache: %+v", st)
	}

	img := tp.push(t, "website/ui:beat", 42)
	tp.getManifest(t, "alice", "website/ui", "beat")
	for _, d := range blobDigests(img) {
		if !waitHolds(t, tp.cacheStore, d) {
			t.Fatalf("the hint for %s did not reach the heartbeating cache", d)
		}
	}
	before := tp.cacheCount.BlobGets(blobDigests(img)[0])
	if _, err := tp.pull("alice", "website/ui:beat"); err != nil {
		t.Fatal(err)
	}
	if tp.cacheCount.BlobGets(blobDigests(img)[0]) != before+1 {
		t.Fatal("alice's pull was not redirected to the heartbeating cache")
	}

	stopBeats()
	start := time.Now()
	st = tp.waitCache(t, "asia", func(s cacheState) bool { return !s.Healthy })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("down %s after the beats stopped, want within about two intervals (400 ms) and a probe round", took)
	}
	if st.Reason == "" {
		t.Errorf("no reason: %+v", st)
	}
	t.Logf("down %s after the last beat: %s", time.Since(start), st.Reason)
}

// TestHeartbeatsMissed: beats that stop arriving without their connection
// closing (a partition) take the node down after two missed beats, with
// that reason.
func TestHeartbeatsMissed(t *testing.T) {
	tp := newTopology(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := "http://" + ln.Addr().String()
	ln.Close()
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]any{
		"name": "asia", "host": tp.cache.URL, "probeHost": unreachable, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	tp.prober.Interval = 50 * time.Millisecond
	wg.Add(1)
	go func() { defer wg.Done(); tp.prober.Run(ctx) }()
	beat := func() {
		req, _ := http.NewRequest(http.MethodPost, tp.origin.URL+regapi.HeartbeatPath("asia"), strings.NewReader(`{"ready":true,"intervalMs":200}`))
		req.SetBasicAuth("cache-asia", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("beat: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	beat() // the first beat of a node that was down from its probe: Rise beats to come up
	beat()
	last := time.Now() // the last beat arrives now (and is held an interval)
	beat()
	tp.waitCache(t, "asia", func(s cacheState) bool { return s.Healthy && s.Mode == "heartbeat" })
	st := tp.waitCache(t, "asia", func(s cacheState) bool { return !s.Healthy })
	if took := time.Since(last); took < 450*time.Millisecond || !strings.Contains(st.Reason, "no heartbeat for") {
		t.Fatalf("down %s after the last beat (%q), want after two missed beats of 200 ms", took, st.Reason)
	}
}

// TestHeartbeatHintsAcrossReplicas: the node's beats reach one origin
// replica while alice's manifest GET goes through another: the hint
// travels through the state store and reaches the cache in the answer to
// its next beat.
func TestHeartbeatHintsAcrossReplicas(t *testing.T) {
	tp := newTopology(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := "http://" + ln.Addr().String()
	ln.Close()
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]any{
		"name": "asia", "host": tp.cache.URL, "probeHost": unreachable, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	if code, body := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("settings: %d %s", code, body)
	}
	log := zaptest.NewLogger(t).Named("replica2")
	prober2 := &origin.Prober{Client: http.DefaultClient, List: tp.db.Caches, Logger: log, Replica: "replica-2", Store: tp.db.Store()}
	backend, _ := url.Parse(tp.reg.URL)
	srv2, err := origin.New(origin.Config{Backend: backend, Users: tp.users, Access: tp.access, Keys: tp.keys, DB: tp.db, Prober: prober2, Logger: log, PrefetchHints: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	replica2 := newHTTPServer(t, serve.Mux(srv2, nil, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); prober2.Run(ctx) }() // keeps replica 2's view of the verdicts current
	hb := &cache.Heartbeat{URL: tp.origin.URL, Cache: "asia", Username: "cache-asia", Password: password,
		Client: http.DefaultClient, Interval: 200 * time.Millisecond, Server: tp.cacheServer}
	wg.Add(1)
	go func() { defer wg.Done(); hb.Run(ctx) }()
	tp.waitCache(t, "asia", func(s cacheState) bool { return s.Healthy && s.Mode == "heartbeat" })
	deadline := time.Now().Add(10 * time.Second)
	for !prober2.Up(mustCache(t, tp, "asia")) {
		if time.Now().After(deadline) {
			t.Fatal("replica 2 never saw the heartbeating node up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	img := tp.push(t, "website/ui:across", 43)
	req, _ := http.NewRequest(http.MethodGet, replica2+"/v2/website/ui/manifests/across", nil)
	req.SetBasicAuth("alice", password)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest through replica 2: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, d := range blobDigests(img) {
		if !waitHolds(t, tp.cacheStore, d) {
			t.Fatalf("the hint made on replica 2 for %s did not reach the cache beating to replica 1", d)
		}
	}
}

func mustCache(t *testing.T, tp *topology, name string) origin.Cache {
	t.Helper()
	c, err := tp.db.Cache(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
