package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// system is one way of pulling across the WAN.
type system interface {
	// name labels the system in the report.
	name() string
	// peer reports whether this is a peer (not direct, not dtrcache).
	peer() bool
	// cold (re)starts the system with an empty cache.
	cold(ctx context.Context) error
	// host is where clients pull from, with their credentials.
	host() string
	remote() testenv.RemoteOptions
	// link is the WAN link whose bytes this system's pulls cross.
	link() *wan.Link
	// blobURL returns a URL that serves the blob warm, for load tests.
	blobURL(ctx context.Context, repo, digest string) (string, error)
	// pids are the system's processes (for RSS; CPU counts an origin's
	// too, cpuPIDs).
	pids() []int
	stop()
}

// --- direct: the client pulls across the WAN from the backend registry.

type directSys struct{ l *wan.Link }

func (s *directSys) name() string                  { return "direct" }
func (s *directSys) peer() bool                    { return false }
func (s *directSys) cold(context.Context) error    { return nil }
func (s *directSys) host() string                  { return s.l.Addr() }
func (s *directSys) remote() testenv.RemoteOptions { return testenv.RemoteOptions{} }
func (s *directSys) link() *wan.Link               { return s.l }
func (s *directSys) pids() []int                   { return nil }
func (s *directSys) stop()                         {}
func (s *directSys) blobURL(_ context.Context, repo, d string) (string, error) {
	return "http://" + s.l.Addr() + "/v2/" + repo + "/blobs/" + d, nil
}

// --- a system that is one child process serving on a fixed port, with a
// cache directory wiped on every cold start.

type procSys struct {
	e        *env
	label    string
	isPeer   bool
	port     int
	cacheDir string
	l        *wan.Link
	args     func() []string // the command line
	health   string          // URL path that answers when ready
	p        *proc
}

func (s *procSys) name() string                  { return s.label }
func (s *procSys) peer() bool                    { return s.isPeer }
func (s *procSys) host() string                  { return fmt.Sprintf("127.0.0.1:%d", s.port) }
func (s *procSys) remote() testenv.RemoteOptions { return testenv.RemoteOptions{} }
func (s *procSys) link() *wan.Link               { return s.l }
func (s *procSys) pids() []int                   { return s.p.pids() }
func (s *procSys) stop()                         { s.p.stop(); s.p = nil }

func (s *procSys) cold(ctx context.Context) error {
	s.stop()
	if err := os.RemoveAll(s.cacheDir); err != nil {
		return err
	}
	if err := os.MkdirAll(s.cacheDir, 0o755); err != nil {
		return err
	}
	p, err := s.e.startProc(s.label, s.args()...)
	if err != nil {
		return err
	}
	s.p = p
	return waitHTTP(ctx, "http://"+s.host()+s.health)
}

func (s *procSys) blobURL(_ context.Context, repo, d string) (string, error) {
	return "http://" + s.host() + "/v2/" + repo + "/blobs/" + d, nil
}

// fillYAML is the `fill:` line of the dtrcache configurations, empty for
// the defaults.
func (e *env) fillYAML() string { return fillLine(e.fill) }

// fillLine is the `fill:` line for the YAML flow map fill, empty for "".
func fillLine(fill string) string {
	if fill == "" {
		return ""
	}
	return "fill: " + fill + "\n"
}

// newDtrcacheMirror is dtrcache in mirror mode in front of the WAN, named
// label, with the fill settings fill (a YAML flow map, "" for the
// defaults).
func newDtrcacheMirror(e *env, l *wan.Link, label, fill string) (*procSys, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &procSys{e: e, label: label, port: port, cacheDir: filepath.Join(e.dir, label), l: l, health: "/healthz"}
	cfg := filepath.Join(e.dir, label+".yml")
	if err := writeFile(cfg, fmt.Sprintf(`
log: {level: warn}
http: {addr: "127.0.0.1:%d"}
storage: {root: %q}
mirror: {upstreams: [{name: backend, url: "http://%s"}]}
%s`, port, s.cacheDir, l.Addr(), fillLine(fill))); err != nil {
		return nil, err
	}
	s.args = func() []string { return []string{e.dtrcache, "cache", "--config", cfg} }
	return s, nil
}

