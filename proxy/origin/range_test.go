package origin_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestOriginAnswersBadRangesWith416: a blob the origin serves itself (no
// cache in the user's profile) answers an inverted or unsatisfiable range
// with 416 and "Content-Range: bytes */<size>", and a good range with 206.
func TestOriginAnswersBadRangesWith416(t *testing.T) {
	tp := newTopology(t)
	img := tp.push(t, "website/ui:range", 11)
	ls, _ := img.Layers()
	size, _ := ls[0].Size()
	d := blobDigests(img)[0]
	for _, tt := range []struct {
		rng          string
		status       int
		contentRange string
	}{
		{"bytes=500-0", http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("bytes */%d", size)},
		{fmt.Sprintf("bytes=%d-", size), http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("bytes */%d", size)},
		{"bytes=500-1499", http.StatusPartialContent, fmt.Sprintf("bytes 500-1499/%d", size)},
	} {
		t.Run(tt.rng, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tp.origin.URL+"/v2/website/ui/blobs/"+d, nil)
			req.SetBasicAuth("bob", password)
			req.Header.Set("Range", tt.rng)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Range") != tt.contentRange {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, resp.Header.Get("Content-Range"), tt.status, tt.contentRange)
			}
		})
	}
}
