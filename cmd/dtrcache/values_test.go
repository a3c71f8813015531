package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
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
policies: {bandwidth: fast, workers: -1}
shutdown_grace: -5s
`), 0o600)
	_, err = loadOriginConfig(originYML, "", "", "")
	for _, want := range []string{
		`keys.token_ttl: invalid duration "forever" (want e.g. 24h, 90s, 7d) (line 6)`,
		`caches.health_interval: invalid duration "10 seconds"`,
		`caches.prefetch_hints: want true or false, got "maybe" (line 7)`,
		`policies.bandwidth: invalid size "fast"`,
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
