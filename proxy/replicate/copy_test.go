package replicate

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dtrcache/dtrcache/testenv"
)

const (
	cosignSig  = "application/vnd.dev.cosign.artifact.sig.v1+json"
	spdxSBOM   = "application/spdx+json"
	trivyVulns = "application/vnd.dtrcache.test.trivy.vuln+json"
)

// seedIndex pushes a two-platform index as repo:tag with a signature
// referrer on the index, an SBOM on the amd64 manifest and a signature of
// that SBOM, and returns the index and the referrers' digests.
func seedIndex(t testing.TB, r *reg, repo, tag string, seed uint64) (v1.ImageIndex, []v1.Hash) {
	t.Helper()
	idx := multiPlatform(t, seed)
	pushIndex(t, r, repo+":"+tag, idx)
	idxDesc := descriptorOf(t, idx)
	im := must[*v1.IndexManifest](t)(idx.IndexManifest())
	sig := referrer(t, idxDesc, cosignSig, "application/vnd.dev.cosign.simplesigning.v1+json", []byte(`{"critical":{}}`), map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQ"})
	sbom := referrer(t, im.Manifests[0], spdxSBOM, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`), nil)
	sbomSig := referrer(t, descriptorOf(t, sbom), cosignSig, "application/vnd.dev.cosign.simplesigning.v1+json", []byte(`{"sbom-sig":1}`), nil)
	var digests []v1.Hash
	for _, img := range []v1.Image{sig, sbom, sbomSig} {
		d := must[v1.Hash](t)(img.Digest())
		pushImage(t, r, repo+"@"+d.String(), img)
		digests = append(digests, d)
	}
	return idx, digests
}

// TestCopyWholeImage copies a multi-platform index with referrers between
// every pair of referrers support: distribution (tag scheme) and ggcr's
// registry (referrers API), and checks the target has it all, byte-equal.
func TestCopyWholeImage(t *testing.T) {
	kinds := map[string]func(t testing.TB) *reg{
		"distribution": func(t testing.TB) *reg { return startDistribution(t, testenv.RegistryOptions{}) },
		"referrersAPI": startGGCR,
	}
	for _, pair := range [][2]string{{"distribution", "distribution"}, {"referrersAPI", "distribution"}, {"distribution", "referrersAPI"}, {"referrersAPI", "referrersAPI"}} {
		t.Run(pair[0]+"_to_"+pair[1], func(t *testing.T) {
			src, dst := kinds[pair[0]](t), kinds[pair[1]](t)
			idx, refs := seedIndex(t, src, "dev/app", "1.2.0", 7)
			res, err := Copy(context.Background(),
				Ref{Client: src.client(t), Repository: "dev/app", Tag: "1.2.0"},
				Ref{Client: dst.client(t), Repository: "prod/app", Tag: "1.2.0-eu"}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			idxDigest := must[v1.Hash](t)(idx.Digest())
			if res.Digest != idxDigest.String() || res.MediaType != MediaTypeOCIIndex {
				t.Fatalf("Result digest %s %s, want %s", res.Digest, res.MediaType, idxDigest)
			}
			sameImage(t, src, "dev/app:1.2.0", dst, "prod/app:1.2.0-eu")
			im := must[*v1.IndexManifest](t)(idx.IndexManifest())
			for _, m := range im.Manifests {
				sameImage(t, src, "dev/app@"+m.Digest.String(), dst, "prod/app@"+m.Digest.String())
			}
			for _, d := range refs {
				sameImage(t, src, "dev/app@"+d.String(), dst, "prod/app@"+d.String())
			}
			// The referrers are found at the target the way it supports.
			if got := referrerDigests(t, dst, "prod/app", idxDigest); got[refs[0].String()] != cosignSig || len(got) != 1 {
				t.Fatalf("referrers of the index at the target: %v", got)
			}
			if got := referrerDigests(t, dst, "prod/app", im.Manifests[0].Digest); got[refs[1].String()] != spdxSBOM {
				t.Fatalf("referrers of the amd64 manifest at the target: %v", got)
			}
			if got := referrerDigests(t, dst, "prod/app", refs[1]); got[refs[2].String()] != cosignSig {
				t.Fatalf("referrers of the SBOM at the target: %v", got)
			}
			// 3 layers (one shared) + 2 configs + 3 referrers × (config + payload).
			if res.BlobsCopied != 11 || res.ReferrersCopied != 3 || res.BytesCopied == 0 {
				t.Fatalf("Result %+v", res)
			}

			// Again: everything is there; only the tag is written.
			res, err = Copy(context.Background(),
				Ref{Client: src.client(t), Repository: "dev/app", Tag: "1.2.0"},
				Ref{Client: dst.client(t), Repository: "prod/app", Tag: "1.2.0-eu"}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.BlobsCopied != 0 || res.BytesCopied != 0 || res.ManifestsPushed > 2 {
				t.Fatalf("second copy moved things: %+v", res)
			}
		})
	}
}

// TestManifestsAfterBlobs records the writes at the target and checks the
// order: every blob before any manifest, children before the index, and
// the tag last.
func TestManifestsAfterBlobs(t *testing.T) {
	src := startDistribution(t, testenv.RegistryOptions{})
	var mu sync.Mutex
	var writes []string
	record := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(rw, r)
			if r.Method == http.MethodPut && rw.status == http.StatusCreated {
				mu.Lock()
				writes = append(writes, r.URL.Path)
				mu.Unlock()
			}
		})
	}
	dst := startDistribution(t, testenv.RegistryOptions{Wrap: record})
	idx, _ := seedIndex(t, src, "dev/app", "1.0", 3)
	if _, err := Copy(context.Background(),
		Ref{Client: src.client(t), Repository: "dev/app", Tag: "1.0"},
		Ref{Client: dst.client(t), Repository: "qa/app", Tag: "1.0"}, Options{Concurrency: 8}); err != nil {
		t.Fatal(err)
	}
	firstManifest := slices.IndexFunc(writes, func(p string) bool { return strings.Contains(p, "/manifests/") })
	lastBlob := -1
	for i, p := range writes {
		if strings.Contains(p, "/blobs/uploads/") {
			lastBlob = i
		}
	}
	if firstManifest < 0 || lastBlob > firstManifest {
		t.Fatalf("a manifest was pushed before the last blob: %q", writes)
	}
	idxDigest := must[v1.Hash](t)(idx.Digest())
	im := must[*v1.IndexManifest](t)(idx.IndexManifest())
	pos := func(suffix string) int {
		return slices.IndexFunc(writes, func(p string) bool { return strings.HasSuffix(p, suffix) })
	}
	for _, m := range im.Manifests {
		if pos(m.Digest.String()) > pos("/manifests/1.0") {
			t.Fatalf("child %s after the index: %q", m.Digest, writes)
		}
	}
	if writes[len(writes)-1] != "/v2/qa/app/manifests/1.0" {
		t.Fatalf("the tag is not the last write: %q", writes)
	}
	if pos(fallbackTag(idxDigest.String())) < 0 {
		t.Fatalf("no referrers tag index written: %q", writes)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// TestCopyByDigestAndDockerTypes copies a Docker v2 manifest by digest
// (no target tag) and checks the media type survives.
func TestCopyByDigestAndDockerTypes(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	img := platformImage(t, 11, 2, 32<<10, "linux", "amd64")
	img = dockerTyped(t, img)
	pushImage(t, src, "lib/tool:v1", img)
	d := must[v1.Hash](t)(img.Digest())
	res, err := Copy(context.Background(),
		Ref{Client: src.client(t), Repository: "lib/tool", Digest: d.String()},
		Ref{Client: dst.client(t), Repository: "mirror/tool"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.MediaType != MediaTypeDockerManifest || res.BlobsCopied != 3 {
		t.Fatalf("Result %+v", res)
	}
	sameImage(t, src, "lib/tool@"+d.String(), dst, "mirror/tool@"+d.String())
	if _, mt := rawManifest(t, dst, "mirror/tool@"+d.String()); mt != types.DockerManifestSchema2 {
		t.Fatalf("media type %s", mt)
	}
}
