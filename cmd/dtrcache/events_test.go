package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/testenv"
)

// The acceptance tests of events and webhooks at the origin: the
// command's own wiring (serveOrigin, or the built binary), a distribution
// backend, real HTTP receivers.

// hookDelivery is one request a receiver got.
type hookDelivery struct {
	webhook, id string
	attempt     string
	ev          events.Event
	signed      bool // the signature verified with the webhook's secret
}

// hookReceiver is a webhook endpoint: it verifies each delivery's
// signature with the secret of the webhook named in its headers, and
// answers with answer (200 when nil). It can be stopped (connections
// refused) and started again on its address.
type hookReceiver struct {
	addr string
	srv  *http.Server
	done chan struct{}

	// mu guards everything below.
	mu      sync.Mutex
	secrets map[string]string // webhook id → secret
	got     []hookDelivery
	answer  func(d hookDelivery) int
	changed chan struct{}
}

func newHookReceiver(t testing.TB) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{secrets: map[string]string{}, changed: make(chan struct{}), addr: "127.0.0.1:0"}
	rc.start(t)
	t.Cleanup(rc.stop)
	return rc
}

// start serves at the receiver's address.
func (rc *hookReceiver) start(t testing.TB) {
	t.Helper()
	var ln net.Listener
	waitUntil(t, 5*time.Second, "listening at "+rc.addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", rc.addr)
		return err == nil
	})
	rc.addr = ln.Addr().String()
	srv, done := &http.Server{Handler: http.HandlerFunc(rc.serve)}, make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	rc.mu.Lock()
	rc.srv, rc.done = srv, done
	rc.mu.Unlock()
}

// stop closes the listener and every connection.
func (rc *hookReceiver) stop() {
	rc.mu.Lock()
	srv, done := rc.srv, rc.done
	rc.srv = nil
	rc.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

func (rc *hookReceiver) url() string { return "http://" + rc.addr + "/hook" }

func (rc *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	d := hookDelivery{webhook: r.Header.Get(events.HeaderWebhookID), id: r.Header.Get(events.HeaderEventID),
		attempt: r.Header.Get(events.HeaderAttempt)}
	json.Unmarshal(body, &d.ev)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d.signed = events.Verify(rc.secrets[d.webhook], body, r.Header.Get(events.HeaderSignature))
	status := http.StatusOK
	if rc.answer != nil {
		status = rc.answer(d)
	}
	if status/100 == 2 {
		rc.got = append(rc.got, d)
		close(rc.changed)
		rc.changed = make(chan struct{})
	}
	w.WriteHeader(status)
}

func (rc *hookReceiver) setAnswer(f func(d hookDelivery) int) {
	rc.mu.Lock()
	rc.answer = f
	rc.mu.Unlock()
}

// accepted returns the deliveries answered 2xx.
func (rc *hookReceiver) accepted() []hookDelivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// waitFor waits (up to d) until cond holds for the accepted deliveries.
func (rc *hookReceiver) waitFor(t *testing.T, d time.Duration, what string, cond func([]hookDelivery) bool) []hookDelivery {
	t.Helper()
	deadline := time.After(d)
	for {
		rc.mu.Lock()
		got, ch := slices.Clone(rc.got), rc.changed
		rc.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("not %s within %s; got %d deliveries: %s", what, d, len(got), summarize(got))
		}
	}
}

// subscribe makes a webhook as user and remembers its secret.
func (rc *hookReceiver) subscribe(t testing.TB, base, user string, typ events.Type, key string) string {
	t.Helper()
	var v events.View
	body := fmt.Sprintf(`{"type":%q,"key":%q,"endpoint":%q}`, typ, key, rc.url())
	if code := api(t, base, user, http.MethodPost, "/api/v0/webhooks", body, &v); code != http.StatusCreated || v.Secret == "" {
		t.Fatalf("subscribe to %s: %d %+v", typ, code, v)
	}
	rc.mu.Lock()
	rc.secrets[v.ID] = v.Secret
	rc.mu.Unlock()
	return v.ID
}

