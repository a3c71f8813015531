package replicate

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/dtrcache/dtrcache/testenv"
)

// TestDescribe gathers what the rules need from a real registry, for an
// index (both referrer schemes) and for a single manifest.
func TestDescribe(t *testing.T) {
	for _, kind := range []string{"distribution", "referrersAPI"} {
		t.Run(kind, func(t *testing.T) {
			r := startGGCR(t)
			if kind == "distribution" {
				r = startDistribution(t, testenv.RegistryOptions{})
			}
			idx, _ := seedIndex(t, r, "dev/app", "1.2.0", 71)
			idxDesc := descriptorOf(t, idx)
			report := []byte(`{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":"HIGH"}]}]}`)
			scan := referrer(t, idxDesc, trivyVulns, "application/json", report, map[string]string{"org.opencontainers.image.created": "2025-03-04T05:06:07Z"})
			pushImage(t, r, "dev/app@"+must[v1.Hash](t)(scan.Digest()).String(), scan)

			img, err := Describe(context.Background(), Ref{Client: r.client(t), Repository: "dev/app", Tag: "1.2.0"})
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != idxDesc.Digest.String() || img.MediaType != MediaTypeOCIIndex || img.Tag != "1.2.0" || img.Repository != "dev/app" {
				t.Fatalf("identity: %+v", img)
			}
			if !slices.Equal(img.Platforms, []Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}) {
				t.Fatalf("platforms %v", img.Platforms)
			}
			// Labels: the union, the first platform's value winning.
			if img.Labels["org.opencontainers.image.title"] != "app-amd64" || img.Labels["org.dtrcache.seed"] == "" {
				t.Fatalf("labels %v", img.Labels)
			}
			if img.Annotations["org.opencontainers.image.version"] != "1.2.0" {
				t.Fatalf("annotations %v", img.Annotations)
			}
			if !img.Signed || len(img.Referrers) != 2 {
				t.Fatalf("signed %v, referrers %+v", img.Signed, img.Referrers)
			}
			if len(img.ScanReports) != 1 || string(img.ScanReports[0].Data) != string(report) ||
				img.ScanReports[0].Referrer.ArtifactType != trivyVulns || !img.ScanReports[0].Created.Equal(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)) {
				t.Fatalf("scan reports %+v", img.ScanReports)
			}
		})
	}
}

func TestDescribeImage(t *testing.T) {
	r := startDistribution(t, testenv.RegistryOptions{})
	img := platformImage(t, 73, 1, 1024, "linux", "arm")
	cf := must[*v1.ConfigFile](t)(img.ConfigFile()).DeepCopy()
	cf.Variant = "v7"
	cf.Created = v1.Time{Time: time.Date(2024, 12, 24, 18, 0, 0, 0, time.UTC)}
	img = must[v1.Image](t)(mutate.ConfigFile(img, cf))
	pushImage(t, r, "lib/tool:v1", img)
	got, err := Describe(context.Background(), Ref{Client: r.client(t), Repository: "lib/tool", Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Platforms, []Platform{{OS: "linux", Architecture: "arm", Variant: "v7"}}) || !got.Created.Equal(cf.Created.Time) ||
		got.ArtifactType != MediaTypeOCIConfig || got.Signed || len(got.Referrers) != 0 || got.Labels["org.opencontainers.image.title"] != "app-arm" {
		t.Fatalf("Describe = %+v", got)
	}

	// A cosign tag-convention signature counts.
	d := must[v1.Hash](t)(img.Digest())
	sig := platformImage(t, 74, 1, 64, "linux", "arm")
	pushImage(t, r, "lib/tool:"+fallbackTag(d.String())+".sig", sig)
	if got, err = Describe(context.Background(), Ref{Client: r.client(t), Repository: "lib/tool", Digest: d.String()}); err != nil || !got.Signed {
		t.Fatalf("with a .sig tag: signed %v, %v", got.Signed, err)
	}
}

// TestResolveAndListTags resolves tags and digests and lists 250 tags
// across the registry's Link pages (100 a page).
func TestResolveAndListTags(t *testing.T) {
	r := startDistribution(t, testenv.RegistryOptions{})
	img := platformImage(t, 75, 1, 1024, "linux", "amd64")
	pushImage(t, r, "lib/tool:v1", img)
	cl := r.client(t)
	d := must[v1.Hash](t)(img.Digest()).String()
	for _, ref := range []Ref{{Client: cl, Repository: "lib/tool", Tag: "v1"}, {Client: cl, Repository: "lib/tool", Digest: d}} {
		got, mt, err := Resolve(context.Background(), ref)
		if err != nil || got != d || mt != MediaTypeOCIManifest {
			t.Fatalf("Resolve(%s) = %s %s %v", ref, got, mt, err)
		}
	}
	if _, _, err := Resolve(context.Background(), Ref{Client: cl, Repository: "lib/tool", Tag: "nope"}); err == nil {
		t.Fatal("Resolve of a missing tag succeeded")
	} else if transient, _ := IsTransient(err); transient {
		t.Fatalf("a missing tag is transient: %v", err)
	}

	const n = 250
	raw, mt := rawManifest(t, r, "lib/tool:v1")
	want := []string{"v1"}
	for i := 0; i < n-1; i++ {
		tag := fmt.Sprintf("t%04d", i)
		f := &fetched{raw: raw, mediaType: string(mt), digest: d}
		if _, err := putManifest(context.Background(), cl, "lib/tool", tag, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
	}
	r.Counter.Reset()
	tags, err := listTags(context.Background(), Ref{Client: cl, Repository: "lib/tool"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	slices.Sort(want)
	if !slices.Equal(tags, want) {
		t.Fatalf("%d tags, want %d", len(tags), len(want))
	}
	if pages := r.Counter.Requests("GET tags"); pages != 3 {
		t.Fatalf("%d pages, want 3", pages)
	}
}
