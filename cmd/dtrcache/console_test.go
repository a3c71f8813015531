package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestOriginConsoleConfig: the console section's values are checked, each
// problem named by its key.
func TestOriginConsoleConfig(t *testing.T) {
	dir := t.TempDir()
	base := originBase(t, dir) + "data_dir: " + dir + "/data\n"
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"defaults", "", nil},
		{"tuned", "console: {idle_timeout: 15m, max_lifetime: 8h, secure_cookies: true, signin_burst: 10, signin_refill: 30s, sample_interval: 30s}\n", nil},
		{"off", "console: {disabled: true}\n", nil},
		{"all at once", "console: {idle_timeout: 10s, max_lifetime: 9000h, signin_burst: -1, signin_refill: 1ms, sample_interval: 2h}\n", []string{
			"console.idle_timeout: at least 1m", "console.max_lifetime: between 1m and 720h", "console.signin_burst: between 0",
			"console.signin_refill: at least 1s", "console.sample_interval: between 1s and 1h"}},
		{"idle beyond the lifetime", "console: {idle_timeout: 2h, max_lifetime: 1h}\n", []string{"console.idle_timeout: 2h0m0s exceeds console.max_lifetime"}},
		{"unknown key", "console: {idle: 1m}\n", []string{`unknown key "idle"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.ParseOrigin([]byte(base+c.yaml), "origin.yml")
			if err == nil {
				err = checkOrigin(cfg)
			}
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestOriginServesTheConsole: `dtrcache origin` serves the console at
// /console/ on its own port, sends a browser at / there, and signs a user
// of its htpasswd file in; `console: {disabled: true}` turns it off.
func TestOriginServesTheConsole(t *testing.T) {
	reg, err := testenv.StartRegistry(context.Background(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	access := "admins: [admin]\nrepositories:\n  - {pattern: '**', grants: [{user: alice, actions: [pull]}]}\n"
	o := startOriginAt(t, originFiles(t, t.TempDir(), reg.URL, access, ""), "127.0.0.1:0")
	base := "http://" + o.addr
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/console/" {
		t.Fatalf("GET /: %d to %q, want 302 to /console/", res.StatusCode, res.Header.Get("Location"))
	}
	// Sign in as alice (password "dtrcache"), with the form's token.
	jar := newJar(t)
	c := &http.Client{Jar: jar}
	page := get(t, c, base+"/console/signin")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if tok == nil {
		t.Fatalf("no sign-in form: %s", page)
	}
	res, err = c.PostForm(base+"/console/signin", url.Values{"csrf": {tok[1]}, "username": {"alice"}, "password": {"dtrcache"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/console/profile" || !strings.Contains(string(body), "Signed in as <strong>alice</strong>") {
		t.Fatalf("sign-in: %d at %s: %s", res.StatusCode, res.Request.URL, body)
	}
	// The registry API is still the origin's.
	res, err = http.Get(base + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/v2/ without credentials: %d", res.StatusCode)
	}
	o.stop()

	off := startOriginAt(t, originFiles(t, t.TempDir(), reg.URL, access, "console: {disabled: true}\n"), "127.0.0.1:0")
	res, err = http.Get("http://" + off.addr + "/console/signin")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("a disabled console answered %d", res.StatusCode)
	}
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func newJar(t *testing.T) http.CookieJar {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}
