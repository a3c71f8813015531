package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/zap"
)

var zapString = zap.String

// TestPagesAndAccess asks every page as nobody, bob (a user), and admin.
func TestPagesAndAccess(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.tp.Seed(t.Context(), "website/ui:3-stable", testenv.ImageSpec{Layers: 2, LayerSize: 64 << 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	bob, admin := e.signedIn(t, "bob"), e.signedIn(t, "admin")
	anon := e.browser(t)
	pages := []struct {
		path          string
		bob, admin    int
		adminOnlyPage bool
	}{
		{"/console/profile", 200, 200, false},
		{"/console/repositories", 200, 200, false},
		{"/console/repositories/website/ui", 200, 200, false},
		{"/console/repositories/website/ui/-/tags/3-stable", 200, 200, false},
		{"/console/repositories/website/ui/-/tags/nope", 404, 404, false},
		{"/console/policies", 200, 200, false},
		{"/console/policies/new?kind=pollMirroringPolicies", 200, 200, false},
		{"/console/jobs", 200, 200, false},
		{"/console/webhooks", 200, 200, false},
		{"/console/caches", 403, 200, true},
		{"/console/caches/asia", 403, 200, true},
		{"/console/caches/nope", 403, 404, true},
		{"/console/nope", 404, 404, false},
	}
	for _, p := range pages {
		t.Run(p.path, func(t *testing.T) {
			if r := anon.get(p.path); r.url.Path != "/console/signin" && r.status != http.StatusNotFound {
				t.Errorf("anonymous: %d at %s, want the sign-in page", r.status, r.url)
			}
			for _, c := range []struct {
				who  string
				b    *browser
				want int
			}{{"bob", bob, p.bob}, {"admin", admin, p.admin}} {
				r := c.b.get(p.path)
				if r.status != c.want {
					t.Errorf("%s: %d, want %d", c.who, r.status, c.want)
				}
				for k, v := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"} {
					if r.header.Get(k) != v {
						t.Errorf("%s: %s = %q, want %q", c.who, k, r.header.Get(k), v)
					}
				}
				if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
					t.Errorf("%s: CSP %q", c.who, csp)
				}
				if hasCaches := strings.Contains(r.body, `href="/console/caches"`); c.who == "bob" && hasCaches {
					t.Errorf("bob's page links the caches page")
				}
			}
		})
	}
	// Bob's refusals are audited like the API's.
	if n := e.audit.FilterField(zapString("reason", "not an admin")).FilterField(zapString("user", "bob")).Len(); n < 3 {
		t.Errorf("%d audit lines of bob's refused admin pages, want 3", n)
	}
	// Admin's actions are refused to bob too, with or without a token.
	for _, action := range []string{"/console/caches", "/console/caches/asia", "/console/caches/asia/delete"} {
		if r := bob.post("/console/profile", action, url.Values{"name": {"x"}, "host": {"http://127.0.0.1:1"}}); r.status != http.StatusForbidden {
			t.Errorf("bob POST %s: %d, want 403", action, r.status)
		}
	}
	for _, b := range []*browser{bob, admin} {
		if r := b.get("/console/repositories"); !strings.Contains(r.body, `href="/console/repositories/website/ui"`) {
			t.Errorf("the repositories page does not list website/ui: %s", r.body)
		}
		if r := b.get("/console/repositories/website/ui"); !strings.Contains(r.body, `href="/console/repositories/website/ui/-/tags/3-stable"`) || !strings.Contains(r.body, "linux/amd64") {
			t.Errorf("the repository page does not list 3-stable with its platform: %s", r.body)
		}
	}
	if r := admin.get("/console/caches"); !strings.Contains(r.body, `href="/console/caches/asia"`) {
		t.Errorf("the caches page does not list asia: %s", r.body)
	}
}

