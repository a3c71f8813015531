package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestManifestVouching counts the registry's authorization HEADs of a cold
// and a warm pull, with manifest vouching on (the default) and off: with
// it, the manifest GET authorizes every blob it lists and no blob needs a
// HEAD; without it, each blob is asked once and then remembered.
func TestManifestVouching(t *testing.T) {
	tests := []struct {
		name           string
		off            bool
		coldHEADs      int
		vouchedPerPull float64
	}{
		{"on", false, 0, 5},
		{"off", true, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{options: func(o *Options) { o.NoManifestVouching = tt.off }})
			img := e.push("website/ui:3", 31, 4, 128<<10)
			want, _ := img.Digest()
			for i, wantHEADs := range []int{tt.coldHEADs, 0} {
				heads := e.reg.Counter.Requests("HEAD blob")
				got, err := pull(context.Background(), "registry.test/website/ui:3", "alice", e.client())
				if err != nil || got != want {
					t.Fatalf("pull %d: %v %v, want %v", i, got, err, want)
				}
				if n := e.reg.Counter.Requests("HEAD blob") - heads; n != wantHEADs {
					t.Errorf("pull %d: %d authorization HEADs, want %d", i, n, wantHEADs)
				}
			}
			if n := e.reg.Counter.TotalBlobGets(); n != 5 {
				t.Errorf("%d blob GETs at the registry, want 5 (one per blob)", n)
			}
			if n := counterValue(e.metrics.vouches); n != 2*tt.vouchedPerPull {
				t.Errorf("%v digests vouched for, want %v", n, 2*tt.vouchedPerPull)
			}
		})
	}
}

// TestVouchingIsNarrow: what a manifest vouches for is that credential's,
// that repository's and those digests' only, for the TTL; everything
// else still asks the registry with a HEAD (and gets its answer).
func TestVouchingIsNarrow(t *testing.T) {
	e := newEnv(t, envConfig{})
	img := e.push("website/ui:3", 41, 2, 64<<10)
	other := e.push("website/ui:other", 42, 2, 64<<10) // same repository, manifest never fetched
	e.push("website/api:1", 41, 2, 64<<10)             // the same blobs in another repository
	if _, err := pull(context.Background(), "registry.test/website/ui:3", "alice", e.client()); err != nil {
		t.Fatal(err)
	}
	layer := blobs(t, img)[1]
	tests := []struct {
		name, user, repo, digest string
		advance                  bool
		wantHEADs, wantStatus    int
	}{
		{"vouched", "alice", "website/ui", layer, false, 0, http.StatusOK},
		{"another credential", "bob", "website/ui", layer, false, 1, http.StatusOK},
		{"no credential", "", "website/ui", layer, false, 1, http.StatusUnauthorized},
		{"another repository", "alice", "website/api", layer, false, 1, http.StatusOK},
		{"a blob no manifest listed", "alice", "website/ui", blobs(t, other)[1], false, 1, http.StatusOK},
		{"after the TTL", "alice", "website/ui", layer, true, 1, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.advance {
				e.advance(MaxAuthTTL)
			}
			heads := e.reg.Counter.Requests("HEAD blob")
			resp, _ := e.get(http.MethodGet, "https://registry.test/v2/"+tt.repo+"/blobs/"+tt.digest, tt.user, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s, want %d", resp.Status, tt.wantStatus)
			}
			if n := e.reg.Counter.Requests("HEAD blob") - heads; n != tt.wantHEADs {
				t.Errorf("%d authorization HEADs, want %d", n, tt.wantHEADs)
			}
		})
	}
}

