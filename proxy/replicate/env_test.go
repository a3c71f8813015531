package replicate

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
)

// reg is a registry under test: its base URL, host and a request counter.
type reg struct {
	URL, Host string
	Counter   *testenv.Counter
	user      string
	pass      string
	tr        *http.Transport // for go-containerregistry
	close     func()
}

// startDistribution starts a distribution v3 registry (filesystem storage
// in a temp dir, so uploads behave as in production).
func startDistribution(t testing.TB, opt testenv.RegistryOptions) *reg {
	t.Helper()
	if opt.Dir == "" {
		opt.Dir = t.TempDir()
	}
	r, err := testenv.StartRegistry(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &reg{URL: r.URL, Host: r.Host, Counter: r.Counter, tr: transport(t), close: func() { r.Close() }}
}

// startGGCR starts go-containerregistry's registry with the OCI referrers
// API turned on (distribution v3 has none), counted like the others.
func startGGCR(t testing.TB) *reg {
	t.Helper()
	c := testenv.NewCounter(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(discardLogger())))
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &reg{URL: srv.URL, Host: strings.TrimPrefix(srv.URL, "http://"), Counter: c, tr: transport(t)}
}

// startBasic starts a distribution registry that wants Basic auth from
// user/pass; the returned reg's clients send them.
func startBasic(t testing.TB, user, pass string) *reg {
	t.Helper()
	hash, err := policy.HashPassword(pass, 4)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(user+":"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startDistribution(t, testenv.RegistryOptions{Htpasswd: path})
	r.user, r.pass = user, pass
	return r
}

// transport returns an HTTP transport whose idle connections are closed
// when the test ends, before the registries stop (their Shutdown would
// wait 5 s for a connection that was dialled but never used).
func transport(t testing.TB) *http.Transport {
	tr := upstream.NewTransport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func (r *reg) client(t testing.TB) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Config{URLs: []string{r.URL}, Username: r.user, Password: r.pass, Transport: transport(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *reg) opts(ctx context.Context) []remote.Option {
	o := []remote.Option{remote.WithContext(ctx), remote.WithTransport(r.tr)}
	if r.user != "" {
		o = append(o, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}))
	}
	return o
}

func (r *reg) ref(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// platformImage is a small generated image for one platform.
func platformImage(t testing.TB, seed uint64, layers int, size int64, os, arch string) v1.Image {
	t.Helper()
	img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: layers, LayerSize: size, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	cf.Config.Labels["org.opencontainers.image.title"] = "app-" + arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// multiPlatform builds an OCI index of linux/amd64 and linux/arm64 images
// that share their first layer.
func multiPlatform(t testing.TB, seed uint64) v1.ImageIndex {
	t.Helper()
	base := platformImage(t, seed, 1, 64<<10, "linux", "amd64")
	baseLayers, _ := base.Layers()
	var adds []mutate.IndexAddendum
	for i, arch := range []string{"amd64", "arm64"} {
		own := platformImage(t, seed*100+uint64(i)+1, 1, 48<<10, "linux", arch)
		ownLayers, _ := own.Layers()
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), append(baseLayers, ownLayers...)...)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := own.ConfigFile()
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return mutate.Annotations(idx, map[string]string{"org.opencontainers.image.version": "1.2.0"}).(v1.ImageIndex)
}

// referrer builds an OCI artifact with artifact type at (as config media
// type, which the referrers API reports) and one payload layer, whose
// subject is desc.
func referrer(t testing.TB, desc v1.Descriptor, at string, payloadType types.MediaType, payload []byte, ann map[string]string) v1.Image {
	t.Helper()
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: static.NewLayer(payload, payloadType)})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.MediaType(at))
	if ann != nil { // before Subject: Annotations drops a subject
		img = mutate.Annotations(img, ann).(v1.Image)
	}
	return mutate.Subject(img, desc).(v1.Image)
}

func descriptorOf(t testing.TB, x interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
}) v1.Descriptor {
	t.Helper()
	mt, err1 := x.MediaType()
	d, err2 := x.Digest()
	n, err3 := x.Size()
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: n}
}

// pushIndex writes idx to r as repoTag with go-containerregistry.
func pushIndex(t testing.TB, r *reg, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	if err := remote.WriteIndex(r.ref(t, repoTag), idx, r.opts(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// pushImage writes img to r as repoTag (or repo@digest for a referrer).
func pushImage(t testing.TB, r *reg, repoTag string, img v1.Image) {
	t.Helper()
	if err := remote.Write(r.ref(t, repoTag), img, r.opts(context.Background())...); err != nil {
		t.Fatal(err)
	}
}

// rawManifest GETs a manifest's bytes and media type with ggcr.
func rawManifest(t testing.TB, r *reg, ref string) ([]byte, types.MediaType) {
	t.Helper()
	d, err := remote.Get(r.ref(t, ref), r.opts(context.Background())...)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	return d.Manifest, d.MediaType
}

// sameImage checks that dst has src's image byte for byte: every manifest
// equal with its media type, every blob present and valid (ggcr's validate
// reads and hashes them all).
func sameImage(t testing.TB, src *reg, srcRef string, dst *reg, dstRef string) {
	t.Helper()
	a, amt := rawManifest(t, src, srcRef)
	b, bmt := rawManifest(t, dst, dstRef)
	if !bytes.Equal(a, b) || amt != bmt {
		t.Fatalf("manifest %s differs from %s (%s vs %s)", dstRef, srcRef, bmt, amt)
	}
	d, err := remote.Get(dst.ref(t, dstRef), dst.opts(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	var images []v1.Image
	if d.MediaType.IsIndex() {
		idx := must[v1.ImageIndex](t)(d.ImageIndex())
		im := must[*v1.IndexManifest](t)(idx.IndexManifest())
		for _, m := range im.Manifests {
			images = append(images, must[v1.Image](t)(idx.Image(m.Digest)))
		}
	} else {
		images = append(images, must[v1.Image](t)(d.Image()))
	}
	for _, img := range images {
		if _, err := img.RawConfigFile(); err != nil { // checks the config's digest
			t.Fatalf("target %s config: %v", dstRef, err)
		}
		for _, l := range must[[]v1.Layer](t)(img.Layers()) {
			rc, err := l.Compressed() // reads through a digest check
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				t.Fatalf("target %s layer: %v", dstRef, err)
			}
		}
	}
}

// referrerDigests lists the referrers ggcr finds for subject in r (through
// the API or the tag scheme, as ggcr itself falls back).
func referrerDigests(t testing.TB, r *reg, repo string, subject v1.Hash) map[string]string {
	t.Helper()
	d, err := name.NewDigest(r.Host+"/"+repo+"@"+subject.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d, r.opts(context.Background())...)
	if err != nil {
		t.Fatalf("referrers of %s: %v", d, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, desc := range m.Manifests {
		out[desc.Digest.String()] = desc.ArtifactType
	}
	return out
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// dockerTyped gives img Docker v2 media types.
func dockerTyped(t testing.TB, img v1.Image) v1.Image {
	t.Helper()
	layers := must[[]v1.Layer](t)(img.Layers())
	cf := must[*v1.ConfigFile](t)(img.ConfigFile())
	out, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.DockerManifestSchema2), layers...)
	if err != nil {
		t.Fatal(err)
	}
	out = mutate.ConfigMediaType(out, types.DockerConfigJSON)
	return must[v1.Image](t)(mutate.ConfigFile(out, cf))
}
