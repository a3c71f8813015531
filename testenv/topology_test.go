package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
	"go.uber.org/zap/zaptest"
)

// TestTopology runs the demo's three pulls on a small image: direct from
// the origin, cold through the cache, warm. It checks where the bytes came
// from and how many crossed the WAN.
func TestTopology(t *testing.T) {
	ctx := context.Background()
	tp, err := testenv.StartTopology(ctx, testenv.TopologyOptions{
		Dir:    t.TempDir(),
		WAN:    wan.Config{Latency: 5 * time.Millisecond, Bandwidth: 64 << 20},
		Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	info, err := tp.Seed(ctx, "website/ui:3-stable", testenv.ImageSpec{Layers: 3, LayerSize: 1 << 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	pull := func(phase string) int64 {
		t.Helper()
		tp.Link.ResetStats()
		tp.CacheCounter.Reset()
		res, err := tp.PullAs(ctx, "alice", "website/ui:3-stable", nil)
		if err != nil || res.Digest != info.Digest {
			t.Fatalf("%s pull: %v %v", phase, res.Digest, err)
		}
		// The link counts a read after handing its bytes on: let the
		// count of the last reads land before using it.
		if phase != "warm" {
			eventually(func() bool { return tp.Link.Stats().BytesDown >= info.BlobBytes })
		}
		return tp.Link.Stats().BytesDown
	}

	direct := pull("direct")
	if direct < info.BlobBytes || tp.CacheCounter.TotalBlobGets() != 0 {
		t.Fatalf("direct pull: %d bytes over the WAN (image %d), %d blob GETs at the cache", direct, info.BlobBytes, tp.CacheCounter.TotalBlobGets())
	}
	if err := tp.SetUserCache(ctx, "alice", tp.CacheName); err != nil {
		t.Fatal(err)
	}
	cold := pull("cold")
	if got := tp.CacheCounter.TotalBlobGets(); got != len(info.Layers)+1 {
		t.Fatalf("cold pull: the cache served %d blobs, want %d", got, len(info.Layers)+1)
	}
	if cold < info.BlobBytes || cold > info.BlobBytes*11/10 {
		t.Fatalf("cold pull: %d bytes over the WAN, want about the image (%d)", cold, info.BlobBytes)
	}
	warm := pull("warm")
	// The last commit may follow the last byte.
	eventually(func() bool { return tp.CacheStore.Stats().Blobs == int64(len(info.Layers)+1) })
	if tp.CacheStore.Stats().Blobs != int64(len(info.Layers)+1) {
		t.Fatalf("store holds %d blobs", tp.CacheStore.Stats().Blobs)
	}
	if warm > info.BlobBytes/20 {
		t.Fatalf("warm pull: %d bytes over the WAN for a %d-byte image; only manifests and redirects should cross", warm, info.BlobBytes)
	}
}

// eventually waits up to 5 s for cond; the caller then asserts what it
// needs, so a timeout shows as that assertion's failure.
func eventually(cond func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}
