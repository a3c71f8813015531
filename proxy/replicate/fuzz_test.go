package replicate

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	d := "sha256:a0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+d+`","size":2},"layers":[]}`), MediaTypeOCIManifest)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+d+`","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}`), "")
	f.Add([]byte(`{"schemaVersion":1}`), "application/vnd.docker.distribution.manifest.v1+prettyjws")
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"subject":{"digest":"sha256:x"}}`), MediaTypeOCIIndex)
	f.Add([]byte(`not json`), "text/plain")
	f.Fuzz(func(t *testing.T, raw []byte, mt string) {
		m, got, err := parseManifest(raw, mt)
		if err != nil {
			return
		}
		// What parses is one of the copied types, and every digest in it
		// is a valid sha256 digest.
		if _, _, err := parseMediaType(got); err != nil {
			t.Fatalf("accepted media type %q", got)
		}
		f := &fetched{raw: raw, mediaType: got, m: m}
		for _, b := range f.blobs() {
			if !validDigest(b.Digest) || b.Size < 0 {
				t.Fatalf("accepted blob %+v", b)
			}
		}
		for _, c := range m.Manifests {
			if !validDigest(c.Digest) {
				t.Fatalf("accepted child %+v", c)
			}
		}
		if isIndex(got) && m.Config != nil {
			t.Fatal("an index with a config")
		}
	})
}

func FuzzParseUploadRange(f *testing.F) {
	for _, s := range []string{"", "0-0", "0-1023", "bytes=0-99", "5-10", "0--1", "0-x", "0-9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, ok := parseUploadRange(h)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("parseUploadRange(%q) = %d", h, n)
		}
		if n > 1 {
			if got, ok := parseUploadRange("0-" + strconv.FormatInt(n-1, 10)); !ok || got != n {
				t.Fatalf("round trip of %d: %d %v", n, got, ok)
			}
		}
	})
}

func FuzzNextLink(f *testing.F) {
	for _, s := range []string{
		`</v2/a/tags/list?n=100&last=x>; rel="next"`,
		`<https://other.example/v2/a/referrers/sha256:1?n=2>; rel=next`,
		`</x>; rel="prev", </y>; rel="next"`,
		`<javascript:alert(1)>; rel="next"`,
		`garbage`,
	} {
		f.Add(s)
	}
	base, _ := url.Parse("https://registry.example/v2/a/tags/list?n=100")
	f.Fuzz(func(t *testing.T, h string) {
		resp := &http.Response{Header: http.Header{"Link": {h}}, Request: &http.Request{URL: base}}
		next := nextLink(resp)
		if next == "" {
			return
		}
		u, err := url.Parse(next)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("nextLink(%q) = %q", h, next)
		}
	})
}

func TestParseUploadRange(t *testing.T) {
	for h, want := range map[string]int64{"": 0, "0-0": 0, "0-1023": 1024, "bytes=0-99": 100} {
		if got, ok := parseUploadRange(h); !ok || got != want {
			t.Errorf("parseUploadRange(%q) = %d, %v; want %d", h, got, ok, want)
		}
	}
	for _, h := range []string{"5-10", "0-x", "0--1"} {
		if _, ok := parseUploadRange(h); ok {
			t.Errorf("parseUploadRange(%q) accepted", h)
		}
	}
}

func TestNextLink(t *testing.T) {
	base, _ := url.Parse("https://registry.example/v2/a/tags/list?n=100")
	for h, want := range map[string]string{
		`</v2/a/tags/list?n=100&last=x>; rel="next"`: "https://registry.example/v2/a/tags/list?n=100&last=x",
		`</x>; rel="prev", </y>; rel="next"`:         "https://registry.example/y",
		`<javascript:alert(1)>; rel="next"`:          "",
		`</z>; rel="prev"`:                           "",
	} {
		resp := &http.Response{Header: http.Header{"Link": {h}}, Request: &http.Request{URL: base}}
		if got := nextLink(resp); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", h, got, want)
		}
	}
}
