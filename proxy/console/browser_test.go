package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/stack"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// The browser tests drive a real headless Chromium (Debian's chromium)
// through the console of a whole topology: backend, origin with the policy
// engine and the console, a WAN link, the asia cache. They save a
// screenshot of every page they visit in the artifacts directory
// ($DTRCACHE_ARTIFACTS/console, else proxy/console/artifacts); with
// DTRCACHE_UPDATE_SCREENSHOTS=1 the main ones are also copied to
// docs/console for the README.

// chromiumPath finds the browser: $CHROMIUM, else chromium,
// chromium-browser or google-chrome on the PATH.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts a headless Chromium, or skips the test with one
// line saying why.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("SKIP browser tests: no Chromium found (apt-get install chromium, or set CHROMIUM)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"), chromedp.Flag("font-render-hinting", "none"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root in its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil {
		t.Skipf("SKIP browser tests: Chromium at %s does not start: %v", path, err)
	}
	return bctx
}

// tab is one user's browser: a browser context of its own (its own
// cookies), one tab.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot *shots
}

func newTab(t *testing.T, browser context.Context, base string, sh *shots) *tab {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run makes the tab and binds it to the context it runs
	// with: this one, without a timeout (later steps get theirs).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return &tab{t: t, ctx: ctx, base: base, shot: sh}
}

// step runs actions with a bound on their time.
func (b *tab) step(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to a console path and returns the document's status.
func (b *tab) open(path string) int64 {
	b.t.Helper()
	return b.load("open "+path, chromedp.Navigate(b.base+path))
}

// load runs actions that load a page (a link, a form) and returns the
// status of the document.
func (b *tab) load(what string, steps ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return resp.Status
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *tab) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(loc, b.base)
}

