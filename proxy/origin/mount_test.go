package origin_test

import (
	"io"
	"net/http"
	"net/url"
	"testing"
)

// TestMountParametersAreCheckedOnce is the regression test of an origin
// that checked the first `from` of a cross-repository mount and forwarded
// the raw query with all of them (a backend that takes the last one would
// mount from a repository the user cannot read): a repeated mount or from,
// or a query that does not parse, is 400; the backend gets exactly the
// parameters the origin checked; a source the user cannot read becomes a
// plain upload.
func TestMountParametersAreCheckedOnce(t *testing.T) {
	tp := newTopology(t)
	pub := blobDigests(tp.push(t, "website/ui:1", 21))[0]
	sec := blobDigests(tp.push(t, "secret/x:1", 22))[0]
	drain := func() {
		for {
			select {
			case <-tp.uploadQueries:
			default:
				return
			}
		}
	}
	drain()
	for _, tt := range []struct {
		name, query string
		status      int
		backend     string // the query the backend receives; "" none
	}{
		{"mount from a readable repository", "mount=" + pub + "&from=website/ui", http.StatusCreated, url.Values{"mount": {pub}, "from": {"website/ui"}}.Encode()},
		{"mount from an unreadable one: a plain upload", "mount=" + sec + "&from=secret/x", http.StatusAccepted, ""},
		{"two froms", "mount=" + sec + "&from=website/ui&from=secret/x", http.StatusBadRequest, "-"},
		{"two mounts", "mount=" + pub + "&mount=" + sec + "&from=website/ui", http.StatusBadRequest, "-"},
		{"a query that does not parse", "mount=" + sec + "&from=website/ui;from=secret/x", http.StatusBadRequest, "-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tp.origin.URL+"/v2/scratch/a/blobs/uploads/?"+tt.query, nil)
			req.SetBasicAuth("alice", password)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			select {
			case q := <-tp.uploadQueries:
				if tt.backend == "-" || q != tt.backend {
					t.Fatalf("the backend got an upload POST with query %q, want %q", q, tt.backend)
				}
			default:
				if tt.backend != "-" {
					t.Fatal("the backend got no upload POST")
				}
			}
		})
	}
}