// newDistributionProxy is distribution's pull-through cache (the Debian
// docker-registry with proxy.remoteurl).
func newDistributionProxy(e *env, l *wan.Link) (*procSys, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &procSys{e: e, label: "distribution-proxy", isPeer: true, port: port, cacheDir: filepath.Join(e.dir, "distribution-proxy"), l: l, health: "/v2/"}
	cfg := filepath.Join(e.dir, "distribution-proxy.yml")
	if err := writeFile(cfg, fmt.Sprintf(`
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %q}, delete: {enabled: true}}
http: {addr: "127.0.0.1:%d"}
proxy: {remoteurl: "http://%s"}
`, s.cacheDir, port, l.Addr())); err != nil {
		return nil, err
	}
	s.args = func() []string { return []string{"docker-registry", "serve", cfg} }
	return s, nil
}

// newNginx is nginx proxy_cache with proxy_cache_lock, configured as a
// careful operator would: keep-alive upstream, sendfile, a long lock.
func newNginx(e *env, l *wan.Link) (*procSys, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "nginx")
	s := &procSys{e: e, label: "nginx", isPeer: true, port: port, cacheDir: filepath.Join(dir, "cache"), l: l, health: "/nginx-health"}
	cfg := filepath.Join(dir, "nginx.conf")
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must reach the scratch directory (0700)
	}
	if err := writeFile(cfg, fmt.Sprintf(user+`
worker_processes auto;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[1]s/tmp-body;
  proxy_temp_path %[1]s/tmp-proxy;
  fastcgi_temp_path %[1]s/tmp-fcgi;
  uwsgi_temp_path %[1]s/tmp-uwsgi;
  scgi_temp_path %[1]s/tmp-scgi;
  proxy_cache_path %[2]s levels=1:2 keys_zone=registry:32m max_size=50g inactive=7d use_temp_path=off;
  upstream backend { server %[3]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[4]d;
    location = /nginx-health { return 200 "ok\n"; }
    # Blobs and manifests by digest are immutable: cached, one fill at a
    # time (proxy_cache_lock). Tags are passed through so they are always
    # current, as dtrcache and distribution's proxy revalidate them.
    location ~ ^/v2/.+/(blobs|manifests)/sha(256|512): {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache registry;
      proxy_cache_valid 200 206 7d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30m;
      proxy_cache_lock_age 30m;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_read_timeout 30m;
      proxy_max_temp_file_size 0;
    }
    location /v2/ {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 30m;
    }
  }
}
`, dir, s.cacheDir, l.Addr(), port)); err != nil {
		return nil, err
	}
	s.args = func() []string { return []string{"nginx", "-p", dir, "-c", cfg, "-g", "daemon off;"} }
	return s, nil
}

// --- dtrcache in the DTR flow: an origin (US, next to the backend) behind
// its own WAN link, and the cache in the office, restarted cold.

type redirectSys struct {
	e      *env
	origin *proc
	l      *wan.Link // office ↔ origin
	cache  *procSys
	pw     string
}