// eval evaluates JavaScript in the page.
func eval[T any](b *tab, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitText waits until the page's element sel contains want (the page's
// own script updates it, or the test reloads the page each time).
func (b *tab) waitText(sel, want string, reload bool) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel)))
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never showed %q; it shows %q", sel, want, got)
		}
		if reload {
			b.step("reload", chromedp.Reload())
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (b *tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		b.t.Fatalf("screenshot %s: waiting for the page: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.shot.save(b.t, name, png)
}

// signIn signs user in through the form, as a person would.
func (b *tab) signIn(user, password string) {
	b.t.Helper()
	b.open("/console/")
	if p := b.path(); !strings.HasPrefix(p, "/console/signin") {
		b.t.Fatalf("the console's front page is %s, want the sign-in page", p)
	}
	b.step("fill the sign-in form", chromedp.SendKeys(chromedp.ID("username"), user), chromedp.SendKeys(chromedp.ID("password"), password))
	if user == "alice" {
		b.screenshot("signin")
	}
	if st := b.load("sign in", chromedp.Click(chromedp.CSS(`main button[type=submit]`))); st != http.StatusOK || b.path() != "/console/profile" {
		b.t.Fatalf("signing in as %s: %d at %s", user, st, b.path())
	}
}

// shots saves screenshots.
type shots struct {
	dir string
	// docs, if set, is where the main screenshots are copied.
	docs string
}

// main are the screenshots shown in the README.
var mainShots = map[string]bool{"signin": true, "profile": true, "cache": true, "tag": true, "policy": true, "jobs": true, "job": true}

func newShots(t *testing.T) *shots {
	dir := os.Getenv("DTRCACHE_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	s := &shots{dir: filepath.Join(dir, "console")}
	if os.Getenv("DTRCACHE_UPDATE_SCREENSHOTS") != "" {
		s.docs = filepath.Join("..", "..", "docs", "console")
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *shots) save(t *testing.T, name string, png []byte) {
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if s.docs != "" && mainShots[name] {
		if err := os.MkdirAll(s.docs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.docs, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowser: alice picks the asia cache and her pull is served by it;
// an administrator registers a cache, makes a promotion policy with the
// rule builder, pushes, and sees the job finish and the promoted tag;
// bob sees no administrators' page and gets 403 from their URLs; a form
// without its CSRF token is refused.
func TestBrowser(t *testing.T) {
	browser := startBrowser(t)
	start := time.Now()
	sh := newShots(t)
	st, err := stack.Start(context.Background(), stack.Options{
		TopologyOptions: testenv.TopologyOptions{Dir: t.TempDir(), WAN: wan.Config{Latency: 2 * time.Millisecond}},
		Console:         console.Config{SampleInterval: time.Second}, // charts that move while the test runs
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	info, err := st.Seed(ctx, "website/ui:3-stable", testenv.ImageSpec{Layers: 3, LayerSize: 512 << 10, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("alice picks the asia cache", func(t *testing.T) {
		alice := newTab(t, browser, st.OriginURL, sh)
		alice.signIn("alice", st.Password)
		alice.waitText("main table", "ms round trip", true) // the prober's first answer
		alice.step("choose asia", chromedp.Click(chromedp.ID("cache-asia")))
		if code := alice.load("save the profile", chromedp.Click(chromedp.CSS(`main form button[type=submit]`))); code != http.StatusOK {
			t.Fatalf("saving the profile: %d", code)
		}
		if n := alice.text(".notice"); !strings.Contains(n, "asia cache") {
			t.Fatalf("notice %q", n)
		}
		alice.screenshot("profile")
		st.CacheCounter.Reset()
		res, err := st.PullAs(ctx, "alice", "website/ui:3-stable", nil)
		if err != nil || res.Digest != info.Digest {
			t.Fatalf("alice's pull: %v %v", res.Digest, err)
		}
		if got := st.CacheCounter.TotalBlobGets(); got < len(info.Layers) {
			t.Fatalf("the asia cache served %d blob GETs of alice's pull, want %d", got, len(info.Layers))
		}
		alice.open("/console/repositories")
		alice.screenshot("repositories")
		// load waits for the navigation: the list page also names the
		// tag, so waiting for the text alone could see the old page and
		// take the screenshot mid-navigation (CI: "Cannot take screenshot
		// with 0 width").
		if code := alice.load("open the repository", chromedp.Click(chromedp.CSS(`a[href="/console/repositories/website/ui"]`))); code != http.StatusOK {
			t.Fatalf("opening the repository: %d", code)
		}
		if p := alice.path(); p != "/console/repositories/website/ui" {
			t.Fatalf("the repository link led to %s", p)
		}
		alice.waitText("main table", "3-stable", false)
		alice.screenshot("repository")
		alice.open("/console/repositories/website/ui/-/tags/3-stable")
		alice.waitText("table.presence", "✔ cached", true)
		if n := eval[int](alice, `document.querySelectorAll("td.in-yes").length`); n < len(info.Layers) {
			alice.step("reload", chromedp.Reload()) // a fill commits just after its last byte
		}
		alice.screenshot("tag")
	})

	policyTarget := "qa/app"
	t.Run("an administrator registers a cache and promotes an image", func(t *testing.T) {
		admin := newTab(t, browser, st.OriginURL, sh)
		admin.signIn("admin", st.Password)
		admin.open("/console/caches")
		admin.step("fill the registration", chromedp.SendKeys(chromedp.ID("name"), "europe"), chromedp.SendKeys(chromedp.ID("host"), st.CacheURL))
		if code := admin.load("register", chromedp.Click(chromedp.CSS(`form[action="/console/caches"] button`))); code != http.StatusCreated {
			t.Fatalf("registering a cache: %d", code)
		}
		admin.waitText("main table", "europe", false)
		var c struct{ Name string }
		if err := st.API(ctx, "admin", http.MethodGet, "/api/v0/content_caches/europe", nil, &c); err != nil || c.Name != "europe" {
			t.Fatalf("the API does not know the new cache: %+v %v", c, err)
		}
		admin.screenshot("caches")
		admin.open("/console/caches/asia")
		admin.waitText(`section[aria-labelledby="history"]`, "Hit ratio over the cache's life", true)
		admin.screenshot("cache")

		// The rule builder: a semver rule, a dated template, previewed live.
		admin.open("/console/policies/new?kind=promotionPolicies")
		admin.step("fill the policy",
			chromedp.SendKeys(chromedp.ID("name"), "dev-to-qa"),
			chromedp.SendKeys(chromedp.ID("repository"), "dev/app"),
			chromedp.SendKeys(chromedp.ID("targetRepository"), policyTarget),
			chromedp.SetValue(chromedp.ID("rule0-field"), "tag"),
			chromedp.SetValue(chromedp.ID("rule0-operator"), "semver"),
			chromedp.SendKeys(chromedp.ID("rule0-values"), ">=1.0.0"),
			chromedp.SendKeys(chromedp.ID("tagTemplate"), "%n-%Y%m%d"),
		)
		today := time.Now().UTC().Format("20060102")
		admin.waitText("#preview", "1.2.0-"+today, false) // the page's script asked the preview endpoint
		admin.screenshot("policy")
		if code := admin.load("create the policy", chromedp.Click(chromedp.CSS(`button[value="save"]`))); code != http.StatusOK {
			t.Fatalf("creating the policy: %d: %s", code, admin.text("main"))
		}
		id := strings.TrimPrefix(strings.SplitN(admin.path(), "?", 2)[0], "/console/policies/")

		// A push through the origin triggers the policy.
		img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 256 << 10, Seed: 12})
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Push(ctx, st.OriginHost+"/dev/app:1.2.0", img, testenv.RemoteOptions{Username: "admin", Password: st.Password}); err != nil {
			t.Fatal(err)
		}
		admin.open("/console/jobs?policy=" + id)
		admin.waitText("#jobs", "done", false) // the page's script refreshes the list while a job is open
		admin.screenshot("jobs")
		admin.step("open the job", chromedp.Click(chromedp.CSS(`#jobs tbody a[href^="/console/jobs/"]`)))
		admin.waitText("#job-state", "done", false)
		admin.screenshot("job")
		admin.open("/console/repositories/" + policyTarget)
		admin.waitText("main table", "1.2.0-"+today, true)
		admin.screenshot("promoted")
		admin.open("/console/policies/" + id + "/plan")
		admin.waitText("main table", "up-to-date", false)
		admin.screenshot("plan")
		admin.open("/console/policies")
		admin.screenshot("policies")
		admin.open("/console/webhooks")
		admin.screenshot("webhooks")
	})

	t.Run("bob sees no administrators' pages", func(t *testing.T) {
		bob := newTab(t, browser, st.OriginURL, sh)
		bob.signIn("bob", st.Password)
		if n := eval[int](bob, `document.querySelectorAll('a[href^="/console/caches"]').length`); n != 0 {
			t.Fatalf("bob's navigation links %d caches pages", n)
		}
		for _, p := range []string{"/console/caches", "/console/caches/asia"} {
			if code := bob.open(p); code != http.StatusForbidden {
				t.Errorf("bob at %s: %d, want 403", p, code)
			}
		}
		if !strings.Contains(bob.text("main"), "Only administrators") {
			t.Errorf("bob's 403 page: %q", bob.text("main"))
		}
		bob.screenshot("forbidden")
		if code := bob.open("/console/policies"); code != http.StatusOK || strings.Contains(bob.text("main"), "dev-to-qa") {
			t.Errorf("bob's policies page: %d, lists the admin's policy: %v", code, strings.Contains(bob.text("main"), "dev-to-qa"))
		}
	})

	t.Run("a form without its CSRF token is refused", func(t *testing.T) {
		forger := newTab(t, browser, st.OriginURL, sh)
		forger.signIn("alice", st.Password)
		forger.step("choose no cache", chromedp.Click(chromedp.ID("cache-none")))
		eval[bool](forger, `document.querySelector('main form input[name="csrf"]').remove(), true`)
		if code := forger.load("save without the token", chromedp.Click(chromedp.CSS(`main form button[type=submit]`))); code != http.StatusForbidden {
			t.Fatalf("a form without its token: %d, want 403", code)
		}
		if !strings.Contains(forger.text("main"), "CSRF token") {
			t.Errorf("the refusal says %q", forger.text("main"))
		}
		forger.screenshot("csrf")
		var s struct{ ContentCache string }
		if err := st.API(ctx, "alice", http.MethodGet, "/api/v0/accounts/alice/settings", nil, &s); err != nil || s.ContentCache != "asia" {
			t.Fatalf("alice's settings after the refused form: %+v %v", s, err)
		}
	})
	t.Logf("browser tests took %s; screenshots in %s", time.Since(start).Round(time.Millisecond), sh.dir)
}
