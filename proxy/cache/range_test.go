package cache_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/dtrcache/dtrcache/testenv"
)

// TestInvertedAndUnsatisfiableRangesAre416 is the regression test of a
// mirror and a cache that answered "Range: bytes=500-0" with 200 and the
// whole blob: a syntactically valid range that is inverted, or that starts
// at or after the end, is 416 with "Content-Range: bytes */<size>", as
// distribution answers and the OCI conformance suite expects — cold (the
// fill path) and warm (the store), in both modes.
func TestInvertedAndUnsatisfiableRangesAre416(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.push(t, "r/a:1", testenv.ImageSpec{Layers: 2, LayerSize: 2048, Seed: 71})
	ranges := []string{"bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=1-0", "bytes=6000000-0"}
	for li, mode := range []string{"redirect", "mirror"} {
		d, data := layerBytes(t, img, li)
		path := "/v2/r/a/blobs/" + d.String()
		if mode == "redirect" {
			path += "?token=" + e.token(t, "r/a", d)
		}
		for _, phase := range []string{"cold", "warm"} {
			for _, rng := range ranges {
				t.Run(fmt.Sprintf("%s/%s/%s", mode, phase, rng), func(t *testing.T) {
					resp, body, err := e.get(t, path, map[string]string{"Range": rng})
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
						t.Fatalf("status %d (%d bytes), want 416", resp.StatusCode, len(body))
					}
					if want := fmt.Sprintf("bytes */%d", len(data)); resp.Header.Get("Content-Range") != want {
						t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
					}
					if errorCode(t, body) != "RANGE_INVALID" {
						t.Fatalf("body %s", body)
					}
				})
			}
			if phase == "cold" {
				// The 416s filled the blob: the warm round reads the store.
				resp, body, err := e.get(t, path, nil)
				if err != nil || resp.StatusCode != http.StatusOK || len(body) != len(data) {
					t.Fatalf("%s full GET: %d, %d bytes, %v", mode, resp.StatusCode, len(body), err)
				}
			}
		}
	}
}
