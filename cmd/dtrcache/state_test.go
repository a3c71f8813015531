package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/testenv/etcdtest"
	"go.uber.org/zap/zaptest"
)

// originBase is an origin configuration without its state, with files in
// dir: the admin "admin" has the password "dtrcache".
func originBase(t *testing.T, dir string) string {
	t.Helper()
	for name, body := range map[string]string{
		"htpasswd":   "admin:$2a$10$N3N0cxJHa5KfodDks9hHNOpix3AsPJZTDpfG1HT8CfF1Pu2k673gC\n",
		"policy.yml": "admins: [admin]\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Replicas on etcd share one key for the policies' sealed secrets.
	if err := os.WriteFile(filepath.Join(dir, "secrets.key"), bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("backend: {url: 'http://127.0.0.1:9'}\nauth: {htpasswd: %s}\npolicy: %s\nkeys: {dir: %s, generate: true}\npolicies: {secret_key: %s}\n",
		filepath.Join(dir, "htpasswd"), filepath.Join(dir, "policy.yml"), filepath.Join(dir, "keys"), filepath.Join(dir, "secrets.key"))
}

// TestOriginStateConfig: the state section is checked with every problem
// named by its key, and an etcd state needs no data_dir.
func TestOriginStateConfig(t *testing.T) {
	dir := t.TempDir()
	base := originBase(t, dir)
	open := filepath.Join(dir, "pw-open")
	os.WriteFile(open, []byte("s3cret\n"), 0o644)
	closed := filepath.Join(dir, "pw")
	os.WriteFile(closed, []byte("s3cret\n"), 0o600)
	files := etcdtest.NewTLSFiles(t)
	os.Chmod(files.ClientKey, 0o640)
	tests := []struct {
		name, yaml string
		want       []string // "" means valid
	}{
		{"badger", "data_dir: /var/lib/x\n", nil},
		{"neither", "", []string{"data_dir: required"}},
		{"etcd", "state: {etcd: {endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: /dc1/, dial_timeout: 2s}}\n", nil},
		{"etcd with a password file", "state: {etcd: {endpoints: ['http://e:2379'], username: origin, password_file: " + closed + "}}\n", nil},
		{"all at once", "state: {etcd: {endpoints: ['e:2379', 'http://e', 'ftp://e:1'], prefix: dc1, dial_timeout: 10m, password: x}}\n", []string{
			`state.etcd.endpoints[0]: invalid endpoint "e:2379"`, `state.etcd.endpoints[1]: endpoint "http://e" has no port`,
			`state.etcd.endpoints[2]: invalid endpoint`, `state.etcd.prefix: must end with /`, "state.etcd.dial_timeout: between",
			"state.etcd.username: required with a password"}},
		{"no endpoints", "state: {etcd: {prefix: /x/}}\n", []string{"state.etcd.endpoints: at least one"}},
		{"user without password", "state: {etcd: {endpoints: ['http://e:2379'], username: origin}}\n", []string{"state.etcd.password: required with a username"}},
		{"readable password file", "state: {etcd: {endpoints: ['http://e:2379'], username: origin, password_file: " + open + "}}\n", []string{"state.etcd.password_file: " + open + " has mode -rw-r--r--"}},
		{"tls half", "state: {etcd: {endpoints: ['https://e:2379'], tls: {certificate: " + files.ClientCert + "}}}\n", []string{"state.etcd.tls: set both certificate and key"}},
		{"tls over http", "state: {etcd: {endpoints: ['http://e:2379'], tls: {ca: " + files.CA + "}}}\n", []string{`state.etcd.endpoints[0]: "http://e:2379" is plain http`}},
		{"readable key", "state: {etcd: {endpoints: ['https://e:2379'], tls: {ca: " + files.CA + ", certificate: " + files.ClientCert + ", key: " + files.ClientKey + "}}}\n", []string{"state.etcd.tls: ", "chmod 600"}},
		{"unknown key", "state: {etcd: {endpoint: ['http://e:2379']}}\n", []string{`unknown key "endpoint"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.ParseOrigin([]byte(base+tt.yaml), "origin.yml")
			if err == nil {
				err = checkOrigin(cfg)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("valid configuration refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	cfg, _ := config.ParseOrigin([]byte(base+"state: {etcd: {endpoints: ['http://e:2379'], username: origin, password_file: "+closed+"}}\n"), "origin.yml")
	if err := checkOrigin(cfg); err != nil || cfg.State.Etcd.Password != "s3cret" {
		t.Fatalf("password_file: %q %v", cfg.State.Etcd.Password, err)
	}
}

// TestOriginReplicasShareEtcd runs two origins on one etcd: a cache
// registered through one is listed by the other, and /readyz follows the
// cluster's health.
func TestOriginReplicasShareEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
	dir := t.TempDir()
	yml := originBase(t, dir) + fmt.Sprintf("state: {etcd: {endpoints: [%s], prefix: /replicas/, dial_timeout: 2s}}\nshutdown_grace: 1s\n", c.Members[0].ClientURL)
	path := filepath.Join(dir, "origin.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var urls []string
	var done []chan error
	for i := range 2 {
		cfg, err := loadOriginConfig(path, "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "http://"+ln.Addr().String())
		d := make(chan error, 1)
		done = append(done, d)
		log := zaptest.NewLogger(t).Named(fmt.Sprintf("origin%d", i))
		go func() { d <- serveOrigin(ctx, cfg, log, ln) }()
	}
	defer func() {
		cancel()
		for _, d := range done {
			<-d
		}
	}()
	get := func(url string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.SetBasicAuth("admin", "dtrcache")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not %s within 20s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
	for _, u := range urls {
		waitFor("ready", func() bool { code, _ := get(u + "/readyz"); return code == http.StatusOK })
	}
	body := `{"name":"asia","host":"https://cache-asia.example.org"}`
	req, _ := http.NewRequest(http.MethodPost, urls[0]+"/api/v0/content_caches", strings.NewReader(body))
	req.SetBasicAuth("admin", "dtrcache")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("register a cache on replica 0: %d", resp.StatusCode)
	}
	waitFor("listed by replica 1", func() bool {
		code, b := get(urls[1] + "/api/v0/content_caches")
		var caches []struct{ Name, Host string }
		return code == http.StatusOK && json.Unmarshal([]byte(b), &caches) == nil && len(caches) == 1 &&
			caches[0].Name == "asia" && caches[0].Host == "https://cache-asia.example.org"
	})

	c.Members[0].Stop()
	for _, u := range urls {
		waitFor("not ready without etcd", func() bool { code, _ := get(u + "/readyz"); return code == http.StatusServiceUnavailable })
		// What the views hold is still served.
		if code, b := get(u + "/api/v0/content_caches"); code != http.StatusOK || !strings.Contains(b, "cache-asia.example.org") {
			t.Fatalf("caches without etcd: %d %s", code, b)
		}
	}
}

// FuzzCheckOrigin checks that no origin configuration panics the parser,
// Normalize or the checks (the state section among them).
func FuzzCheckOrigin(f *testing.F) {
	f.Add([]byte("backend: {url: 'http://r:5000'}\nstate: {etcd: {endpoints: ['https://e:2379', 'http://[::1]:2379'], prefix: /p/, dial_timeout: 1s}}\n"))
	f.Add([]byte("state: {etcd: {endpoints: ['%zz', 'http://:0', 'https://e:99999/x?y'], tls: {ca: /nonexistent}, username: u}}\n"))
	f.Add([]byte("data_dir: /x\nstate: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := config.ParseOrigin(data, "fuzz")
		if c == nil {
			return // not YAML
		}
		_ = checkOrigin(c)
	})
}
