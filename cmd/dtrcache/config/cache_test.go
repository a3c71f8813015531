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
	if err := c.Normalize(); err != nil {
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
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Mirror == nil || c.Mirror.Default != "remote" || c.Mirror.Upstreams[0].Hosts[0] != "registry-1.docker.io" || c.Log.Format != "console" {
		t.Fatalf("mirror %+v log %+v", c.Mirror, c.Log)
	}
	if len(c.Unused) != 1 || c.Unused[0] != "health" {
		t.Fatalf("unused keys %v", c.Unused)
	}
}

// TestCacheConfigErrorsNameTheKey: the problems of a file's shape, found
// while decoding and normalising, name their key. (The problems of values,
// found by the packages' own checks, are tested with prepareCache in
// cmd/dtrcache.)
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
		{"both password forms", "storage: {root: /x}\nredirect: {upstreams: ['http://a'], username: u, password: p, password_file: " + pwFile + "}\n", "redirect.password: set either"},
		{"unsupported middleware", "storage: {root: /x}\nmiddleware: {registry: [{name: cloudfront}]}\n", `middleware.registry[0].name: unsupported middleware "cloudfront"`},
		{"bad blobttl", "storage: {filesystem: {rootdirectory: /x}}\nmiddleware: {registry: [{name: downstream, options: {blobttl: 1y, upstreams: ['https://a']}}]}\n", "middleware.registry[0].options.blobttl"},
		{"not yaml", "storage: [\n", "config t.yml"},
		{"redirect without a name", "storage: {root: /x}\nredirect: {upstreams: ['https://o']}\n", "name: required in redirect mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCache([]byte(tt.yaml), "t.yml")
			if err == nil {
				err = c.Normalize()
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
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Redirect.Password != "s3cret" {
		t.Fatalf("password %q", c.Redirect.Password)
	}
}

// FuzzParseCache checks that no input panics the parser or Normalize.
func FuzzParseCache(f *testing.F) {
	f.Add([]byte(dtrExample))
	f.Add([]byte("storage: {root: /x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n"))
	f.Add([]byte("storage: {max_size: 1e3GiB, blob_ttl: 99999999999999999999}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := ParseCache(data, "fuzz")
		if c == nil {
			return // not YAML
		}
		_ = c.Normalize()
	})
}

// TestMirrorChecksRepositoryWithCredentials: an upstream with credentials
// has its repositories confirmed unless the file says otherwise; an
// anonymous one is served by digest unless the file asks.
func TestMirrorChecksRepositoryWithCredentials(t *testing.T) {
	c, err := ParseCache([]byte(`storage: {root: /x}
mirror:
  upstreams:
    - {name: anon, url: 'https://a'}
    - {name: creds, url: 'https://b', username: u, password: p}
    - {name: creds-off, url: 'https://c', username: u, password: p, check_repository: false}
    - {name: anon-on, url: 'https://d', check_repository: true}
`), "t.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false, true} {
		if got := c.Mirror.Upstreams[i].ChecksRepository(); got != want {
			t.Errorf("%s: ChecksRepository() = %v, want %v", c.Mirror.Upstreams[i].Name, got, want)
		}
	}
}
