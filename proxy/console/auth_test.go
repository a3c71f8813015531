package console_test

import (
	"crypto/tls"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/console"
)

func TestSignInSetsASessionCookie(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	page := b.get("/console/signin")
	form := url.Values{"csrf": {csrf(t, page)}, "username": {"alice"}, "password": {e.tp.Password}}
	req, _ := http.NewRequest(http.MethodPost, e.tp.OriginURL+"/console/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range b.c.Jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/profile" {
		t.Fatalf("sign-in answered %d to %q, want 303 to the profile", res.StatusCode, res.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "dtrcache_console" {
			session = c
		}
	}
	if session == nil || len(session.Value) < 40 {
		t.Fatalf("no session cookie in %v", res.Header["Set-Cookie"])
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/console/" || session.Secure {
		t.Errorf("session cookie over plain HTTP = %+v, want HttpOnly, SameSite=Strict, Path=/console/, not Secure", session)
	}
	// Audited like an API decision, without the password.
	lines := e.audit.FilterMessage("authorization").FilterField(zapString("action", "console sign-in")).All()
	if len(lines) != 1 || lines[0].ContextMap()["allowed"] != true || lines[0].ContextMap()["user"] != "alice" {
		t.Fatalf("audit lines of the sign-in: %+v", lines)
	}
	for _, l := range e.audit.All() {
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, e.tp.Password) {
				t.Errorf("audit line %q has the password in %s", l.Message, k)
			}
		}
	}
}

func TestSignInFailures(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	if r := b.signIn("alice", "wrong"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Invalid username or password") {
		t.Fatalf("wrong password: %d %s", r.status, r.body)
	}
	if r := b.signIn("nobody", "x"); r.status != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", r.status)
	}
	// A sign-in form posted without its token (a login CSRF) is refused
	// even with the right password.
	r := b.do(http.MethodPost, "/console/signin", url.Values{"username": {"alice"}, "password": {e.tp.Password}}, nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("sign-in without its CSRF token: %d, want 403", r.status)
	}
	if r := b.get("/console/profile"); r.url.Path != "/console/signin" {
		t.Fatalf("after refused sign-ins the profile answered at %s", r.url)
	}
}

