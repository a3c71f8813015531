package cache_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestMirrorPullColdThenWarm(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "website/ui:3-stable", testenv.ImageSpec{Layers: 3, LayerSize: 1 << 20, Seed: 1})
	want, _ := img.Digest()
	layers, _ := img.Layers()

	for i, phase := range []string{"cold", "warm"} {
		res, err := testenv.Pull(context.Background(), e.host+"/website/ui:3-stable", testenv.RemoteOptions{}, nil)
		if err != nil {
			t.Fatalf("%s pull: %v", phase, err)
		}
		if res.Digest != want {
			t.Fatalf("%s pull: manifest digest %s, want %s", phase, res.Digest, want)
		}
		for _, l := range layers {
			d, _ := l.Digest()
			if n := e.reg.Counter.BlobGets(d.String()); n != 1 {
				t.Fatalf("after the %s pull the registry saw %d GETs of layer %s, want 1", phase, n, d)
			}
		}
		// The tag is revalidated upstream on every pull: the first time with
		// a GET (the mirror has nothing to compare), then with a HEAD.
		if n := e.reg.Counter.Requests("HEAD manifest"); n != i {
			t.Fatalf("after the %s pull the registry saw %d manifest HEADs, want %d", phase, n, i)
		}
	}
	// The warm pull fetched no manifest body again either.
	if n := e.reg.Counter.Requests("GET manifest"); n != 1 {
		t.Fatalf("registry saw %d manifest GETs, want 1", n)
	}
}

func TestConcurrentColdPullsFetchEachBlobOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "team/app:1", testenv.ImageSpec{Layers: 4, LayerSize: 2 << 20, Seed: 2})
	want, _ := img.Digest()
	const clients = 16
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := testenv.Pull(context.Background(), e.host+"/team/app:1", testenv.RemoteOptions{}, nil)
			if err == nil && res.Digest != want {
				err = errMismatch
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	layers, _ := img.Layers()
	cfg, _ := img.ConfigName()
	for _, l := range layers {
		d, _ := l.Digest()
		if n := e.reg.Counter.BlobGets(d.String()); n != 1 {
			t.Errorf("%d clients: registry saw %d GETs of layer %s, want exactly 1", clients, n, d)
		}
	}
	if n := e.reg.Counter.BlobGets(cfg.String()); n != 1 {
		t.Errorf("registry saw %d GETs of the config blob, want 1", n)
	}
}

var errMismatch = &mismatchError{}

type mismatchError struct{}

func (*mismatchError) Error() string { return "digest mismatch" }

