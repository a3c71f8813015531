package origin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"go.uber.org/zap/zaptest"
)

// fleet registers a cache "asia" with n nodes and points alice at it.
func (tp *topology) fleet(t *testing.T, n int) []cacheNode {
	t.Helper()
	nodes := []cacheNode{{srv: tp.cache, count: tp.cacheCount, store: tp.cacheStore}}
	for len(nodes) < n {
		nodes = append(nodes, tp.startCache(t, "asia"))
	}
	var hosts []string
	for _, nd := range nodes {
		hosts = append(hosts, nd.srv.URL)
	}
	if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]any{"name": "asia", "hosts": hosts, "account": "cache-asia"}); code != http.StatusCreated {
		t.Fatalf("register the asia fleet: %d %s", code, body)
	}
	if code, body := tp.api(t, "alice", "PATCH", "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); code != http.StatusOK {
		t.Fatalf("alice's settings: %d %s", code, body)
	}
	return nodes
}

// location asks origin for a blob as alice and returns the node it was
// sent to (the Location without path and query).
func location(t *testing.T, originURL, repo, digest string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, originURL+"/v2/"+repo+"/blobs/"+digest, nil)
	req.SetBasicAuth("alice", password)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("blob %s: %d, want 307", digest, resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host
}

// TestFleetRedirects: a cache with three nodes gets each blob on exactly
// one node, the one rendezvous hashing picks; every blob is filled once
// across the fleet; a second origin replica on the same state picks the
// same node for every blob; prefetch hints go to the node that will be
// asked, each node prefetching only its own share.
func TestFleetRedirects(t *testing.T) {
	tp := newTopology(t)
	nodes := tp.fleet(t, 3)
	var imgs []string
	var digests []string
	for i := range 4 {
		ref := "website/ui:" + string(rune('a'+i))
		img := tp.push(t, ref, uint64(10+i))
		imgs = append(imgs, ref)
		digests = append(digests, blobDigests(img)...)
	}
	c, err := tp.db.Cache("asia")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range imgs {
		if _, err := tp.pull("alice", ref); err != nil {
			t.Fatalf("alice pulls %s from the fleet: %v", ref, err)
		}
	}
	share := map[string]int{}
	for _, d := range digests {
		want, _ := c.NodeFor(d, nil)
		share[want.URL]++
		for _, nd := range nodes {
			got, wantN := nd.count.BlobGets(d), 0
			if nd.srv.URL == want.URL {
				wantN = 1
			}
			if got != wantN {
				t.Errorf("blob %s: node %s served it %d times, want %d (its node is %s)", d, nd.srv.URL, got, wantN, want.URL)
			}
		}
		if n := tp.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("blob %s filled %d times from the backend, want once for the fleet", d, n)
		}
	}
	if len(share) < 2 {
		t.Errorf("%d blobs all went to one node: %v", len(digests), share)
	}
	t.Logf("shares of %d blobs over 3 nodes: %v", len(digests), share)

	// A second replica of the origin on the same state: the same node
	// for every blob.
	log := zaptest.NewLogger(t).Named("replica2")
	prober2 := &origin.Prober{Client: http.DefaultClient, List: tp.db.Caches, Logger: log}
	for _, cc := range []origin.Cache{c} {
		prober2.Probe(t.Context(), cc)
	}
	backend, _ := url.Parse(tp.reg.URL)
	srv2, err := origin.New(origin.Config{Backend: backend, Users: tp.users, Access: tp.access, Keys: tp.keys, DB: tp.db, Prober: prober2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	replica2 := newHTTPServer(t, serve.Mux(srv2, nil, nil))
	for _, d := range digests {
		a, b := location(t, tp.origin.URL, "website/ui", d), location(t, replica2, "website/ui", d)
		if a != b {
			t.Errorf("blob %s: replica 1 sends it to %s, replica 2 to %s", d, a, b)
		}
	}

	// Prefetch hints: a new image's manifest GET by alice hints each node
	// with exactly the blobs it will be asked for.
	img := tp.push(t, "website/ui:hinted", 99)
	tp.reg.Counter.Reset()
	tp.getManifest(t, "alice", "website/ui", "hinted")
	for _, d := range blobDigests(img) {
		want, _ := c.NodeFor(d, nil)
		for _, nd := range nodes {
			if nd.srv.URL == want.URL && !waitHolds(t, nd.store, d) {
				t.Errorf("node %s did not prefetch %s (its blob)", nd.srv.URL, d)
			}
		}
	}
	for _, d := range blobDigests(img) {
		want, _ := c.NodeFor(d, nil)
		for _, nd := range nodes {
			if _, err := nd.store.Stat(casstore.MustParseDigest(d)); nd.srv.URL != want.URL && err == nil {
				t.Errorf("node %s prefetched %s, which is %s's", nd.srv.URL, d, want.URL)
			}
		}
		if n := tp.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("prefetch: backend saw %d GETs of %s, want 1", n, d)
		}
		if n := tp.cacheCount.BlobGets(d); n != 0 {
			t.Errorf("a client asked for %s already", d)
		}
	}
}

