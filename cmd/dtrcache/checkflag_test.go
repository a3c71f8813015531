package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

func TestCheckFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h, err := policy.HashPassword("pw", 4)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := write("htpasswd", "admin:"+h+"\n")
	access := write("policy.yml", "admins: [admin]\n")
	keys := filepath.Join(dir, "keys")
	k, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(keys, k, time.Now()); err != nil {
		t.Fatal(err)
	}
	origin := "backend: {url: 'http://127.0.0.1:1'}\nauth: {htpasswd: " + htpasswd + "}\npolicy: " + access + "\ndata_dir: " + dir + "/data\n"
	tests := []struct {
		name, cmd, yaml string
		code            int
		want            string
	}{
		{"cache ok", "cache", "storage: {root: " + dir + "/store}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", 0, "configuration OK"},
		{"cache refused", "cache", "storage: {root: " + dir + "/store, max_size: lots}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", 2, `invalid size "lots"`},
		{"origin ok", "origin", origin + "keys: {dir: " + keys + "}\n", 0, "configuration OK"},
		{"origin without keys", "origin", origin + "keys: {dir: " + dir + "}\n", 2, "keys.dir:"},
		{"origin with a bad htpasswd", "origin", strings.Replace(origin, htpasswd, access, 1) + "keys: {dir: " + keys + "}\n", 2, "auth.htpasswd:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), []string{tt.cmd, "--check", "--config", write(tt.cmd+".yml", tt.yaml)}, &out, &out)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("exit %d, %q; want %d and %q", code, out.String(), tt.code, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
				t.Fatal("--check created the store")
			}
		})
	}
}