func newDtrcacheRedirect(ctx context.Context, e *env, backend string, wanCfg wan.Config) (*redirectSys, error) {
	s := &redirectSys{e: e, pw: "bench-pw"}
	oport, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "origin")
	var users bytes.Buffer
	for _, u := range []string{"admin", "alice", "cache-asia"} {
		h, err := policy.HashPassword(s.pw, 4)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&users, "%s:%s\n", u, h)
	}
	if err := writeFile(filepath.Join(dir, "htpasswd"), users.String()); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "policy.yml"), `
admins: [admin]
repositories: [{pattern: "**", grants: [{user: alice, actions: [pull]}, {user: cache-asia, actions: [pull]}]}]
`); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "origin.yml"), fmt.Sprintf(`
log: {level: warn}
http: {addr: "127.0.0.1:%d"}
backend: {url: "http://%s"}
auth: {htpasswd: %q}
policy: %q
data_dir: %q
keys: {dir: %q, issuer: bench, generate: true, token_ttl: 1h}
caches: {health_interval: 200ms}
`, oport, backend, filepath.Join(dir, "htpasswd"), filepath.Join(dir, "policy.yml"), filepath.Join(dir, "data"), filepath.Join(dir, "keys"))); err != nil {
		return nil, err
	}
	if s.origin, err = e.startProc("origin", e.dtrcache, "origin", "--config", filepath.Join(dir, "origin.yml")); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", oport)); err != nil {
		return nil, err
	}
	if s.l, err = wan.Listen(context.WithoutCancel(ctx), "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", oport), wanCfg); err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	s.cache = &procSys{e: e, label: "dtrcache-redirect", port: cport, cacheDir: filepath.Join(e.dir, "dtrcache-redirect"), l: s.l, health: "/healthz"}
	cfg := filepath.Join(e.dir, "dtrcache-redirect.yml")
	if err := writeFile(filepath.Join(dir, "cache-pw"), s.pw); err != nil {
		return nil, err
	}
	if err := writeFile(cfg, fmt.Sprintf(`
name: asia
log: {level: warn}
http: {addr: "127.0.0.1:%d"}
storage: {root: %q}
redirect: {upstreams: ["http://%s"], username: cache-asia, password_file: %q, issuer: bench}
%s`, cport, s.cache.cacheDir, s.l.Addr(), filepath.Join(dir, "cache-pw"), e.fillYAML())); err != nil {
		return nil, err
	}
	s.cache.args = func() []string { return []string{e.dtrcache, "cache", "--config", cfg} }
	if err := s.cache.cold(ctx); err != nil {
		return nil, err
	}
	if err := s.api(ctx, "admin", http.MethodPost, "/api/v0/content_caches",
		map[string]string{"name": "asia", "host": "http://" + s.cache.host(), "account": "cache-asia"}); err != nil {
		return nil, err
	}
	if err := s.api(ctx, "alice", http.MethodPatch, "/api/v0/accounts/alice/settings", map[string]string{"contentCache": "asia"}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *redirectSys) api(ctx context.Context, user, method, path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.l.Addr()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, s.pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, msg)
	}
	return nil
}

func (s *redirectSys) name() string { return "dtrcache-redirect" }
func (s *redirectSys) peer() bool   { return false }
func (s *redirectSys) host() string { return s.l.Addr() }
func (s *redirectSys) remote() testenv.RemoteOptions {
	return testenv.RemoteOptions{Username: "alice", Password: s.pw}
}
func (s *redirectSys) link() *wan.Link   { return s.l }
func (s *redirectSys) pids() []int       { return s.cache.pids() } // the office side (peak RSS); CPU adds the origin's (cpuPIDs)
func (s *redirectSys) originPIDs() []int { return s.origin.pids() }
func (s *redirectSys) stop()             { s.cache.stop(); s.origin.stop(); s.l.Close() }

// cold restarts the cache empty and waits until the origin sees it
// healthy again (else the origin would serve alice itself).
func (s *redirectSys) cold(ctx context.Context) error {
	if err := s.cache.cold(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.l.Addr()+"/api/v0/content_caches/asia", nil)
		req.SetBasicAuth("admin", s.pw)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var v struct {
				Healthy   bool      `json:"healthy"`
				LastCheck time.Time `json:"lastCheck"`
			}
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if v.Healthy && time.Since(v.LastCheck) < time.Second {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the origin never saw the restarted cache healthy")
}

// blobURL asks the origin for the blob as alice and returns the signed
// redirect to the cache (valid for the token's TTL).
func (s *redirectSys) blobURL(ctx context.Context, repo, d string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.l.Addr()+"/v2/"+repo+"/blobs/"+d, nil)
	req.SetBasicAuth("alice", s.pw)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		return "", fmt.Errorf("origin answered %s, want a redirect", resp.Status)
	}
	return resp.Header.Get("Location"), nil
}

// httpGetStatus GETs url and returns nil for any HTTP answer.
func httpGetStatus(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