func TestSignInRateLimit(t *testing.T) {
	e := newEnv(t, func(c *console.Config) { c.SignInBurst, c.SignInRefill = 3, time.Minute })
	b := e.browser(t)
	for i := 0; i < 3; i++ {
		if r := b.signIn("alice", "wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, r.status)
		}
	}
	// Limited: even the right password is not checked now.
	r := b.signIn("alice", e.tp.Password)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "60" {
		t.Fatalf("4th try: %d Retry-After %q, want 429 and 60", r.status, r.header.Get("Retry-After"))
	}
	// The client's address is limited too: another user from it as well.
	if r := b.signIn("bob", e.tp.Password); r.status != http.StatusTooManyRequests {
		t.Fatalf("another user from the same address: %d, want 429", r.status)
	}
	limited := e.audit.FilterField(zapString("reason", "too many failed sign-ins")).Len()
	if limited != 2 {
		t.Errorf("%d audit lines of refused sign-ins, want 2", limited)
	}
	e.clock.advance(time.Minute)
	if r := b.signIn("alice", e.tp.Password); r.status != http.StatusOK || r.url.Path != "/console/profile" {
		t.Fatalf("a minute later: %d at %s", r.status, r.url)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, func(c *console.Config) { c.IdleTimeout, c.MaxLifetime = 10*time.Minute, time.Hour })
	t.Run("idle", func(t *testing.T) {
		b := e.signedIn(t, "alice")
		e.clock.advance(9 * time.Minute)
		if r := b.get("/console/profile"); r.status != http.StatusOK || r.url.Path != "/console/profile" {
			t.Fatalf("after 9 idle minutes: %d at %s", r.status, r.url)
		}
		e.clock.advance(9 * time.Minute) // 9 since the last request
		if r := b.get("/console/profile"); r.url.Path != "/console/profile" {
			t.Fatalf("the last request did not extend the session: at %s", r.url)
		}
		e.clock.advance(10 * time.Minute)
		if r := b.get("/console/profile"); r.url.Path != "/console/signin" || r.url.Query().Get("next") != "/console/profile" {
			t.Fatalf("after 10 idle minutes: at %s, want the sign-in page", r.url)
		}
	})
	t.Run("lifetime", func(t *testing.T) {
		b := e.signedIn(t, "alice")
		for i := 0; i < 7; i++ { // busy, never idle: 56 minutes
			e.clock.advance(8 * time.Minute)
			if r := b.get("/console/jobs"); r.url.Path != "/console/jobs" {
				t.Fatalf("at %d minutes: at %s", 8*(i+1), r.url)
			}
		}
		e.clock.advance(5 * time.Minute)
		if r := b.get("/console/jobs"); r.url.Path != "/console/signin" {
			t.Fatalf("after an hour: at %s, want the sign-in page", r.url)
		}
	})
	t.Run("sign out", func(t *testing.T) {
		b := e.signedIn(t, "alice")
		stolen := b.c.Jar.Cookies(mustURL(t, e.tp.ConsoleURL))
		if r := b.post("/console/profile", "/console/signout", nil); r.url.Path != "/console/signin" {
			t.Fatalf("sign out: at %s", r.url)
		}
		// The session is gone from the store: its cookie is worth nothing.
		other := e.browser(t)
		other.c.Jar.SetCookies(mustURL(t, e.tp.ConsoleURL), stolen)
		if r := other.get("/console/profile"); r.url.Path != "/console/signin" {
			t.Fatalf("the signed-out session's cookie still works: at %s", r.url)
		}
	})
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, nil)
	b := e.signedIn(t, "alice")
	tok := csrf(t, b.get("/console/profile"))
	for _, c := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no token", url.Values{"contentCache": {"asia"}}, nil},
		{"wrong token", url.Values{"contentCache": {"asia"}, "csrf": {strings.Repeat("A", len(tok))}}, nil},
		{"another session's token", url.Values{"contentCache": {"asia"}, "csrf": {csrf(t, e.signedIn(t, "alice").get("/console/profile"))}}, nil},
		{"cross-site", url.Values{"contentCache": {"asia"}, "csrf": {tok}}, http.Header{"Origin": {"https://evil.example"}}},
		{"cross-site fetch", url.Values{"contentCache": {"asia"}, "csrf": {tok}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := b.do(http.MethodPost, "/console/profile", c.form, c.header); r.status != http.StatusForbidden {
				t.Fatalf("POST: %d, want 403", r.status)
			}
			var st struct {
				ContentCache string `json:"contentCache"`
			}
			if err := e.tp.API(t.Context(), "alice", http.MethodGet, "/api/v0/accounts/alice/settings", nil, &st); err != nil || st.ContentCache != "" {
				t.Fatalf("settings after a refused form: %+v %v", st, err)
			}
		})
	}
	if r := b.do(http.MethodPost, "/console/profile", url.Values{"contentCache": {"asia"}, "csrf": {tok}}, nil); r.status != http.StatusOK {
		t.Fatalf("with the token: %d", r.status)
	}
}

func TestCookiesUnderTLS(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewTLSServer(e.tp.Console)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := srv.Client()
	c.Jar = jar
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the test server's own certificate
	b := &browser{t: t, base: srv.URL, c: c}
	page := b.get("/console/signin")
	form := url.Values{"csrf": {csrf(t, page)}, "username": {"alice"}, "password": {e.tp.Password}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range jar.Cookies(req.URL) {
		req.AddCookie(ck)
	}
	res, err := c.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	found := false
	for _, ck := range res.Cookies() {
		if ck.Name == "dtrcache_console" {
			found = true
			if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie under TLS: %+v, want Secure, HttpOnly, SameSite=Strict", ck)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie under TLS (%d)", res.StatusCode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
