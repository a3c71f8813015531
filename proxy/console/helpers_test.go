package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/stack"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// clock is a settable clock for session expiry and rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a whole topology (backend, origin with the policy engine and the
// console, WAN, the asia cache) and what the tests watch of it.
type env struct {
	tp    *stack.Stack
	clock *clock
	audit *observer.ObservedLogs
}

// newEnv starts a topology whose console runs on an injected clock and
// samples the caches every 100 ms.
func newEnv(t *testing.T, tune func(*console.Config)) *env {
	t.Helper()
	core, audit := observer.New(zap.InfoLevel)
	e := &env{clock: &clock{t: time.Now()}, audit: audit}
	cc := console.Config{Now: e.clock.now, SampleInterval: 100 * time.Millisecond, Audit: zap.New(core), Logger: zap.NewNop()}
	if tune != nil {
		tune(&cc)
	}
	tp, err := stack.Start(context.Background(), stack.Options{TopologyOptions: testenv.TopologyOptions{Dir: t.TempDir()}, Console: cc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	e.tp = tp
	return e
}

// browser is a client with a cookie jar that follows redirects, as a
// browser does.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: e.tp.OriginURL, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// resp is an answer with its body read.
type resp struct {
	status int
	header http.Header
	body   string
	url    *url.URL
}

func (b *browser) do(method, path string, form url.Values, header http.Header) resp {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(raw), url: res.Request.URL}
}

func (b *browser) get(path string) resp { return b.do(http.MethodGet, path, nil, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page's forms.
func csrf(t *testing.T, r resp) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no CSRF token on %s (status %d)", r.url, r.status)
	}
	return m[1]
}

// post sends a form from the page at from, with that page's CSRF token.
func (b *browser) post(from, action string, form url.Values) resp {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", csrf(b.t, b.get(from)))
	return b.do(http.MethodPost, action, form, nil)
}

// signIn signs user in with the topology's password.
func (b *browser) signIn(user, password string) resp {
	b.t.Helper()
	page := b.get("/console/signin")
	return b.do(http.MethodPost, "/console/signin", url.Values{"csrf": {csrf(b.t, page)}, "username": {user}, "password": {password}}, nil)
}

func (e *env) signedIn(t *testing.T, user string) *browser {
	t.Helper()
	b := e.browser(t)
	if r := b.signIn(user, e.tp.Password); r.status != http.StatusOK || r.url.Path != "/console/profile" {
		t.Fatalf("sign in as %s: %d at %s: %s", user, r.status, r.url, r.body)
	}
	return b
}

// waitFor polls a page until it contains want (the console's own
// samples arrive in the background).
func (b *browser) waitFor(path, want string) resp {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := b.get(path)
		if strings.Contains(r.body, want) {
			return r
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never showed %q; last answer %d: %s", path, want, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getJSON reads a JSON answer without credentials.
func getJSON(u string, out any) error {
	res, err := http.Get(u)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(out)
}
