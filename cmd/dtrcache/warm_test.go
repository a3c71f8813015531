package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
)

// TestWarm pre-fills the asia cache through the origin as alice: every
// blob of the image ends up in the cache's store.
func TestWarm(t *testing.T) {
	ctx := context.Background()
	tp, err := testenv.StartTopology(ctx, testenv.TopologyOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	info, err := tp.Seed(ctx, "website/ui:3-stable", testenv.ImageSpec{Layers: 3, LayerSize: 300 << 10, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.SetUserCache(ctx, "alice", tp.CacheName); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DTRCACHE_WARM_PASSWORD", tp.Password)
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"warm", "--user", "alice", tp.OriginHost + "/website/ui:3-stable"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "warm (") {
		t.Fatalf("output %q", out.String())
	}
	// Blobs are published once durable, just after their readers finish.
	deadline := time.Now().Add(10 * time.Second)
	for tp.CacheStore.Stats().FillsInFlight > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := tp.CacheStore.Stats().Blobs; got != int64(len(info.Layers)+1) {
		t.Fatalf("the cache holds %d blobs after warming, want %d", got, len(info.Layers)+1)
	}
	// A missing image is an error, exit 1.
	errOut.Reset()
	if code := run(ctx, []string{"warm", "--user", "alice", tp.OriginHost + "/website/nope:1"}, &out, &errOut); code != 1 {
		t.Fatalf("missing image: exit %d", code)
	}
}