// waitHolds waits (up to 10s) until st holds d.
func waitHolds(t *testing.T, st *casstore.Store, d string) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := st.Stat(casstore.MustParseDigest(d)); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFleetRegistration(t *testing.T) {
	tp := newTopology(t)
	a, b := "http://cache-1.office:5000", "http://cache-2.office:5000"
	for _, tc := range []struct {
		name string
		body map[string]any
		code int
		want string // in the error, or the hosts stored
	}{
		{"fleet", map[string]any{"name": "f1", "hosts": []string{a + "/", b}}, http.StatusCreated, a + "," + b},
		{"one host in hosts is a single node", map[string]any{"name": "f2", "hosts": []string{a}}, http.StatusCreated, ""},
		{"host and hosts agree", map[string]any{"name": "f3", "host": a, "hosts": []string{a, b}}, http.StatusCreated, a + "," + b},
		{"host and hosts differ", map[string]any{"name": "x1", "host": b, "hosts": []string{a, b}}, http.StatusBadRequest, "not both"},
		{"twice", map[string]any{"name": "x2", "hosts": []string{a, a + "/"}}, http.StatusBadRequest, "hosts[1]: " + a + " is listed twice"},
		{"bad node", map[string]any{"name": "x3", "hosts": []string{a, "ftp://x"}}, http.StatusBadRequest, "hosts[1]: want http(s)://host[:port]"},
		{"probeHost with hosts", map[string]any{"name": "x4", "hosts": []string{a, b}, "probeHost": a}, http.StatusBadRequest, "probeHost: with hosts"},
		{"probeHosts count", map[string]any{"name": "x5", "hosts": []string{a, b}, "probeHosts": []string{a}}, http.StatusBadRequest, "probeHosts: one per host"},
		{"probeHosts alone", map[string]any{"name": "x6", "host": a, "probeHosts": []string{a}}, http.StatusBadRequest, "probeHosts: only with hosts"},
		{"no host", map[string]any{"name": "x7"}, http.StatusBadRequest, "host: want"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", tc.body)
			if code != tc.code {
				t.Fatalf("POST %v: %d %s, want %d", tc.body, code, body, tc.code)
			}
			if code != http.StatusCreated {
				var e struct {
					Errors []struct{ Code, Message string } `json:"errors"`
				}
				if json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "INVALID_HOST" || !strings.Contains(e.Errors[0].Message, tc.want) {
					t.Fatalf("error %s, want INVALID_HOST with %q", body, tc.want)
				}
				return
			}
			var got origin.Cache
			json.Unmarshal(body, &got)
			if strings.Join(got.Hosts, ",") != tc.want || got.Host != a {
				t.Errorf("stored host %q hosts %v, want host %s hosts %q", got.Host, got.Hosts, a, tc.want)
			}
		})
	}
	if max := make([]string, origin.MaxNodes+1); true {
		for i := range max {
			max[i] = "http://n" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + ":5000"
		}
		if code, body := tp.api(t, "admin", "POST", "/api/v0/content_caches", map[string]any{"name": "big", "hosts": max}); code != http.StatusBadRequest || !strings.Contains(string(body), "at most") {
			t.Errorf("%d nodes: %d %s", len(max), code, body)
		}
	}

	// PATCH: hosts replaces the nodes, host makes it one node again.
	c := "http://cache-3.office:5000"
	for _, tc := range []struct {
		patch map[string]any
		code  int
		host  string
		hosts []string
	}{
		{map[string]any{"hosts": []string{b, c}}, http.StatusOK, b, []string{b, c}},
		{map[string]any{"hosts": []string{b, c}, "probeHosts": []string{"", "http://10.0.0.3:5000"}}, http.StatusOK, b, []string{b, c}},
		{map[string]any{"account": ""}, http.StatusOK, b, []string{b, c}},
		{map[string]any{"host": a, "hosts": []string{a}}, http.StatusBadRequest, "", nil},
		{map[string]any{"host": a}, http.StatusOK, a, nil},
	} {
		code, body := tp.api(t, "admin", "PATCH", "/api/v0/content_caches/f1", tc.patch)
		if code != tc.code {
			t.Fatalf("PATCH %v: %d %s", tc.patch, code, body)
		}
		if code != http.StatusOK {
			continue
		}
		got, err := tp.db.Cache("f1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Host != tc.host || !slices.Equal(got.Hosts, tc.hosts) {
			t.Errorf("after PATCH %v: host %s hosts %v, want %s %v", tc.patch, got.Host, got.Hosts, tc.host, tc.hosts)
		}
		if _, ok := tc.patch["probeHosts"]; ok && (len(got.Nodes()) != 2 || got.Nodes()[1].ProbeBase() != "http://10.0.0.3:5000" || got.Nodes()[0].ProbeBase() != b) {
			t.Errorf("probeHosts: nodes %+v", got.Nodes())
		}
	}
}
