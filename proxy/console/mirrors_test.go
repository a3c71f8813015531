package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
)

// TestMirrorsThroughTheConsole: a push mirror made with the form (its
// password write-only), run now, copies to another registry; a poll
// mirror of it, run with "Run every poll mirror now", copies back.
func TestMirrorsThroughTheConsole(t *testing.T) {
	e := newEnv(t, nil)
	eu, err := testenv.StartRegistry(context.Background(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer eu.Close()
	if _, err := e.tp.Seed(t.Context(), "website/ui:2.0", testenv.ImageSpec{Layers: 1, LayerSize: 64 << 10, Seed: 21}); err != nil {
		t.Fatal(err)
	}
	admin := e.signedIn(t, "admin")
	const secret = "mirror-s3cret"
	r := admin.post("/console/policies/new?kind=pushMirroringPolicies", "/console/policies/new", url.Values{
		"kind": {"pushMirroringPolicies"}, "name": {"ui-to-eu"}, "enabled": {"on"}, "repository": {"website/ui"},
		"remoteHost": {eu.URL}, "remoteRepository": {"prod/ui"}, "username": {"mirror"}, "password": {secret}, "rules": {"0"}, "do": {"save"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "A password is stored") {
		t.Fatalf("create the push mirror: %d %s", r.status, r.body)
	}
	if strings.Contains(r.body, secret) {
		t.Fatal("the policy page shows the password")
	}
	id := strings.TrimPrefix(r.url.Path, "/console/policies/")
	if r := admin.post("/console/policies", "/console/policies/"+id+"/run", nil); r.url.Path != "/console/jobs" {
		t.Fatalf("run now: %d at %s", r.status, r.url)
	}
	admin.waitFor("/console/jobs?policy="+id, `class="state-done"`)
	var tags struct{ Tags []string }
	if err := getJSON(eu.URL+"/v2/prod/ui/tags/list", &tags); err != nil || len(tags.Tags) != 1 || tags.Tags[0] != "2.0" {
		t.Fatalf("EU prod/ui: %v %v", tags.Tags, err)
	}

	r = admin.post("/console/policies/new?kind=pollMirroringPolicies", "/console/policies/new", url.Values{
		"kind": {"pollMirroringPolicies"}, "name": {"eu-back"}, "enabled": {"on"}, "repository": {"mirror/ui"},
		"remoteHost": {eu.URL}, "remoteRepository": {"prod/ui"}, "interval": {"1h"}, "rules": {"0"}, "do": {"save"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Created the policy") {
		t.Fatalf("create the poll mirror: %d %s", r.status, r.body)
	}
	if r := admin.post("/console/jobs", "/console/jobs/poll", nil); r.status != http.StatusOK || !strings.Contains(r.body, "Queued a poll") {
		t.Fatalf("poll now: %d %s", r.status, r.body)
	}
	// The poll job queues a copy job per tag: wait for the tag itself.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tags.Tags = nil
		if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/v2/mirror/ui/tags/list", nil, &tags); err == nil && len(tags.Tags) == 1 && tags.Tags[0] == "2.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror/ui never got the tag: %v", tags.Tags)
		}
	}
	if r := admin.get("/console/jobs?action=poll_mirror"); !strings.Contains(r.body, `class="state-done"`) {
		t.Errorf("the jobs page shows no finished poll: %s", r.body)
	}
}

// TestWebhooksThroughTheConsole: subscribe with the form (the secret shown
// once), a push through the origin is delivered and listed, a test event
// gets the receiver's answer, bob sees none of it, delete.
func TestWebhooksThroughTheConsole(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	got := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("X-Dtrcache-Event-Type")]++
		mu.Unlock()
	}))
	defer recv.Close()
	if _, err := e.tp.Seed(t.Context(), "website/ui:1", testenv.ImageSpec{Layers: 1, LayerSize: 1024, Seed: 31}); err != nil {
		t.Fatal(err)
	}
	admin := e.signedIn(t, "admin")
	form := url.Values{"type": {"TAG_PUSH"}, "key": {"website/ui"}, "endpoint": {recv.URL + "/hook"}}
	r := admin.post("/console/webhooks", "/console/webhooks", form)
	if r.status != http.StatusCreated || !strings.Contains(r.body, `class="secret"`) {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	if r := admin.get("/console/webhooks"); strings.Contains(r.body, `class="secret"`) {
		t.Fatal("the secret is shown again")
	}
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: 1024, Seed: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Push(t.Context(), e.tp.OriginHost+"/website/ui:2", img, testenv.RemoteOptions{Username: "admin", Password: e.tp.Password}); err != nil {
		t.Fatal(err)
	}
	var hooks []struct{ ID string }
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/api/v0/webhooks", nil, &hooks); err != nil || len(hooks) != 1 {
		t.Fatalf("webhooks: %v %v", hooks, err)
	}
	page := admin.waitFor("/console/webhooks/"+hooks[0].ID, `<span class="ok">200</span>`)
	if !strings.Contains(page.body, "TAG_PUSH") {
		t.Fatalf("deliveries: %s", page.body)
	}
	if r := admin.post("/console/webhooks", "/console/webhooks/test", form); r.status != http.StatusOK || !strings.Contains(r.body, "Delivered") {
		t.Fatalf("test event: %d %s", r.status, r.body)
	}
	mu.Lock()
	if got["TAG_PUSH"] < 2 {
		t.Errorf("the receiver got %v, want the push and the test", got)
	}
	mu.Unlock()
	bob := e.signedIn(t, "bob")
	if r := bob.get("/console/webhooks"); strings.Contains(r.body, hooks[0].ID) {
		t.Error("bob sees the admin's webhook")
	}
	if r := bob.get("/console/webhooks/" + hooks[0].ID); r.status != http.StatusForbidden {
		t.Errorf("bob opens the admin's webhook: %d, want 403", r.status)
	}
	if r := bob.post("/console/webhooks", "/console/webhooks", form); r.status != http.StatusForbidden {
		t.Errorf("bob subscribes to website/ui: %d, want 403", r.status)
	}
	if r := admin.post("/console/webhooks/"+hooks[0].ID, "/console/webhooks/"+hooks[0].ID+"/delete", nil); r.status != http.StatusOK || strings.Contains(r.body, `href="/console/webhooks/`+hooks[0].ID) {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
}
