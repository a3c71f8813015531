package main

import (
	"bytes"
	"context"
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
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
	"go.uber.org/zap/zaptest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCacheCommandRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "storage: {root: /tmp/x}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\nfil: {}\n", `unknown key "fil"`},
		{"bad value", "storage: {root: /tmp/x, max_size: lots}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", `invalid size "lots"`},
		{"missing file", "name: asia\nstorage: {root: /tmp/x}\nredirect: {upstreams: ['https://o'], cas: [/nonexistent/ca.pem]}\n", "redirect.cas[0]:"},
		{"missing tls key", "storage: {root: /tmp/x}\nhttp: {tls: {certificate: /nonexistent}}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n", "http.tls: set both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"cache", "--config", writeFile(t, "c.yml", tt.yaml)}, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"cache"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--config is required") {
		t.Fatalf("no config: exit %d, %q", code, stderr.String())
	}
	if code := run(context.Background(), []string{"nope"}, io.Discard, &stderr); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	path := writeFile(t, "c.yml", "http: {addr: ':1'}\nstorage: {root: /a}\nmirror: {upstreams: [{name: a, url: 'http://a'}]}\n")
	t.Setenv("DTRCACHE_ROOT", "/from-env")
	cfg, err := loadCacheConfig(cacheFlags{config: path, addr: "127.0.0.1:9", root: envOr("DTRCACHE_ROOT", "")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:9" || cfg.Storage.Root != "/from-env" {
		t.Fatalf("addr %q root %q", cfg.HTTP.Addr, cfg.Storage.Root)
	}
}

// TestGracefulShutdown: when the process is told to stop (SIGTERM cancels
// the context), a download in flight finishes within the grace period and
// new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	ctx := context.Background()
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img, _ := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: 3 << 20, Seed: 12})
	if err := testenv.Push(ctx, reg.Host+"/a/b:1", img, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	// A slow link (2 MB/s) so the download takes over a second.
	link, err := wan.Listen(ctx, "127.0.0.1:0", reg.Host, wan.Config{Bandwidth: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	cfg, err := config.ParseCache([]byte(fmt.Sprintf("storage: {root: %s}\nshutdown_grace: 20s\nfill: {parallel: 1}\nmirror: {upstreams: [{name: a, url: 'http://%s'}]}\n", t.TempDir(), link.Addr())), "t")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := prepareCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serveCache(sctx, setup, zaptest.NewLogger(t), &cacheListeners{api: ln}) }()

	resp, err := http.Get("http://" + addr + "/v2/a/b/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	stop() // SIGTERM
	// New connections are refused once shutdown has begun (waited for,
	// not slept on), while the download in flight goes on.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5s after shutdown began")
		}
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || int64(len(buf)+len(rest)) != 3<<20 {
		t.Fatalf("download in flight: %d bytes, %v", len(buf)+len(rest), err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveCache: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serveCache did not return")
	}
}
