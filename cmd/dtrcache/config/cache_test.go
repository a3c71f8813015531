package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dtrExample is the DTR cache configuration from DESIGN.md, unchanged.
const dtrExample = `version: 0.1
storage:
  delete: {enabled: true}            # required by DTR when blobttl is set
  filesystem: {rootdirectory: /var/lib/registry}
http:
  addr: 0.0.0.0:443
  host: https://cache-asia.example.org
  tls: {certificate: /certs/cache.cert.pem, key: /certs/cache.key.pem}
middleware:
  registry:
    - name: downstream
      options:
        blobttl: 24h                 # integer + ns|us|ms|s|m|h; bare number = nanoseconds
        upstreams:                   # round-robin; may be DTR or another cache (chaining)
          - https://dtr.example.org
        cas:                         # PEM CAs of the next hop only
          - /certs/dtr.cert.pem
`

func TestDTRConfigAcceptedUnchanged(t *testing.T) {
	c, err := ParseCache([]byte(dtrExample), "dtr.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Redirect == nil || len(c.Redirect.URLs) != 1 || c.Redirect.URLs[0] != "https://dtr.example.org" {
		t.Fatalf("redirect = %+v", c.Redirect)
	}
	if c.Redirect.CAs[0] != "/certs/dtr.cert.pem" || c.Storage.Root != "/var/lib/registry" || c.Storage.BlobTTL.D() != 24*time.Hour {
		t.Fatalf("folded config %+v", c)
	}
	if c.HTTP.Addr != "0.0.0.0:443" || c.HTTP.TLS.Certificate != "/certs/cache.cert.pem" {
		t.Fatalf("http %+v", c.HTTP)
	}
	// Tokens must be for this cache: its name is http.host's host name.
	if len(c.Redirect.Audiences) != 1 || c.Redirect.Audiences[0] != "cache-asia.example.org" {
		t.Fatalf("audiences %v", c.Redirect.Audiences)
	}
	// The files it names are checked, by key, before serving.
	err = CheckFiles(c.Files())
	if err == nil || !strings.Contains(err.Error(), "http.tls.certificate:") || !strings.Contains(err.Error(), "redirect.cas[0]:") {
		t.Fatalf("CheckFiles = %v", err)
	}
}

func TestDistributionProxyConfig(t *testing.T) {
	c, err := ParseCache([]byte(`
version: 0.1
log: {level: debug, formatter: text}
storage: {filesystem: {rootdirectory: /tmp/x}}
http: {addr: ":5000"}
proxy: {remoteurl: https://registry-1.docker.io, username: u, password: p}
health: {storagedriver: {enabled: true}}
`), "proxy.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Mirror == nil || c.Mirror.Default != "remote" || c.Mirror.Upstreams[0].Hosts[0] != "registry-1.docker.io" || c.Log.Format != "console" {
		t.Fatalf("mirror %+v log %+v", c.Mirror, c.Log)
	}
	if len(c.Unused) != 1 || c.Unused[0] != "health" {
		t.Fatalf("unused keys %v", c.Unused)
	}
}

func TestCacheConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "storage: {root: /x}\nredirct: {}\n", `unknown key "redirct"`},
		{"unknown nested key", "storage: {root: /x, max_sise: 1GB}\n", `unknown key "max_sise"`},
		{"bad size", "storage: {root: /x, max_size: 10XB}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", `invalid size "10XB"`},
		{"bad duration", "storage: {root: /x, blob_ttl: soon}\n", `invalid duration "soon"`},
		{"no mode", "storage: {root: /x}\n", "redirect: configure at least one"},
		{"no root", "mirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "storage.root: required"},
		{"bad upstream url", "storage: {root: /x}\nredirect: {upstreams: ['ftp://x']}\n", `redirect.upstreams[0]: invalid URL "ftp://x"`},
		{"bad mirror default", "storage: {root: /x}\nmirror: {default: b, upstreams: [{name: a, url: 'http://a'}]}\n", `mirror.default: no upstream named "b"`},
		{"duplicate mirror", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}, {name: a, url: 'http://b'}]}\n", `mirror.upstreams[1].name: duplicate name "a"`},
		{"bad parallel", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfill: {parallel: 100}\n", "fill.parallel: must be between 1 and 64"},
		{"watermarks", "storage: {root: /x, high_watermark: 0.5, low_watermark: 0.7}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "storage.low_watermark"},
		{"tls half", "storage: {root: /x}\nhttp: {tls: {certificate: /c}}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "http.tls: set both"},
		{"both password forms", "storage: {root: /x}\nredirect: {upstreams: ['http://a'], username: u, password: p, password_file: " + pwFile + "}\n", "redirect.password: set either"},
		{"password without user", "storage: {root: /x}\nredirect: {upstreams: ['http://a'], password_file: " + pwFile + "}\n", "redirect.username: required"},
		{"unsupported middleware", "storage: {root: /x}\nmiddleware: {registry: [{name: cloudfront}]}\n", `middleware.registry[0].name: unsupported middleware "cloudfront"`},
		{"bad blobttl", "storage: {filesystem: {rootdirectory: /x}}\nmiddleware: {registry: [{name: downstream, options: {blobttl: 1y, upstreams: ['https://a']}}]}\n", "middleware.registry[0].options.blobttl"},
		{"bad log level", "storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nlog: {level: loud}\n", `log.level: unknown level "loud"`},
		{"bad name", "name: Asia!\nstorage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "name: invalid cache name"},
		{"not yaml", "storage: [\n", "config t.yml"},
		{"redirect without a name", "storage: {root: /x}\nredirect: {upstreams: ['https://o']}\n", "name: required in redirect mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCache([]byte(tt.yaml), "t.yml")
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	c, err := ParseCache([]byte("name: asia\nstorage: {root: /x}\nredirect: {upstreams: ['https://o'], username: cache, password_file: "+pw+"}\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Redirect.Password != "s3cret" {
		t.Fatalf("password %q", c.Redirect.Password)
	}
}

func TestParseSizeAndDuration(t *testing.T) {
	sizes := map[string]int64{"4096": 4096, "1KB": 1000, "1KiB": 1024, "200GiB": 200 << 30, "1.5 MiB": 3 << 19, "10gb": 10e9}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || int64(got) != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GB", "-1", "1XB", "1e99GB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	durs := map[string]time.Duration{"24h": 24 * time.Hour, "1500000000": 1500 * time.Millisecond, "7d": 7 * 24 * time.Hour, "90s": 90 * time.Second, "1h30m": 90 * time.Minute}
	for in, want := range durs {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got.D(), err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1y", "soon", "-5m"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// FuzzParseCache checks that no input panics the parser or validator.
func FuzzParseCache(f *testing.F) {
	f.Add([]byte(dtrExample))
	f.Add([]byte("storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n"))
	f.Add([]byte("storage: {max_size: 1e3GiB, blob_ttl: 99999999999999999999}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCache(data, "fuzz")
		if err != nil {
			return
		}
		_ = c.Validate()
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1GiB", "0", "1.5MB", ".5k", "9999999999999TB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err == nil && v < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, v)
		}
	})
}

func TestForwardProxyConfig(t *testing.T) {
	c, err := ParseCache([]byte(`
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
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	f := c.Forward
	if f.Addr != ":3128" || len(f.Ports) != 1 || f.Ports[0] != 443 || f.AuthTTL.D() != 60*time.Second ||
		f.MaxLeafCerts != 1000 || f.IdleTimeout.D() != 2*time.Minute {
		t.Fatalf("defaults: %+v", f)
	}
	err = CheckFiles(c.Files())
	if err == nil || !strings.Contains(err.Error(), "forward_proxy.ca_dir:") || !strings.Contains(err.Error(), "ca.key") {
		t.Fatalf("CheckFiles = %v, want the missing CA files named by key", err)
	}

	tests := []struct{ yaml, want string }{
		{"forward_proxy: {intercept: [r.test]}", "forward_proxy.ca_dir: required"},
		{"forward_proxy: {ca_dir: /ca}", "forward_proxy.intercept: list the registry hosts"},
		{"forward_proxy: {ca_dir: /ca, intercept: ['r.test', 'bad host']}", `forward_proxy.intercept[1]: invalid entry "bad host"`},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], tunnel: ['r.test:443']}", "forward_proxy.tunnel[0]: r.test is also in forward_proxy.intercept"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], ports: [0]}", "forward_proxy.ports[0]: invalid port 0"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], clients: [10.0.0.0/8, nope]}", `forward_proxy.clients[1]: invalid address or CIDR "nope"`},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], allow_private: [127.0.0.1/40]}", "forward_proxy.allow_private[0]"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], hosts: {r.test: 'x y'}}", "forward_proxy.hosts[r.test]: invalid address"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], auth_cache_ttl: 5m}", "forward_proxy.auth_cache_ttl: must be between 0 and 1m0s"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], max_leaf_certs: -1}", "forward_proxy.max_leaf_certs"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], idle_timeout: 10ms}", "forward_proxy.idle_timeout"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], addr: 3128}", "forward_proxy.addr"},
		{"forward_proxy: {ca_dir: /ca, intercept: [r.test], intercpt: [x]}", `unknown key "intercpt"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			c, err := ParseCache([]byte("storage: {root: /x}\n"+tt.yaml+"\n"), "t.yml")
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
