package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestWarm pre-fills the asia cache through the origin as alice: every
// blob of the image ends up in the cache's store, and the output (not a
// terminal here) has a line per blob saying what the cache did, a line per
// image and a summary of the bytes filled and already cached; a second
// run finds everything cached; a user whose profile names no cache is
// told so.
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
	ref := tp.OriginHost + "/website/ui:3-stable"
	total := progress.Human(info.BlobBytes, "B")
	warm := func(user string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{"warm", "--user", user, ref}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		return out.String()
	}
	out := warm("alice")
	blobs := len(info.Layers) + 1
	for _, want := range []string{
		fmt.Sprintf("warming 1 image(s): %d blobs, %s\n", blobs, total),
		fmt.Sprintf("%s: warm, %d/%d blobs in", ref, blobs, blobs),
		fmt.Sprintf("warmed 1 image(s), %d/%d blobs, %s in", blobs, blobs, total),
		fmt.Sprintf("%s filled by the cache, 0 B already cached\n", total),
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("first run: output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, ": filled by the cache\n"); n != blobs {
		t.Fatalf("first run: %d blob lines saying filled, want %d:\n%s", n, blobs, out)
	}
	// Blobs are published once durable, just after their readers finish.
	deadline := time.Now().Add(10 * time.Second)
	for tp.CacheStore.Stats().Blobs < int64(blobs) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := tp.CacheStore.Stats().Blobs; got != int64(blobs) {
		t.Fatalf("the cache holds %d blobs after warming, want %d", got, blobs)
	}
	if out := warm("alice"); !strings.Contains(out, "0 B filled by the cache, "+total+" already cached\n") || strings.Count(out, ": already cached\n") != blobs {
		t.Fatalf("second run:\n%s", out)
	}
	if out := warm("bob"); !strings.Contains(out, total+" not from a dtrcache cache") || !strings.Contains(out, "profile must name a healthy cache") {
		t.Fatalf("a user without a cache:\n%s", out)
	}
	// A missing image is an error, exit 1.
	var o, errOut bytes.Buffer
	if code := run(ctx, []string{"warm", "--user", "alice", tp.OriginHost + "/website/nope:1"}, &o, &errOut); code != 1 {
		t.Fatalf("missing image: exit %d", code)
	}
}

// TestWarmReportOnATerminal: on a terminal each image has a bar labelled
// with its and the total blob counts, redrawn in place, and the run ends
// with the same summary.
func TestWarmReportOnATerminal(t *testing.T) {
	var out bytes.Buffer
	st := &cacheStatuses{byDigest: map[string]string{"sha256:a": "dtrcache; fwd=miss; stored", "sha256:b": "dtrcache; hit"}}
	imgs := []warmImage{{ref: "r/x:1", blobs: []warmBlob{{digest: "sha256:a", size: 1000}, {digest: "sha256:b", size: 500}}}}
	rep := newWarmReport(&out, true, imgs, st)
	rep.startImage(imgs[0])
	for _, b := range imgs[0].blobs {
		rep.claim(b.digest)
		rep.counter().Write(make([]byte, b.size))
		rep.blobDone(imgs[0], b, b.size, nil)
	}
	rep.finishImage(imgs[0], nil)
	rep.summary()
	s := out.String()
	for _, want := range []string{"warming 1 image(s): 2 blobs, 1.5 kB", "\r", "r/x:1  2/2 blobs · total 2/2 blobs", "1.0 kB filled by the cache, 500 B already cached\n"} {
		if !strings.Contains(s, want) {
			t.Fatalf("terminal output lacks %q:\n%q", want, s)
		}
	}
}
