package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// TestBadValuesNameKeyAndLineAllAtOnce is the regression test of a bad
// size or duration reported without its key, and of parsing that stopped
// at the first one: every value problem of a cache or origin file names
// its key and line, and is reported with the file's other problems (an
// unknown key, a wrong kind, what the checks find) in one run.
func TestBadValuesNameKeyAndLineAllAtOnce(t *testing.T) {
	dir := t.TempDir()
	cacheYML := filepath.Join(dir, "cache.yml")
	os.WriteFile(cacheYML, []byte(`http: {addr: 127.0.0.1:0}
storage:
  root: `+dir+`
  max_size: 10XB
  blob_ttl: forever
shutdown_grace: -5s
fill: {parallel: lots, chunk_size: 1QB, stall_timeout: never}
mirror:
  upstreams:
    - {name: a, url: 'ftp://a', hosts: docker.io}
redirct: {}
`), 0o600)
	_, err := loadCacheConfig(cacheFlags{config: cacheYML})
	for _, want := range []string{
		`storage.max_size: invalid size "10XB": unknown unit "xb" (line 4)`,
		`storage.blob_ttl: invalid duration "forever" (want e.g. 24h, 90s, 7d) (line 5)`,
		`shutdown_grace: invalid duration "-5s": negative (line 6)`,
		`fill.parallel: want a whole number, got "lots" (line 7)`,
		`fill.chunk_size: invalid size "1QB"`,
		`fill.stall_timeout: invalid duration "never"`,
		`mirror.upstreams[0].hosts: want a list, got "docker.io" (line 10)`,
		`mirror.upstreams[0].upstreams[0]: invalid URL "ftp://a"`,
		`redirct: unknown key "redirct" (line 11)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cache error does not contain %q:\n%v", want, err)
		}
	}

	originYML := filepath.Join(dir, "origin.yml")
	os.WriteFile(originYML, []byte(`http: {addr: 127.0.0.1:0}
backend: {url: 'http://127.0.0.1:5000'}
auth: {htpasswd: `+filepath.Join(dir, "missing")+`}
policy: /nonexistent/policy.yml
data_dir: `+dir+`
keys: {dir: `+dir+`, token_ttl: forever}
caches: {health_interval: 10 seconds, prefetch_hints: maybe}
policies: {bandwidth: fast, workers: -1, claim_ttl: 1s}
shutdown_grace: -5s
`), 0o600)
	_, err = loadOriginConfig(originYML, "", "", "")
	for _, want := range []string{
		`keys.token_ttl: invalid duration "forever" (want e.g. 24h, 90s, 7d) (line 6)`,
		`caches.health_interval: invalid duration "10 seconds"`,
		`caches.prefetch_hints: want true or false, got "maybe" (line 7)`,
		`policies.bandwidth: invalid size "fast"`,
		`policies.claim_ttl: must be 0 (the default, 15s) or between 5s and 10m, got 1s`,
		`shutdown_grace: invalid duration "-5s": negative (line 9)`,
		`auth.htpasswd:`,
		`policy:`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("origin error does not contain %q:\n%v", want, err)
		}
	}
}

// TestStallTimeoutIsASetting: fill.stall_timeout reaches every mode's
// store (casstore.Options.StallTimeout, tested there); unset leaves the
// store's default (60 s).
func TestStallTimeoutIsASetting(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want time.Duration
	}{{"fill: {stall_timeout: 15s}\n", 15 * time.Second}, {"", 0}} {
		c, err := config.ParseCache([]byte("storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n"+tt.yaml), "t.yml")
		if err != nil {
			t.Fatal(err)
		}
		s, err := prepareCache(c)
		if err != nil {
			t.Fatal(err)
		}
		if s.store.StallTimeout != tt.want {
			t.Fatalf("%q: StallTimeout %s, want %s", tt.yaml, s.store.StallTimeout, tt.want)
		}
	}
}

// TestClaimTTLIsASetting: policies.claim_ttl reaches the job runner (how
// long a dead replica's running jobs wait before another takes them over,
// tested in proxy/jobs); unset leaves the runner's default (15 s).
func TestClaimTTLIsASetting(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want time.Duration
	}{{"claim_ttl: 45s", 45 * time.Second}, {"", 0}} {
		dir := t.TempDir()
		c, err := config.ParseOrigin([]byte("http: {addr: 127.0.0.1:0}\nbackend: {url: 'http://127.0.0.1:5000'}\nauth: {htpasswd: /x}\ndata_dir: "+dir+"\npolicies: {"+tt.yaml+"}\n"), "o.yml")
		if err != nil {
			t.Fatal(err)
		}
		store, err := badgerstate.Open(filepath.Join(dir, "state"))
		if err != nil {
			t.Fatal(err)
		}
		local, err := upstream.New(upstream.Config{URLs: []string{c.Backend.URL}})
		if err != nil {
			t.Fatal(err)
		}
		access, err := policy.NewAccess(policy.AccessConfig{Admins: []string{"admin"}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := newPolicyEngine(context.Background(), c, store, local, access, prometheus.NewRegistry(), engineHooks{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if e.runner.ClaimTTL != tt.want {
			t.Errorf("%q: ClaimTTL %s, want %s", tt.yaml, e.runner.ClaimTTL, tt.want)
		}
		store.Close()
	}
}

// TestEventsConfiguration: the events section's problems are reported
// with the file's others, each naming its key (and line, for what does
// not decode); a notifications secret file others may read is refused,
// a good one is read.
func TestEventsConfiguration(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("a-secret-long-enough-1234\n"), 0o644)
	short := filepath.Join(dir, "short.secret")
	os.WriteFile(short, []byte("short\n"), 0o600)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("a-secret-long-enough-1234\n"), 0o600)
	for _, f := range []string{"htpasswd", "access.yml"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o600)
	}
	base := `backend: {url: 'http://127.0.0.1:5000'}
auth: {htpasswd: ` + filepath.Join(dir, "htpasswd") + `}
policy: ` + filepath.Join(dir, "access.yml") + `
data_dir: ` + dir + `
keys: {dir: ` + dir + `}
`
	for _, tt := range []struct {
		name, events string
		want         []string
	}{
		{"values", `events:
  max_attempts: -1
  max_failure_time: soon
  backoff_min: 1ms
  retention: 10s
  allow_private: [10.0.0.0/33]
  host: https://dtr.example.org
  dedupe_grace: 2m
  timeot: 5s
`, []string{
			"events.max_attempts: must be between 0 (the default, 20) and 10000, got -1",
			`events.max_failure_time: invalid duration "soon" (want e.g. 24h, 90s, 7d) (line 8)`,
			"events.backoff_min: at least 10ms, got 1ms",
			"events.retention: at least 1m, got 10s",
			"events.allow_private[0]:",
			`events.host: want the registry host clients use (host or host:port), got "https://dtr.example.org"`,
			"events.dedupe_grace: between 100ms and 1m, got 2m0s",
			`events.timeot: unknown key "timeot" (line 14)`,
		}},
		{"readable secret", "events: {notifications: {secret_file: " + open + "}}\n",
			[]string{"events.notifications.secret_file: " + open + " has mode -rw-r--r--: readable by others; chmod 600 it"}},
		{"short secret", "events: {notifications: {secret_file: " + short + "}}\n",
			[]string{"events.notifications.secret_file: the secret is 5 characters: use at least 16"}},
		{"missing secret", "events: {notifications: {secret_file: " + filepath.Join(dir, "none") + "}}\n",
			[]string{"events.notifications.secret_file: stat "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yml")
			os.WriteFile(path, []byte(base+tt.events), 0o600)
			_, err := loadOriginConfig(path, "", "", "")
			for _, want := range tt.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
	path := filepath.Join(dir, "good.yml")
	os.WriteFile(path, []byte(base+"events: {notifications: {secret_file: "+good+"}, max_attempts: 5}\n"), 0o600)
	cfg, err := loadOriginConfig(path, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Events.Notifications.Secret != "a-secret-long-enough-1234" || cfg.Events.MaxAttempts != 5 {
		t.Fatalf("events: %+v", cfg.Events)
	}
}
