package cache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/zap"
)

// discardWriter is a ResponseWriter that drops the body, to measure the
// handler's own cost and allocations.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(io.Discard, r)
}

// warmEnv is a mirror with one blob of size already in its store.
func warmEnv(b *testing.B, size int64) (*env, string) {
	e := newEnvB(b)
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: size, Seed: 99})
	if err != nil {
		b.Fatal(err)
	}
	if err := testenv.Push(context.Background(), e.reg.Host+"/bench/blob:1", img, testenv.RemoteOptions{}); err != nil {
		b.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	path := "/v2/bench/blob/blobs/" + d.String()
	resp, err := http.Get(e.srv.URL + path) // fill
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return e, path
}

// BenchmarkWarmBlobHandler measures the server side of a warm blob GET
// (access log and metrics included) without the network: ns and
// allocations per request.
func BenchmarkWarmBlobHandler(b *testing.B) {
	e, path := warmEnv(b, 64<<10)
	h := serve.Instrument(zap.NewNop(), serve.NewHTTPMetrics(newRegistry()), serve.Mux(e.server, nil, nil))
	req := httptest.NewRequest(http.MethodGet, path, nil)
	b.ReportAllocs()
	b.SetBytes(64 << 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.ServeHTTP(&discardWriter{h: http.Header{}}, req)
	}
}

// BenchmarkWarmBlobHTTP measures warm GET throughput over loopback HTTP
// with parallel clients.
func BenchmarkWarmBlobHTTP(b *testing.B) {
	for _, size := range []int64{64 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			e, path := warmEnv(b, size)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			url := e.srv.URL + path
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 256<<10)
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
					resp.Body.Close()
					if n != size {
						b.Errorf("got %d bytes", n)
						return
					}
				}
			})
		})
	}
}

// BenchmarkColdBlobHTTP measures a cold blob GET through the mirror over
// loopback HTTP: the fill (upstream read, file write, hash, commit) and
// the client's stream, with the upstream (distribution) in the same
// process. Profile it with -cpuprofile and focus on casstore and cache to
// see where the fill path's cycles go.
func BenchmarkColdBlobHTTP(b *testing.B) {
	e, path := warmEnv(b, 64<<20)
	d, err := casstore.ParseDigest(path[len("/v2/bench/blob/blobs/"):])
	if err != nil {
		b.Fatal(err)
	}
	for e.mirror.Stats().FillsInFlight > 0 {
		time.Sleep(time.Millisecond) // the first fill commits
	}
	info, err := e.mirror.Stat(d)
	if err != nil {
		b.Fatal(err)
	}
	size := info.Size
	client := &http.Client{Transport: &http.Transport{}}
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := e.mirror.Delete(d); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		resp, err := client.Get(e.srv.URL + path)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
		resp.Body.Close()
		if n != size {
			b.Fatalf("got %d bytes", n)
		}
		for e.mirror.Stats().FillsInFlight > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// BenchmarkWarmManifestGET measures a warm pull's manifest GET (by
// digest) of an image of 50 small layers the store holds, with
// prefetching on as the dtrcache command runs it, until the prefetch
// work the GET started has ended: ns and allocations per manifest.
func BenchmarkWarmManifestGET(b *testing.B) {
	e := newEnvB(b)
	e.server.Prefetch = cache.DefaultPrefetch
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 50, LayerSize: 4 << 10, Seed: 98})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := testenv.Push(ctx, e.reg.Host+"/bench/many:1", img, testenv.RemoteOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := testenv.Pull(ctx, e.host+"/bench/many:1", testenv.RemoteOptions{}, nil); err != nil {
		b.Fatal(err)
	}
	idle := func() bool { st := e.server.PrefetchStats(); return st.Running+st.Waiting == 0 }
	for !idle() {
		time.Sleep(time.Millisecond) // the cold pull's prefetches end
	}
	d, _ := img.Digest()
	mt, _ := img.MediaType()
	h := serve.Instrument(zap.NewNop(), serve.NewHTTPMetrics(newRegistry()), serve.Mux(e.server, nil, nil))
	req := httptest.NewRequest(http.MethodGet, "/v2/bench/many/manifests/"+d.String(), nil)
	req.Header.Set("Accept", string(mt))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		for !idle() {
			runtime.Gosched()
		}
	}
}
