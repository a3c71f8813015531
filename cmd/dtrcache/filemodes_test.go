package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
)

// TestReadableOfficeCAKeyRefusesToStart is the regression test of a cache
// that served with a world-readable office CA key after a warning: the
// key can sign a certificate for any name the office trusts, so the
// configuration is refused (exit 2, before serving), naming the file and
// the chmod; at 0600 it is accepted.
func TestReadableOfficeCAKeyRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := ca.Init(caDir, ca.Options{}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(caDir, ca.KeyFile)
	yml := filepath.Join(dir, "cache.yml")
	os.WriteFile(yml, []byte("storage: {root: "+dir+"}\nforward_proxy: {addr: '127.0.0.1:0', ca_dir: "+caDir+", intercept: [registry.test]}\n"), 0o600)
	for _, tt := range []struct {
		mode os.FileMode
		want string // "" means accepted
	}{
		{0o644, "forward_proxy.ca_dir: " + key + " has mode 0644"},
		{0o640, "chmod 600 " + key},
		{0o600, ""},
	} {
		if err := os.Chmod(key, tt.mode); err != nil {
			t.Fatal(err)
		}
		_, err := loadCacheConfig(cacheFlags{config: yml})
		switch {
		case tt.want == "" && err != nil:
			t.Fatalf("mode %04o: %v", tt.mode, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Fatalf("mode %04o: error %v, want it to contain %q", tt.mode, err, tt.want)
		}
	}
}

// TestReadableSecretFilesAreNamed: a password file or TLS key that group
// or others may read is named, with its key and the chmod, in a warning
// the command logs once at start (config.Exposed).
func TestReadableSecretFilesAreNamed(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("s3cret\n"), mode)
		os.Chmod(p, mode)
		return p
	}
	open, closed := write("open-password", 0o644), write("closed-password", 0o600)
	tlsKey := write("tls.key", 0o640)
	c := &config.Cache{
		HTTP:     config.HTTP{TLS: config.TLS{Certificate: write("tls.crt", 0o644), Key: tlsKey}},
		Redirect: &config.Redirect{Upstream: config.Upstream{URLs: []string{"https://o"}, Username: "c", PasswordFile: open}},
		Mirror: &config.Mirror{Upstreams: []config.MirrorUpstream{
			{Name: "a", Upstream: config.Upstream{URL: "https://a", Username: "u", PasswordFile: closed}},
			{Name: "b", Upstream: config.Upstream{URL: "https://b", Username: "u", PasswordFile: open}},
		}},
		Name: "asia",
	}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(config.Exposed(c.Files()), "\n")
	for _, want := range []string{
		"http.tls.key: " + tlsKey + " has mode 0640",
		"redirect.password_file: " + open + " has mode 0644: group or others may read it; chmod 600 " + open,
		"mirror.upstreams[1].password_file: " + open,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, closed) || strings.Contains(got, "tls.crt") {
		t.Errorf("a private file or a certificate is named:\n%s", got)
	}

	o := &config.Origin{Backend: config.Backend{URL: "http://r", Username: "o", PasswordFile: open}}
	if err := o.Normalize(); err != nil {
		t.Fatal(err)
	}
	if got := config.Exposed(o.Files()); len(got) != 1 || !strings.HasPrefix(got[0], "backend.password_file: "+open) {
		t.Fatalf("origin warnings %v", got)
	}
}