// eventKey names an event by what it is about, for comparing with the
// expected ones.
func eventKey(ev events.Event) string {
	var c struct {
		Namespace, Repository, Tag, Source, Event, Name, State string
		Target                                                 events.ImageRef
	}
	json.Unmarshal(ev.Contents, &c)
	repo := events.JoinName(c.Namespace, c.Repository)
	switch ev.Type {
	case events.RepoEvent:
		return fmt.Sprintf("%s %s %s", ev.Type, c.Event, repo)
	case events.CacheDown, events.CacheUp:
		return fmt.Sprintf("%s %s", ev.Type, c.Name)
	case events.Promotion, events.PushMirroring, events.PollMirroring:
		return fmt.Sprintf("%s %s -> %s/%s:%s %s", ev.Type, repo, c.Target.Registry, c.Target.Repository, c.Target.Tag, c.State)
	}
	k := fmt.Sprintf("%s %s", ev.Type, repo)
	if c.Tag != "" {
		k += ":" + c.Tag
	}
	return k + " " + c.Source
}

func summarize(ds []hookDelivery) string {
	var s []string
	for _, d := range ds {
		s = append(s, eventKey(d.ev))
	}
	return strings.Join(s, "; ")
}

// uniqueEvents returns the events of ds once each (by id), checking that
// every delivery's signature verified and its id header is the body's.
func uniqueEvents(t testing.TB, ds []hookDelivery) map[string]events.Event {
	t.Helper()
	out := map[string]events.Event{}
	for _, d := range ds {
		if !d.signed {
			t.Errorf("delivery of %s (%s): the signature does not verify", d.id, d.ev.Type)
		}
		if d.id != d.ev.ID || d.id == "" {
			t.Errorf("delivery header id %q, body id %q", d.id, d.ev.ID)
		}
		if prev, dup := out[d.id]; dup && !bytes.Equal(prev.Contents, d.ev.Contents) {
			t.Errorf("event %s delivered twice with different contents", d.id)
		}
		out[d.id] = d.ev
	}
	return out
}

// eventsOrigin is an origin with events configured for the tests: fast
// retries, loopback endpoints allowed, the notifications receiver on.
type eventsOrigin struct {
	dir, path, addr, url, secret string
}

func newEventsOrigin(t testing.TB) *eventsOrigin {
	t.Helper()
	o := &eventsOrigin{dir: t.TempDir(), addr: freeAddr(t), secret: "notifications-secret-0123456789"}
	o.url = "http://" + o.addr
	return o
}

