package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/forward"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
)

// TestCacheConfigValuesNameTheKey: the values of a cache configuration
// are checked by the rules of the command and of the packages that take
// them, and every problem names its key.
func TestCacheConfigValuesNameTheKey(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	tests := []struct {
		name, yaml, want string
	}{
		{"no mode", "storage: {root: /x}\n", "redirect: configure at least one"},
		{"no root", "mirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "storage.root: required"},
		{"bad upstream url", "storage: {root: /x}\nredirect: {upstreams: ['ftp://x']}\n", `redirect.upstreams[0]: invalid URL "ftp://x"`},
		{"bad mirror default", "storage: {root: /x}\nmirror: {default: b, upstreams: [{name: a, url: 'http://a'}]}\n", `mirror.default: no upstream named "b"`},
		{"duplicate mirror", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}, {name: a, url: 'http://b'}]}\n", `mirror.upstreams[1].name: duplicate name "a"`},
		{"bad parallel", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {parallel: 100}\n", "fill.parallel: must be between 1 and 64"},
		{"watermarks", "storage: {root: /x, high_watermark: 0.5, low_watermark: 0.7}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "storage.low_watermark"},
		{"tls half", "storage: {root: /x}\nhttp: {tls: {certificate: /c}}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "http.tls: set both"},
		{"password without user", "storage: {root: /x}\nredirect: {upstreams: ['http://a'], password_file: " + pwFile + "}\n", "redirect.username: required"},
		{"bad log level", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nlog: {level: loud}\n", `log.level: unknown level "loud"`},
		{"bad name", "name: Asia!\nstorage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "name: invalid cache name"},
		{"high watermark", "storage: {root: /x, high_watermark: 1.5}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "storage.high_watermark: must be in (0, 1]"},
		{"small chunks", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {chunk_size: 4KiB}\n", "fill.chunk_size: must be at least 64KiB"},
		{"prefetch", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {prefetch: 65}\n", "fill.prefetch: must be between 0 (off) and 64"},
		{"prefetch while awaited", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {prefetch_while_awaited: -1}\n", "fill.prefetch_while_awaited: must be between 0 and 64"},
		{"prefetch hold", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {prefetch_hold: sometimes}\n", "fill.prefetch_hold: must be auto or always"},
		{"bad mirror name", "storage: {root: /x}\nmirror: {upstreams: [{name: Hub, url: 'http://a'}]}\n", `mirror.upstreams[0].name: invalid or missing name "Hub"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.ParseCache([]byte(tt.yaml), "t.yml")
			if err == nil {
				_, err = prepareCache(c)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestCacheConfigAllProblemsAtOnce: problems of the file's shape and of
// its values are reported together, so one run names all of them.
func TestCacheConfigAllProblemsAtOnce(t *testing.T) {
	c, err := config.ParseCache([]byte("storage: {root: /x, low_watermark: 0.99}\nlog: {formatter: xml}\nmiddleware: {registry: [{name: cloudfront}]}\nfill: {parallel: 100}\n"), "t.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = prepareCache(c)
	for _, want := range []string{"log.formatter", "middleware.registry[0].name", "storage.low_watermark", "fill.parallel", "redirect: configure at least one"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestCacheConfigDefaults: what the file leaves unset gets the cache's
// defaults (cache.DefaultParallel, cache.DefaultPrefetch) and the store's
// own (zero options: casstore's watermarks).
func TestCacheConfigDefaults(t *testing.T) {
	c, err := config.ParseCache([]byte("storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n"), "t.yml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := prepareCache(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.fill.Parallel != 4 || s.fill.ChunkSize != 0 || s.prefetch != 4 {
		t.Fatalf("fill %+v, prefetch %d; want 4 streams of the store's default chunk, prefetch 4", s.fill, s.prefetch)
	}
	if s.store.HighWatermark != 0 || s.store.LowWatermark != 0 || c.HTTP.Addr != ":5000" || c.Log.Level != "info" || c.Log.Format != "json" {
		t.Fatalf("store %+v, http %q, log %+v", s.store, c.HTTP.Addr, c.Log)
	}
	off := 0
	c.Fill.Prefetch = &off
	if s, err = prepareCache(c); err != nil || s.prefetch != 0 {
		t.Fatalf("prefetch: 0 gave %d, %v; want off", s.prefetch, err)
	}
}

// TestForwardProxyConfig: a forward_proxy section is checked entry by
// entry by forward.NewRules (the one place its rules are written) and its
// problems are named by their keys; what the file leaves unset is left to
// the forward proxy's defaults.
func TestForwardProxyConfig(t *testing.T) {
	c, err := config.ParseCache([]byte(`
storage: {root: /var/lib/dtrcache}
forward_proxy:
  ca_dir: /etc/dtrcache/ca
  intercept: [registry.example.org, "plain.example.org:80"]
  tunnel: [auth.example.org]
  hosts: {registry.example.org: "10.1.2.3:5000"}
  allow_private: [10.1.2.3/32]
`), "t.yml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := prepareCache(c)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Forward
	if f.Addr != ":3128" || len(f.Ports) != 0 || f.AuthTTL != 0 || f.MaxLeafCerts != 0 || f.IdleTimeout != 0 {
		t.Fatalf("the configuration filled defaults that belong to the forward proxy: %+v", f)
	}
	// The owners' defaults: port 443 for entries without a port (the
	// proxy's timings are tested in proxy/forward, TestNewDefaults).
	for target, want := range map[string]forward.Action{
		"registry.example.org:443": forward.Intercept, "registry.example.org:8443": forward.Deny,
		"plain.example.org:80": forward.Intercept, "auth.example.org:443": forward.Tunnel,
	} {
		if d := s.rules.Connect(target); d.Action != want {
			t.Errorf("CONNECT %s: %s (%s), want %s", target, d.Action, d.Reason, want)
		}
	}
	if ca.DefaultMaxLeaves != 1000 {
		t.Errorf("ca.DefaultMaxLeaves = %d, want 1000", ca.DefaultMaxLeaves)
	}
	err = config.CheckFiles(c.Files())
	if err == nil || !strings.Contains(err.Error(), "forward_proxy.ca_dir:") || !strings.Contains(err.Error(), "ca.key") {
		t.Fatalf("CheckFiles = %v, want the missing CA files named by key", err)
	}

	tests := []struct{ yaml, want string }{
		{"forward_proxy: {intercept: [r.test]}", "forward_proxy.ca_dir: required"},
		{"forward_proxy: {ca_dir: /ca}", "forward_proxy.intercept: list the registry hosts"},
		{"forward_proxy: {ca_dir: /ca, intercept: ['r.test', 'bad host']}", `forward_proxy.intercept[1]: invalid entry "bad host"`},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], tunnel: ['r.test:443']}", "forward_proxy.tunnel[0]: r.test is listed in both intercept and tunnel"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], ports: [0]}", "forward_proxy.ports[0]: invalid port 0"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], clients: [10.0.0.0/8, nope]}", `forward_proxy.clients[1]: invalid address or CIDR "nope"`},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], allow_private: [127.0.0.1/40]}", "forward_proxy.allow_private[0]"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], hosts: {r.test: 'x y'}}", "forward_proxy.hosts[r.test]: invalid address"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], auth_cache_ttl: 5m}", "forward_proxy.auth_cache_ttl: must be between 0 and 1m0s"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], max_leaf_certs: -1}", "forward_proxy.max_leaf_certs"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], idle_timeout: 10ms}", "forward_proxy.idle_timeout"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], addr: 3128}", "forward_proxy.addr"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], intercpt: [x]}", `unknown key "intercpt"`},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], blob_mirror: {cas: [/m.pem]}}", "forward_proxy.blob_mirror.url: required"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], blob_mirror: {url: 'http://u:p@mirror:5000'}}", "forward_proxy.blob_mirror.url: forward: blob mirror"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], blob_mirror: {url: 'ftp://mirror'}}", "want http(s)://host[:port]"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], blob_mirror: {url: http://m:5000, ca: x}}", `unknown key "ca"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			c, err := config.ParseCache([]byte("storage: {root: /x}\n"+tt.yaml+"\n"), "t.yml")
			if err == nil {
				_, err = prepareCache(c)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// FuzzPrepareCache checks that no input panics the parser, Normalize or
// the checks.
func FuzzPrepareCache(f *testing.F) {
	f.Add([]byte("storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n"))
	f.Add([]byte("storage: {root: /x}\nforward_proxy: {ca_dir: /ca, intercept: ['r.test', '[::1'], hosts: {'a': 'b:0'}, ports: [0]}\n"))
	f.Add([]byte("storage: {max_size: 1e3GiB, high_watermark: -1, blob_ttl: 99999999999999999999}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := config.ParseCache(data, "fuzz")
		if c == nil {
			return // not YAML
		}
		_, _ = prepareCache(c) // the good values of a file with bad ones too
	})
}
