package replicate

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/zap/zaptest"

	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// bigImage is an image with one layer of size random bytes.
func bigImage(t *testing.T, size int64, seed uint64) (v1.Image, int64) {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return img, must[int64](t)(must[[]v1.Layer](t)(img.Layers())[0].Size())
}

// behind puts a WAN link in front of r and returns a client through it.
func behind(t *testing.T, r *reg, cfg wan.Config) (*wan.Link, *upstream.Client) {
	t.Helper()
	l, err := wan.Listen(context.Background(), "127.0.0.1:0", r.Host, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := upstream.New(upstream.Config{URLs: []string{"http://" + l.Addr()}, Transport: transport(t)})
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

// TestResumeAfterWANCut cuts the WAN between the engine and the target in
// the middle of a layer's upload (at the link, for real) and checks the
// copy resumes where the target's upload stands: the bytes over the WAN
// stay within 5 % of the layer.
func TestResumeAfterWANCut(t *testing.T) {
	for _, tt := range []struct {
		name  string
		size  int64
		chunk int64
	}{
		{"streamed 256MiB", 256 << 20, 0},
		{"chunks of 16MiB", 64 << 20, 16 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
			img, layer := bigImage(t, tt.size, 41)
			pushImage(t, src, "dev/big:1", img)
			link, dcl := behind(t, dst, wan.Config{CutUpAtLinkBytes: layer / 2})
			res, err := Copy(context.Background(), Ref{Client: src.client(t), Repository: "dev/big", Tag: "1"},
				Ref{Client: dcl, Repository: "prod/big", Tag: "1"}, Options{ChunkSize: tt.chunk})
			if err != nil {
				t.Fatal(err)
			}
			st := link.Stats()
			if st.Cuts != 1 || res.Resumes < 1 {
				t.Fatalf("cuts %d, resumes %d: the cut did not happen", st.Cuts, res.Resumes)
			}
			ratio := float64(st.BytesUp) / float64(layer)
			t.Logf("%d MiB layer, cut at %d MiB: %.4f× the layer over the WAN (%d bytes), %d resumes", layer>>20, layer>>21, ratio, st.BytesUp, res.Resumes)
			if ratio > 1.05 {
				t.Fatalf("%.3f× the layer over the WAN, want ≤ 1.05", ratio)
			}
			sameImage(t, src, "dev/big:1", dst, "prod/big:1")
		})
	}
}

// TestResumeAfterSourceCut cuts the source's stream in the middle of the
// layer (the WAN on the pulling side, as in poll mirroring): the engine
// re-opens the source with a range at the target's offset.
func TestResumeAfterSourceCut(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	img, layer := bigImage(t, 48<<20, 43)
	pushImage(t, src, "remote/big:1", img)
	link, scl := behind(t, src, wan.Config{CutAtLinkBytes: layer / 2})
	res, err := Copy(context.Background(), Ref{Client: scl, Repository: "remote/big", Tag: "1"},
		Ref{Client: dst.client(t), Repository: "mirror/big", Tag: "1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := link.Stats()
	layerDigest := must[v1.Hash](t)(must[[]v1.Layer](t)(img.Layers())[0].Digest())
	if st.Cuts != 1 || res.Resumes != 1 || src.Counter.RangeGets(layerDigest.String()) != 1 {
		t.Fatalf("cuts %d, resumes %d, range GETs %d; want 1 each", st.Cuts, res.Resumes, src.Counter.RangeGets(layerDigest.String()))
	}
	if ratio := float64(st.BytesDown) / float64(layer); ratio > 1.05 {
		t.Fatalf("%.3f× the layer read from the source, want ≤ 1.05", ratio)
	}
	sameImage(t, src, "remote/big:1", dst, "mirror/big:1")
}

// TestCheckpointResume stops a copy half way through a layer (the job's
// process dies: its connections close) and continues it in a new Copy
// from the checkpoints: same upload session, the bytes already stored not
// sent again. An upload the registry no longer knows starts over.
func TestCheckpointResume(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	img, layer := bigImage(t, 64<<20, 47)
	pushImage(t, src, "dev/app:1", img)
	layerDigest := must[v1.Hash](t)(must[[]v1.Layer](t)(img.Layers())[0].Digest()).String()

	var mu sync.Mutex
	latest := map[string]Checkpoint{}
	ctx, cancel := context.WithCancel(context.Background())
	opt := Options{CheckpointEvery: 4 << 20, Checkpoint: func(cp Checkpoint) {
		mu.Lock()
		defer mu.Unlock()
		latest[cp.Digest] = cp
		if cp.Digest == layerDigest && cp.Offset >= layer/2 {
			cancel() // the process dies here
		}
	}}
	srcRef := Ref{Client: src.client(t), Repository: "dev/app", Tag: "1"}
	dstRef := Ref{Client: dst.client(t), Repository: "prod/app", Tag: "1"}
	res1, err := Copy(ctx, srcRef, dstRef, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first copy: %v, want it cancelled", err)
	}
	if transient, _ := IsTransient(err); transient {
		t.Fatalf("a cancelled copy is transient")
	}
	cp := latest[layerDigest]
	if cp.Location == "" || cp.Size != layer || cp.Repository != "prod/app" {
		t.Fatalf("checkpoint %+v", cp)
	}
	var sessions []string // the layer's upload paths in the second run
	res2, err := Copy(context.Background(), srcRef, dstRef, Options{Resume: []Checkpoint{cp}, Logger: zaptest.NewLogger(t),
		Checkpoint: func(c Checkpoint) {
			if c.Digest == layerDigest {
				mu.Lock()
				sessions = append(sessions, uploadPath(t, c.Location))
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, src, "dev/app:1", dst, "prod/app:1")
	for _, p := range sessions {
		if p != uploadPath(t, cp.Location) {
			t.Fatalf("the layer went to upload %s, want the checkpoint's %s continued", p, uploadPath(t, cp.Location))
		}
	}
	// One resume is allowed: the registry may still be storing the bytes
	// of the cut request when the new copy asks for its offset (a 416
	// then, and the count asked again).
	if res2.Resumes > 1 || res2.BlobsCopied+res2.BlobsSkipped != 2 {
		t.Fatalf("second copy %+v", res2)
	}
	total := res1.BytesCopied + res2.BytesCopied
	if ratio := float64(total) / float64(layer); ratio > 1.05 {
		t.Fatalf("%.3f× the layer sent over both runs (%d + %d), want ≤ 1.05", ratio, res1.BytesCopied, res2.BytesCopied)
	}

	// An upload that is gone (cancelled at the registry): start over.
	img2, layer2 := bigImage(t, 4<<20, 53)
	pushImage(t, src, "dev/app:2", img2)
	d2 := must[v1.Hash](t)(must[[]v1.Layer](t)(img2.Layers())[0].Digest()).String()
	cl := dst.client(t)
	loc := startSession(t, cl, "prod/app")
	resp, err := cl.Do(context.Background(), upstream.Request{Method: http.MethodDelete, URL: loc, Scope: upstream.PushScope("prod/app")})
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("cancel upload: %v %v", resp, err)
	}
	resp.Body.Close()
	res3, err := Copy(context.Background(), Ref{Client: src.client(t), Repository: "dev/app", Tag: "2"},
		Ref{Client: cl, Repository: "prod/app", Tag: "2"}, Options{Resume: []Checkpoint{{Repository: "prod/app", Digest: d2, Size: layer2, Location: loc, Offset: 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if res3.BytesCopied < layer2 {
		t.Fatalf("BytesCopied %d, want the whole layer (%d) again", res3.BytesCopied, layer2)
	}
	sameImage(t, src, "dev/app:2", dst, "prod/app:2")
}

// uploadPath is an upload URL without its query (the registry's state
// token changes with every request; the path names the session).
func uploadPath(t *testing.T, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

func startSession(t *testing.T, cl *upstream.Client, repo string) string {
	t.Helper()
	resp, err := cl.Do(context.Background(), upstream.Request{Method: http.MethodPost, Path: "/v2/" + repo + "/blobs/uploads/", Scope: upstream.PushScope(repo)})
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %v %v", resp, err)
	}
	resp.Body.Close()
	return must[string](t)(upstream.Location(resp))
}

// TestBandwidthCap: a capped copy cannot be faster than its cap (a lower
// bound only: a slow machine makes it slower, never faster), and the
// progress counters account for every byte.
func TestBandwidthCap(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 4, LayerSize: 1 << 20, Seed: 61})
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, src, "dev/app:1", img)
	const capBps = 8 << 20
	p := &Progress{}
	start := time.Now()
	res, err := Copy(context.Background(), Ref{Client: src.client(t), Repository: "dev/app", Tag: "1"},
		Ref{Client: dst.client(t), Repository: "prod/app", Tag: "1"}, Options{BandwidthLimit: capBps, Progress: p})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	burst := int64(NewLimiter(capBps).Burst())
	floor := time.Duration(float64(res.BytesCopied-burst) / capBps * float64(time.Second))
	if elapsed < floor {
		t.Fatalf("%d bytes in %v under a cap of %d B/s, want at least %v", res.BytesCopied, elapsed, capBps, floor)
	}
	s := p.Snapshot()
	if s.BytesCopied != res.BytesCopied || s.BlobsDone != 5 || s.BlobsTotal != 5 || len(s.Current) != 0 || res.BytesCopied < 4<<20 {
		t.Fatalf("progress %+v, result %+v", s, res)
	}

}