// configure writes the origin's files, for backendURL; delivery, if set,
// are the events section's delivery lines ("  max_attempts: 3\n"; fast
// retries otherwise), extra is appended to origin.yml.
func (o *eventsOrigin) configure(t testing.TB, backendURL, delivery, extra string) {
	t.Helper()
	if delivery == "" {
		delivery = "  backoff_min: 20ms\n  backoff_max: 200ms\n"
	}
	secretFile := filepath.Join(o.dir, "notify.secret")
	if err := os.WriteFile(secretFile, []byte(o.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	access := "admins: [admin]\nrepositories:\n  - {pattern: 'team/**', grants: [{user: alice, actions: [push]}]}\n"
	o.path = originFiles(t, o.dir, backendURL, access, fmt.Sprintf(`caches: {health_interval: 200ms, health_timeout: 500ms}
policies: {allow_private: [127.0.0.0/8]}
events:
  host: dtr.example.org
  allow_private: [127.0.0.0/8]
  dedupe_grace: 1s
  notifications: {secret_file: %s}
%s%s`, secretFile, delivery, extra))
}

// notify points a backend's notifications at the origin.
func (o *eventsOrigin) notify() *testenv.NotifyOptions {
	return &testenv.NotifyOptions{URL: o.url + "/api/v0/events/notifications", Secret: o.secret}
}

// putManifest pushes raw as repo:ref through base as user (password
// "dtrcache") and returns the status.
func putManifest(t testing.TB, c *http.Client, base, user, repo, ref, mediaType string, raw []byte) int {
	req, err := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	if user != "" {
		req.SetBasicAuth(user, "dtrcache")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// registryCall sends a request to a registry (as user through the
// origin, or anonymously to a backend) and returns the status and a
// header.
func registryCall(t *testing.T, method, url, user, header string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if user != "" {
		req.SetBasicAuth(user, "dtrcache")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(header)
}

// healthServer is what the origin probes of a registered cache
// (/healthz and /readyz), on a fixed loopback address so that it can be stopped and
// started again.
type healthServer struct {
	addr string
	srv  *http.Server
	done chan struct{}
}

func startHealth(t *testing.T, addr string) *healthServer {
	t.Helper()
	var ln net.Listener
	var err error
	waitUntil(t, 5*time.Second, "listening at "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	h := &healthServer{addr: ln.Addr().String(), done: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			io.WriteString(w, "ok")
			return
		}
		http.NotFound(w, r)
	})}
	go func() { defer close(h.done); h.srv.Serve(ln) }()
	t.Cleanup(h.stop)
	return h
}

func (h *healthServer) stop() {
	h.srv.Close()
	<-h.done
}

// TestEventsAtTheOrigin: a receiver subscribed to every type (each its
// own webhook) gets exactly the expected events of a push through the
// origin, a push straight to the backend (whose notifications go to the
// origin: one event per push although both saw the first), pulls, deletes
// by tag and by digest, a promotion, a push mirror and a cache stopped and
// started; every signature verifies and the payloads have DTR's fields.
func TestEventsAtTheOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two registries and an origin")
	}
	ctx := t.Context()
	remoteReg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer remoteReg.Close()
	o := newEventsOrigin(t)
	backend, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{Notify: o.notify()})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	o.configure(t, backend.URL, "", "")
	startOriginAt(t, o.path, o.addr)

	rc := newHookReceiver(t)
	for _, typ := range events.Types {
		rc.subscribe(t, o.url, "admin", typ, "")
	}
	// The policies: team/app is promoted to team/app-prod, team/mirrored
	// mirrored to the remote registry.
	if code := api(t, o.url, "admin", http.MethodPost, "/api/v0/repositories/team/app/promotionPolicies",
		`{"enabled":true,"targetRepository":"team/app-prod","rules":[{"field":"tag","operator":"eq","values":["2.0"]}]}`, nil); code != http.StatusCreated {
		t.Fatalf("create the promotion: %d", code)
	}
	if code := api(t, o.url, "admin", http.MethodPost, "/api/v0/repositories/team/mirrored/pushMirroringPolicies",
		`{"enabled":true,"remoteHost":"`+remoteReg.URL+`","remoteRepository":"copy/mirrored"}`, nil); code != http.StatusCreated {
		t.Fatalf("create the push mirror: %d", code)
	}
	origin := strings.TrimPrefix(o.url, "http://")
	alice := testenv.RemoteOptions{Username: "alice", Password: "dtrcache"}
	var want []string
	expect := func(keys ...string) { want = append(want, keys...) }

	// A push through the origin (the backend reports it too).
	img := pushImage(t, origin+"/team/app:1.0", alice, 2, 4096, 1)
	expect("MANIFEST_PUSH team/app origin", "TAG_PUSH team/app:1.0 origin", "REPO_EVENT REPO_CREATED team/app")
	// A push straight to the backend: only its notification sees it.
	pushImage(t, backend.Host+"/team/direct:1.0", testenv.RemoteOptions{}, 1, 2048, 2)
	expect("MANIFEST_PUSH team/direct registry", "TAG_PUSH team/direct:1.0 registry", "REPO_EVENT REPO_CREATED team/direct")
	// Pulls through the origin, by tag and by digest.
	digest, _ := img.Digest()
	if code, _ := registryCall(t, http.MethodGet, o.url+"/v2/team/app/manifests/1.0", "alice", ""); code != http.StatusOK {
		t.Fatalf("pull by tag: %d", code)
	}
	if code, _ := registryCall(t, http.MethodGet, o.url+"/v2/team/app/manifests/"+digest.String(), "alice", ""); code != http.StatusOK {
		t.Fatalf("pull by digest: %d", code)
	}
	expect("TAG_PULL team/app:1.0 origin", "MANIFEST_PULL team/app origin")
	// A promotion: the job's end, and the tag it wrote.
	pushImage(t, origin+"/team/app:2.0", alice, 1, 1024, 3)
	expect("MANIFEST_PUSH team/app origin", "TAG_PUSH team/app:2.0 origin",
		"PROMOTION team/app -> /team/app-prod:2.0 done",
		"MANIFEST_PUSH team/app-prod origin", "TAG_PUSH team/app-prod:2.0 origin", "REPO_EVENT REPO_CREATED team/app-prod")
	// A push mirror.
	pushImage(t, origin+"/team/mirrored:1.0", alice, 1, 1024, 4)
	expect("MANIFEST_PUSH team/mirrored origin", "TAG_PUSH team/mirrored:1.0 origin", "REPO_EVENT REPO_CREATED team/mirrored",
		"PUSH_MIRRORING team/mirrored -> "+remoteReg.Host+"/copy/mirrored:1.0 done")
	// Deletes through the origin: a tag; a manifest by digest (the
	// backend then also reports the tag that pointed at it).
	if code, _ := registryCall(t, http.MethodDelete, o.url+"/v2/team/app/manifests/2.0", "alice", ""); code != http.StatusAccepted {
		t.Fatalf("delete a tag: %d", code)
	}
	expect("TAG_DELETE team/app:2.0 origin")
	// (This look-up is a pull straight from the backend: an event too.)
	_, directDigest := registryCall(t, http.MethodHead, backend.URL+"/v2/team/direct/manifests/1.0", "", "Docker-Content-Digest")
	expect("TAG_PULL team/direct:1.0 registry")
	if code, _ := registryCall(t, http.MethodDelete, o.url+"/v2/team/direct/manifests/"+directDigest, "alice", ""); code != http.StatusAccepted {
		t.Fatalf("delete a manifest: %d", code)
	}
	expect("MANIFEST_DELETE team/direct origin", "TAG_DELETE team/direct:1.0 registry")
	// A cache registered up (no event), stopped, started.
	health := startHealth(t, "127.0.0.1:0")
	if code := api(t, o.url, "admin", http.MethodPost, "/api/v0/content_caches", `{"name":"asia","host":"http://`+health.addr+`"}`, nil); code != http.StatusCreated {
		t.Fatalf("register the cache: %d", code)
	}
	health.stop()
	rc.waitFor(t, 20*time.Second, "CACHE_DOWN", func(ds []hookDelivery) bool {
		return slices.ContainsFunc(ds, func(d hookDelivery) bool { return d.ev.Type == events.CacheDown })
	})
	startHealth(t, health.addr)
	expect("CACHE_DOWN asia", "CACHE_UP asia")
	// Last, a push straight to the backend: its events wait the same
	// grace as any notification not matched, so once they are delivered
	// every earlier notification has been decided.
	pushImage(t, backend.Host+"/team/last:1.0", testenv.RemoteOptions{}, 1, 512, 5)
	expect("MANIFEST_PUSH team/last registry", "TAG_PUSH team/last:1.0 registry", "REPO_EVENT REPO_CREATED team/last")

	rc.waitFor(t, 60*time.Second, "the last push and CACHE_UP", func(ds []hookDelivery) bool {
		var last, up bool
		for _, d := range ds {
			k := eventKey(d.ev)
			last = last || k == "REPO_EVENT REPO_CREATED team/last"
			up = up || k == "CACHE_UP asia"
		}
		return last && up
	})
	got := rc.waitFor(t, 10*time.Second, "the last push's every event", func(ds []hookDelivery) bool {
		return slices.ContainsFunc(ds, func(d hookDelivery) bool { return eventKey(d.ev) == "TAG_PUSH team/last:1.0 registry" }) &&
			slices.ContainsFunc(ds, func(d hookDelivery) bool { return eventKey(d.ev) == "MANIFEST_PUSH team/last registry" })
	})
	unique := uniqueEvents(t, got)
	var keys []string
	for _, ev := range unique {
		keys = append(keys, eventKey(ev))
	}
	sort.Strings(keys)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		t.Errorf("events:\n got  %s\n want %s", strings.Join(keys, "\n      "), strings.Join(want, "\n      "))
	}

	// The documented fields.
	for _, ev := range unique {
		var c map[string]any
		json.Unmarshal(ev.Contents, &c)
		need := map[events.Type][]string{
			events.TagPush: {"namespace", "repository", "tag", "digest", "imageName", "os", "architecture", "author", "pushedAt"},
			events.Promotion: {"namespace", "repository", "jobID", "policyID", "state", "source", "target", "digest", "bytes",
				"attempts", "startedAt", "endedAt"},
			events.CacheDown: {"name", "host", "state", "reason", "checkedAt"},
		}[ev.Type]
		for _, f := range need {
			v, ok := c[f]
			// An anonymous push straight to the backend has no author.
			if !ok || v == nil || (v == "" && f != "author") {
				t.Errorf("%s: %s missing or empty in %s", ev.Type, f, ev.Contents)
			}
		}
		if ev.CreatedAt.IsZero() || ev.ID == "" {
			t.Errorf("%s without createdAt or id", ev.Type)
		}
		if ev.Type == events.TagPush && eventKey(ev) == "TAG_PUSH team/app:1.0 origin" {
			if c["author"] != "alice" || c["os"] != "linux" || c["architecture"] != "amd64" || c["digest"] != digest.String() ||
				c["imageName"] != "dtr.example.org/team/app:1.0" {
				t.Errorf("TAG_PUSH through the origin: %s", ev.Contents)
			}
		}
		if ev.Type == events.TagPush && eventKey(ev) == "TAG_PUSH team/direct:1.0 registry" && (c["os"] != "linux" || c["digest"] != directDigest) {
			t.Errorf("TAG_PUSH straight to the backend: %s", ev.Contents)
		}
	}
}