func TestMirrorServesStaleTagWhileUpstreamDown(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "website/ui:3-stable", testenv.ImageSpec{Layers: 1, LayerSize: 1000, Seed: 3})
	want, _ := img.Digest()
	if _, err := testenv.Pull(context.Background(), e.host+"/website/ui:3-stable", testenv.RemoteOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	e.reg.Close() // the upstream goes away

	resp, body, _ := e.get(t, "/v2/website/ui/manifests/3-stable", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get(cache.StaleHeader) == "" {
		t.Fatalf("tag while upstream down: %d, stale header %q, body %s", resp.StatusCode, resp.Header.Get(cache.StaleHeader), body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != want.String() || casstore.FromBytes(body).String() != want.String() {
		t.Fatalf("stale manifest digest %s, want %s", got, want)
	}
	// The whole image still pulls from the store.
	res, err := testenv.Pull(context.Background(), e.host+"/website/ui:3-stable", testenv.RemoteOptions{}, nil)
	if err != nil || res.Digest != want {
		t.Fatalf("pull with upstream down: %v %v", res.Digest, err)
	}
	// A tag the mirror never saw is an honest error, not a guess.
	resp, body, _ = e.get(t, "/v2/website/ui/manifests/never-seen", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "UNAVAILABLE") {
		t.Fatalf("unknown tag with upstream down: %d %s", resp.StatusCode, body)
	}
}

func TestMirrorNamespaceSelection(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "lib/x:1", testenv.ImageSpec{Layers: 1, LayerSize: 100, Seed: 4})
	d, _ := img.Digest()
	resp, _, _ := e.get(t, "/v2/lib/x/manifests/"+d.String()+"?ns="+e.reg.Host, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("?ns=%s: %d", e.reg.Host, resp.StatusCode)
	}
	resp, body, _ := e.get(t, "/v2/lib/x/manifests/"+d.String()+"?ns=docker.io", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NAME_UNKNOWN") {
		t.Fatalf("?ns=docker.io: %d %s", resp.StatusCode, body)
	}
}

func TestMirrorTagListPagination(t *testing.T) {
	e := newEnv(t, envOptions{})
	img, _ := testenv.GenerateImage(testenv.ImageSpec{Layers: 1, LayerSize: 10, Seed: 11})
	for _, tag := range []string{"a", "b", "c"} {
		if err := testenv.Push(t.Context(), e.reg.Host+"/pg/x:"+tag, img, testenv.RemoteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	next := "/v2/pg/x/tags/list?n=2"
	for next != "" {
		resp, body, _ := e.get(t, next, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", next, resp.StatusCode, body)
		}
		var list struct{ Tags []string }
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		got = append(got, list.Tags...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = strings.TrimPrefix(strings.SplitN(l, ">", 2)[0], "<")
		}
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("tags %v, want a,b,c", got)
	}
}

func TestMirrorPrefetchesOnManifestGET(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.server.Prefetch = 2
	img := e.push(t, "pre/fetch:1", testenv.ImageSpec{Layers: 5, LayerSize: 256 << 10, Seed: 21})
	info, _ := testenv.Describe(img)
	// A HEAD announces nothing: no prefetch.
	req, _ := http.NewRequest(http.MethodHead, e.srv.URL+"/v2/pre/fetch/manifests/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Prefetches are queued before the manifest is answered: none was.
	if n, gets := e.server.PrefetchStats().Queued, e.reg.Counter.TotalBlobGets(); n != 0 || gets != 0 {
		t.Fatalf("a manifest HEAD queued %d prefetches (%d blob GETs)", n, gets)
	}
	// A GET starts every blob's fill before the client asks for any.
	resp, _, _ = e.get(t, "/v2/pre/fetch/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	blobs := append([]v1.Hash{info.Config}, info.Layers...)
	if n := e.server.PrefetchStats().Queued; n != int64(len(blobs)) {
		t.Fatalf("the manifest GET queued %d prefetches, want %d", n, len(blobs))
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range blobs {
		for {
			if _, err := e.mirror.Stat(casstore.MustParseDigest(d.String())); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob %s was not prefetched", d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The pull that follows is all hits: one GET per blob at the registry.
	if _, err := testenv.Pull(context.Background(), e.host+"/pre/fetch:1", testenv.RemoteOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range blobs {
		if n := e.reg.Counter.BlobGets(d.String()); n != 1 {
			t.Fatalf("registry saw %d GETs of %s, want 1", n, d)
		}
	}
}

func TestMirrorWarmManifestQueuesNoPrefetch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.server.Prefetch = 2
	e.push(t, "pre/warm:1", testenv.ImageSpec{Layers: 4, LayerSize: 64 << 10, Seed: 22})
	if _, err := testenv.Pull(context.Background(), e.host+"/pre/warm:1", testenv.RemoteOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	cold := e.server.PrefetchStats().Queued
	if cold != 5 {
		t.Fatalf("the cold pull queued %d prefetches, want 5 (config and 4 layers)", cold)
	}
	// Every blob is stored now: the warm pull's manifest queues none.
	resp, _, _ := e.get(t, "/v2/pre/warm/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	if n := e.server.PrefetchStats().Queued; n != cold {
		t.Fatalf("the warm manifest GET queued %d prefetches, want 0", n-cold)
	}
}
