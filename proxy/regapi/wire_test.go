package regapi

import (
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
