package cache_test

import (
	"net/http"
	"testing"

	"github.com/dtrcache/dtrcache/testenv"
)

// TestCacheStatusHeader: a blob GET says how the cache answered it (RFC
// 9211), in both modes: a fill it started, then the store.
func TestCacheStatusHeader(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "cs/a:1", testenv.ImageSpec{Layers: 2, LayerSize: 4096, Seed: 91})
	for i, mode := range []string{"mirror", "redirect"} {
		d, _ := layerBytes(t, img, i)
		path := "/v2/cs/a/blobs/" + d.String()
		if mode == "redirect" {
			path += "?token=" + e.token(t, "cs/a", d)
		}
		for _, want := range []string{"dtrcache; fwd=miss; stored", "dtrcache; hit"} {
			resp, _, err := e.get(t, path, nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %v %v", mode, resp.Status, err)
			}
			if got := resp.Header.Get("Cache-Status"); got != want {
				t.Fatalf("%s: Cache-Status %q, want %q", mode, got, want)
			}
			if want == "dtrcache; fwd=miss; stored" {
				store := e.mirror
				if mode == "redirect" {
					store = e.store
				}
				waitFor(t, func() bool { return store.Stats().Blobs > int64(0) && store.Stats().FillsInFlight == 0 })
			}
		}
	}
}