func TestProfilePicksACache(t *testing.T) {
	e := newEnv(t, nil)
	info, err := e.tp.Seed(t.Context(), "website/ui:3-stable", testenv.ImageSpec{Layers: 2, LayerSize: 256 << 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	alice := e.signedIn(t, "alice")
	page := alice.waitFor("/console/profile", "ms round trip") // the prober's first answer
	if !strings.Contains(page.body, `value="asia"`) || !strings.Contains(page.body, "healthy") {
		t.Fatalf("profile page: %s", page.body)
	}
	if r := alice.post("/console/profile", "/console/profile", url.Values{"contentCache": {"asia"}}); r.status != http.StatusOK ||
		!strings.Contains(r.body, `value="asia" checked`) {
		t.Fatalf("choosing asia: %d %s", r.status, r.body)
	}
	if r := alice.get("/console/repositories/website/ui/-/tags/3-stable"); strings.Count(r.body, "✘ not cached") != len(info.Layers)+1 {
		t.Fatalf("before any pull the tag page shows %d blobs not cached, want %d: %s", strings.Count(r.body, "✘ not cached"), len(info.Layers)+1, r.body)
	}
	// A pull by alice now gets its layers from the cache.
	e.tp.CacheCounter.Reset()
	res, err := e.tp.PullAs(t.Context(), "alice", "website/ui:3-stable", nil)
	if err != nil || res.Digest != info.Digest {
		t.Fatalf("pull: %v %v", res.Digest, err)
	}
	if got := e.tp.CacheCounter.TotalBlobGets(); got < len(info.Layers) {
		t.Fatalf("the cache served %d blob requests, want at least %d", got, len(info.Layers))
	}
	// And the tag page shows the layers in asia's store.
	// (A fill commits just after its last byte went out: the page is
	// asked until every blob shows.)
	r := alice.waitFor("/console/repositories/website/ui/-/tags/3-stable", "✔ cached")
	for deadline := time.Now().Add(10 * time.Second); strings.Count(r.body, "✔ cached") < len(info.Layers)+1; r = alice.get(r.url.Path) {
		if time.Now().After(deadline) {
			t.Fatalf("the tag page shows %d cached blobs, want %d (layers and config): %s", strings.Count(r.body, "✔ cached"), len(info.Layers)+1, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(r.body, "not cached") {
		t.Errorf("a blob is not cached after the pull: %s", r.body)
	}
	if r := alice.post("/console/profile", "/console/profile", url.Values{"contentCache": {"nope"}}); r.status != http.StatusBadRequest ||
		!strings.Contains(r.body, "no such cache") {
		t.Fatalf("an unknown cache: %d %s", r.status, r.body)
	}
}

func TestCacheAdministration(t *testing.T) {
	e := newEnv(t, func(c *console.Config) { c.Now = nil }) // real time: samples spread out
	admin := e.signedIn(t, "admin")
	r := admin.post("/console/caches", "/console/caches", url.Values{"name": {"eu"}, "host": {"ftp://x"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "host: want http(s)://host[:port]") || !strings.Contains(r.body, `value="ftp://x"`) {
		t.Fatalf("a bad host: %d %s", r.status, r.body)
	}
	r = admin.post("/console/caches", "/console/caches", url.Values{"name": {"eu"}, "host": {e.tp.CacheURL}})
	if r.status != http.StatusCreated || !strings.Contains(r.body, "Registered the eu cache") {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var c struct {
		Host      string `json:"host"`
		ProbeHost string `json:"probeHost"`
	}
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/api/v0/content_caches/eu", nil, &c); err != nil || c.Host != e.tp.CacheURL {
		t.Fatalf("the API after registering: %+v %v", c, err)
	}
	r = admin.post("/console/caches/eu", "/console/caches/eu", url.Values{"host": {e.tp.CacheURL + "/"}, "probeHost": {e.tp.CacheURL}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Saved.") {
		t.Fatalf("edit: %d %s", r.status, r.body)
	}
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/api/v0/content_caches/eu", nil, &c); err != nil || c.ProbeHost != e.tp.CacheURL || c.Host != e.tp.CacheURL {
		t.Fatalf("the API after editing: %+v %v", c, err)
	}
	// Samples of the cache's metrics turn into charts.
	page := admin.waitFor("/console/caches/asia", `<polyline`)
	for _, want := range []string{"Health and probe round trip", "Hit ratio", "Bytes served and filled", "Store use against its budget", "Evictions", "Users who pull from it"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the cache page has no %q", want)
		}
	}
	r = admin.post("/console/caches/eu", "/console/caches/eu/delete", nil)
	if r.status != http.StatusOK || strings.Contains(r.body, `href="/console/caches/eu"`) {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/api/v0/content_caches/eu", nil, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("the API after removing: %v", err)
	}
}

func TestPolicyThroughTheConsole(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.tp.Seed(t.Context(), "dev/app:1.2.0", testenv.ImageSpec{Layers: 1, LayerSize: 64 << 10, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tp.Seed(t.Context(), "dev/app:0.9.0", testenv.ImageSpec{Layers: 1, LayerSize: 64 << 10, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	admin := e.signedIn(t, "admin")
	form := url.Values{"kind": {"promotionPolicies"}, "name": {"dev-to-qa"}, "enabled": {"on"}, "repository": {"dev/app"},
		"targetRepository": {"qa/app"}, "rules": {"1"}, "rule0-field": {"tag"}, "rule0-operator": {"semver"}, "rule0-values": {">=1.0.0"},
		"tagTemplate": {"%n-promoted"}, "previewTag": {"1.2.0"}, "initialEvaluation": {"on"}}
	// Preview, and one more rule row, without saving anything.
	form.Set("do", "preview")
	if r := admin.post("/console/policies/new", "/console/policies/new", form); r.status != http.StatusOK || !strings.Contains(r.body, "<code>1.2.0-promoted</code>") {
		t.Fatalf("preview: %d %s", r.status, r.body)
	}
	form.Set("do", "addrule")
	if r := admin.post("/console/policies/new", "/console/policies/new", form); !strings.Contains(r.body, `name="rule1-field"`) {
		t.Fatalf("add a rule: %s", r.body)
	}
	// A bad rule: the API's message, the form kept.
	form.Set("do", "save")
	form.Set("rule0-operator", "before")
	if r := admin.post("/console/policies/new", "/console/policies/new", form); r.status != http.StatusBadRequest || !strings.Contains(r.body, "rules[0]") {
		t.Fatalf("a bad rule: %d %s", r.status, r.body)
	}
	form.Set("rule0-operator", "semver")
	r := admin.post("/console/policies/new", "/console/policies/new", form)
	if r.status != http.StatusOK || !strings.Contains(r.body, "Created the policy") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := strings.TrimPrefix(r.url.Path, "/console/policies/")
	// The initial evaluation promotes 1.2.0 (not 0.9.0).
	jobs := admin.waitFor("/console/jobs?policy="+id, `class="state-done"`)
	if !strings.Contains(jobs.body, "dev/app:1.2.0") || strings.Contains(jobs.body, "dev/app:0.9.0") {
		t.Fatalf("jobs: %s", jobs.body)
	}
	var tags struct {
		Tags []string `json:"tags"`
	}
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/v2/qa/app/tags/list", nil, &tags); err != nil || len(tags.Tags) != 1 || tags.Tags[0] != "1.2.0-promoted" {
		t.Fatalf("qa/app tags: %v %v", tags.Tags, err)
	}
	plan := admin.get("/console/policies/" + id + "/plan")
	if plan.status != http.StatusOK || !strings.Contains(plan.body, "up-to-date") {
		t.Fatalf("plan: %d %s", plan.status, plan.body)
	}
	// Bob manages no policy: he sees none, may not open or run this one.
	bob := e.signedIn(t, "bob")
	if r := bob.get("/console/policies"); strings.Contains(r.body, id) {
		t.Errorf("bob sees the policy")
	}
	if r := bob.get("/console/policies/" + id); r.status != http.StatusNotFound {
		t.Errorf("bob opens the policy: %d", r.status)
	}
	if r := bob.post("/console/policies", "/console/policies/new", url.Values{"kind": {"promotionPolicies"}, "repository": {"dev/app"},
		"targetRepository": {"qa/app2"}, "do": {"save"}}); r.status != http.StatusForbidden {
		t.Errorf("bob creates a policy: %d, want 403", r.status)
	}
	// The job page and its cancel refusal once done.
	var list struct {
		Jobs []struct{ ID string } `json:"jobs"`
	}
	if err := e.tp.API(t.Context(), "admin", http.MethodGet, "/api/v0/jobs?policy="+id, nil, &list); err != nil || len(list.Jobs) != 1 {
		t.Fatalf("jobs API: %+v %v", list, err)
	}
	jp := admin.get("/console/jobs/" + list.Jobs[0].ID)
	if jp.status != http.StatusOK || !strings.Contains(jp.body, "state-done") || strings.Contains(jp.body, "Cancel the job") {
		t.Fatalf("job page: %d %s", jp.status, jp.body)
	}
	if r := admin.post("/console/jobs", "/console/jobs/"+list.Jobs[0].ID+"/cancel", nil); r.status != http.StatusConflict {
		t.Errorf("cancelling a finished job: %d, want 409", r.status)
	}
}

func TestTemplatePreview(t *testing.T) {
	day := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	e := newEnv(t, nil)
	e.clock.advance(day.Sub(e.clock.now()))
	alice := e.signedIn(t, "alice")
	for _, c := range []struct {
		template, tag string
		status        int
		want          string
	}{
		{"%n-%Y%m%d", "1.2.0", 200, "1.2.0-20261201"},
		{"", "1.2.0", 200, "1.2.0"},
		{"%q", "1.2.0", 400, "unknown"},
	} {
		r := alice.get("/console/policies/preview?" + url.Values{"template": {c.template}, "tag": {c.tag}}.Encode())
		var out map[string]string
		if r.status != c.status || json.Unmarshal([]byte(r.body), &out) != nil || !strings.Contains(out["tag"]+out["error"], c.want) {
			t.Errorf("preview %q: %d %s, want %d with %q", c.template, r.status, r.body, c.status, c.want)
		}
	}
	if r := e.browser(t).get("/console/policies/preview?template=%25n"); r.url.Path != "/console/signin" {
		t.Errorf("an anonymous preview: at %s", r.url)
	}
}