// TestIndexVouchesForItsManifests: an index fetched through the proxy
// vouches for its child manifests, and each child manifest for its own
// config and layers.
func TestIndexVouchesForItsManifests(t *testing.T) {
	e := newEnv(t, envConfig{})
	idx, err := testenv.MultiPlatformIndex(51, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.PushIndex(context.Background(), e.reg.Host+"/website/multi:1", idx, testenv.RemoteOptions{Username: "alice", Password: password, Transport: e.direct()}); err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	accept := http.Header{"Accept": {string(im.MediaType)}}
	if resp, _ := e.get(http.MethodGet, "https://registry.test/v2/website/multi/manifests/1", "alice", accept); resp.StatusCode != http.StatusOK {
		t.Fatalf("index: %s", resp.Status)
	}
	// distribution answers no child manifest as a blob (404), so what the
	// index vouched for is read from the authorization cache.
	req, _ := http.NewRequest(http.MethodGet, "https://registry.test/", nil)
	req.SetBasicAuth("alice", password)
	for _, m := range im.Manifests {
		k := authKey{cred: credential(req), host: "registry.test:443", repo: "website/multi", digest: m.Digest.String()}
		if how, ok := e.proxy.auth.allowed(k); !ok || how != "vouched" {
			t.Errorf("child manifest %s: %q %v, want vouched", m.Digest, how, ok)
		}
	}
	heads := e.reg.Counter.Requests("HEAD blob")
	for _, m := range im.Manifests {
		// The child manifest, fetched as a manifest, vouches for its blobs.
		resp, body := e.get(http.MethodGet, "https://registry.test/v2/website/multi/manifests/"+m.Digest.String(), "alice", http.Header{"Accept": {string(m.MediaType)}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("child manifest: %s", resp.Status)
		}
		for _, d := range regapi.ManifestBlobs(body) {
			resp, blob := e.get(http.MethodGet, "https://registry.test/v2/website/multi/blobs/"+d.String(), "alice", nil)
			if resp.StatusCode != http.StatusOK || shaOf(blob) != d.String() {
				t.Fatalf("blob %s: %s", d, resp.Status)
			}
		}
	}
	if n := e.reg.Counter.Requests("HEAD blob") - heads; n != 0 {
		t.Errorf("%d authorization HEADs for what the index and its manifests list, want 0", n)
	}
}

// TestManifestTap: what the tap vouches for, from answers written as
// goproxy writes them (header, then the body in pieces).
func TestManifestTap(t *testing.T) {
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":"%s"},"layers":[{"digest":"%s"},{"digest":"%s","urls":["https://foreign.test/l"]}]}`,
		shaOf([]byte("c")), shaOf([]byte("l")), shaOf([]byte("f"))))
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"digest":"%s"},{"digest":"not a digest"}]}`, shaOf([]byte("m"))))
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       []byte
		length     bool // send Content-Length
		want       int  // digests vouched for
		beforeLast bool // vouched before the last piece reached the client
	}{
		{"image manifest", 200, nil, manifest, true, 2, true},
		{"index", 200, nil, index, true, 1, true},
		{"chunked: at the end", 200, nil, manifest, false, 2, false},
		{"404", 404, nil, manifest, true, 0, false},
		{"gzip", 200, map[string]string{"Content-Encoding": "gzip"}, manifest, true, 0, false},
		{"too large", 200, nil, append(bytes.Repeat([]byte(" "), regapi.MaxManifestSize), manifest...), true, 0, false},
		{"not JSON", 200, nil, []byte("<html>"), true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			got, vouchedAt := -1, -1
			tap := newManifestTap(rec, func(body []byte) {
				got, vouchedAt = len(manifestRefs(body)), rec.Body.Len()
			})
			for k, v := range tt.header {
				tap.Header().Set(k, v)
			}
			if tt.length {
				tap.Header().Set("Content-Length", strconv.Itoa(len(tt.body)))
			}
			tap.WriteHeader(tt.status)
			for rest := tt.body; len(rest) > 0; {
				n := min(len(rest), 7)
				if _, err := tap.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			tap.finish()
			if got < 0 {
				got = 0
			}
			if got != tt.want {
				t.Errorf("%d digests vouched for, want %d", got, tt.want)
			}
			if tt.beforeLast && vouchedAt >= len(tt.body) {
				t.Errorf("vouched after the client had the whole body")
			}
			if !bytes.Equal(rec.Body.Bytes(), tt.body) || rec.Code != tt.status {
				t.Errorf("client got %d and %d bytes, want %d and the body unchanged", rec.Code, rec.Body.Len(), tt.status)
			}
		})
	}
}

// FuzzManifestRefs: any body parses without panicking, and every digest
// returned is a valid digest that the body names.
func FuzzManifestRefs(f *testing.F) {
	f.Add([]byte(`{"config":{"digest":"sha256:` + strings.Repeat("a", 64) + `"},"layers":[{"digest":"sha256:` + strings.Repeat("b", 64) + `"}]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:` + strings.Repeat("c", 64) + `"}]}`))
	f.Add([]byte(`{"config":null,"layers":7}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range manifestRefs(body) {
			if _, err := casstore.ParseDigest(d.String()); err != nil {
				t.Fatalf("%q: %v", d, err)
			}
			if !bytes.Contains(body, []byte(d.Hex())) && !bytes.Contains(body, []byte(`\u`)) {
				t.Fatalf("%s not named in the body", d)
			}
		}
	})
}

func shaOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