// TestBadSubscriptionsAtTheOrigin: through the origin (its accounts, its
// access rules, its backend for the key, its events.allow_private for the
// endpoint), a malformed subscription is a 400 in the registry's error
// format naming the field; an anonymous one a 401 with the challenge, a
// user's for a repository they do not administer a 403.
func TestBadSubscriptionsAtTheOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a registry and an origin")
	}
	backend, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	o := newEventsOrigin(t)
	o.configure(t, backend.URL, "", "")
	startOriginAt(t, o.path, o.addr)
	newTagPusher(t, o.url, "team/app")
	for _, tt := range []struct {
		name, user, body string
		status           int
		field            string
	}{
		{"unknown type", "admin", `{"type":"TAG_PUSHED","key":"team/app","endpoint":"http://127.0.0.1:9/h"}`, 400, "type"},
		{"bad URL", "admin", `{"type":"TAG_PUSH","key":"team/app","endpoint":"ftp://127.0.0.1/h"}`, 400, "endpoint"},
		{"refused address", "admin", `{"type":"TAG_PUSH","key":"team/app","endpoint":"http://169.254.169.254/latest"}`, 400, "endpoint"},
		{"private address not allowed", "admin", `{"type":"TAG_PUSH","key":"team/app","endpoint":"http://10.1.2.3/h"}`, 400, "endpoint"},
		{"no such repository", "admin", `{"type":"TAG_PUSH","key":"team/nope","endpoint":"http://127.0.0.1:9/h"}`, 400, "key"},
		{"key on a global type", "admin", `{"type":"CACHE_DOWN","key":"team/app","endpoint":"http://127.0.0.1:9/h"}`, 400, "key"},
		{"anonymous", "", `{"type":"TAG_PUSH","key":"team/app","endpoint":"http://127.0.0.1:9/h"}`, 401, ""},
		{"not an administrator of the repository", "alice", `{"type":"TAG_PUSH","key":"team/app","endpoint":"http://127.0.0.1:9/h"}`, 403, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Errors []struct {
					Code, Message string
					Detail        map[string]string
				}
			}
			code := api(t, o.url, tt.user, http.MethodPost, "/api/v0/webhooks", tt.body, &e)
			if code != tt.status || len(e.Errors) != 1 {
				t.Fatalf("%d %+v, want %d with one error", code, e, tt.status)
			}
			if tt.field != "" && (e.Errors[0].Detail["field"] != tt.field || !strings.HasPrefix(e.Errors[0].Message, tt.field+": ")) {
				t.Errorf("error %+v does not name the field %s", e.Errors[0], tt.field)
			}
		})
	}
}
