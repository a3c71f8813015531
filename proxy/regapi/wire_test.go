package regapi

import (
	"fmt"
	"strings"
	"testing"
)

func TestManifestRefs(t *testing.T) {
	const (
		a = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		b = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		c = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	)
	tests := []struct {
		name, body string
		want       []string
	}{
		{"image: config and layers", `{"config":{"digest":"` + a + `"},"layers":[{"digest":"` + b + `"},{"digest":"` + c + `"}]}`, []string{a, b, c}},
		{"foreign layer left out", `{"config":{"digest":"` + a + `"},"layers":[{"digest":"` + b + `","urls":["https://x"]}]}`, []string{a}},
		{"index: its manifests", `{"manifests":[{"digest":"` + b + `"},{"digest":"` + c + `"}]}`, []string{b, c}},
		{"bad digests skipped", `{"manifests":[{"digest":"sha256:nope"},{"digest":"` + c + `"}]}`, []string{c}},
		{"not JSON", `{"config":`, nil},
		{"empty object", `{}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range ManifestRefs([]byte(tt.body)) {
				got = append(got, d.String())
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("ManifestRefs = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzManifestRefs(f *testing.F) {
	f.Add([]byte(`{"config":{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"layers":[]}`))
	f.Add([]byte(`{"manifests":[{"digest":"x"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range ManifestRefs(body) {
			if d.IsZero() {
				t.Fatalf("a zero digest from %q", body)
			}
		}
	})
}

// TestManifestBlobSizes: an image manifest's config and layers with their
// descriptors' sizes (-1 where a descriptor has none), foreign layers left
// out; nothing for an index or a body that is not a manifest.
func TestManifestBlobSizes(t *testing.T) {
	a, b, c := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64), "sha256:"+strings.Repeat("c", 64)
	for _, tc := range []struct {
		name string
		body string
		want string
	}{
		{"image", `{"config":{"digest":"` + a + `","size":1234},"layers":[{"digest":"` + b + `","size":67108864}]}`,
			a + ":1234 " + b + ":67108864"},
		{"no size", `{"config":{"digest":"` + a + `"},"layers":[{"digest":"` + b + `","size":0}]}`, a + ":-1 " + b + ":0"},
		{"foreign layer", `{"config":{"digest":"` + a + `","size":1},"layers":[{"digest":"` + c + `","size":5,"urls":["https://x"]},{"digest":"` + b + `","size":2}]}`,
			a + ":1 " + b + ":2"},
		{"index", `{"manifests":[{"digest":"` + a + `","size":10}]}`, ""},
		{"not json", `nope`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range ManifestBlobSizes([]byte(tc.body)) {
				got = append(got, fmt.Sprintf("%s:%d", r.Digest, r.Size))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
			if n := len(ManifestBlobs([]byte(tc.body))); n != len(got) {
				t.Errorf("ManifestBlobs: %d digests, want %d", n, len(got))
			}
		})
	}
}
