package regapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseRoute(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		path   string
		kind   Kind
		name   string
		ref    string
		status int // 0 = ok
	}{
		{"/v2/", KindBase, "", "", 0},
		{"/v2", KindBase, "", "", 0},
		{"/v2/_catalog", KindCatalog, "", "", 0},
		{"/v2/library/alpine/blobs/" + d, KindBlob, "library/alpine", d, 0},
		{"/v2/a/blobs/" + d, KindBlob, "a", d, 0},
		{"/v2/website/ui/manifests/3-stable", KindManifest, "website/ui", "3-stable", 0},
		{"/v2/website/ui/manifests/" + d, KindManifest, "website/ui", d, 0},
		{"/v2/a.b/c_d/e__f/g--h/tags/list", KindTags, "a.b/c_d/e__f/g--h", "", 0},
		{"/v2/a/blobs/uploads/", KindUpload, "a", "/", 0},
		{"/v2/a/blobs/uploads", KindUpload, "a", "", 0},
		{"/v2/a/referrers/" + d, KindReferrers, "a", d, 0},
		{"/v2/blobs/blobs/" + d, KindBlob, "blobs", d, 0},
		{"/v2/a/blobs/b/manifests/x", KindManifest, "a/blobs/b", "x", 0},
		{"/v2/a/manifests/b/blobs/" + d, KindBlob, "a/manifests/b", d, 0},
		{"/v1/a/blobs/" + d, 0, "", "", http.StatusNotFound},
		{"/v2/a/unknown/x", 0, "", "", http.StatusNotFound},
		{"/v2/A/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/../etc/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a/../b/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a//b/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a%2Fb/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a/blobs/sha256:../../x", 0, "", "", http.StatusBadRequest},
		{"/v2/a/blobs/" + strings.ToUpper(d), 0, "", "", http.StatusBadRequest},
		{"/v2/a/blobs/md5:abc", 0, "", "", http.StatusBadRequest},
		{"/v2/a/manifests/-bad", 0, "", "", http.StatusBadRequest},
		{"/v2/a/manifests/" + strings.Repeat("t", 129), 0, "", "", http.StatusBadRequest},
		{"/v2/" + strings.Repeat("a", 256) + "/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a\x00/blobs/" + d, 0, "", "", http.StatusBadRequest},
		{"/v2/a-/blobs/" + d, 0, "", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r, err := ParseRoute(tt.path)
			if tt.status != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Status != tt.status {
					t.Fatalf("ParseRoute(%q) = %+v, %v; want status %d", tt.path, r, err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRoute(%q): %v", tt.path, err)
			}
			if r.Kind != tt.kind || r.Name != tt.name || r.Reference != tt.ref {
				t.Fatalf("ParseRoute(%q) = %+v", tt.path, r)
			}
			if (tt.kind == KindBlob) != !r.Digest.IsZero() && tt.kind != KindReferrers && !strings.Contains(tt.ref, ":") {
				t.Fatalf("digest set wrongly: %+v", r)
			}
		})
	}
}

// FuzzParseRoute checks that whatever the parser accepts is a safe
// repository name and reference.
func FuzzParseRoute(f *testing.F) {
	f.Add("/v2/library/alpine/blobs/sha256:" + strings.Repeat("0", 64))
	f.Add("/v2/a/manifests/latest")
	f.Add("/v2/../../blobs/x")
	f.Add("/v2/a/b/c/tags/list")
	f.Add("/v2/a/blobs/uploads/x/y")
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ParseRoute(p)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("error %v is not a 4xx *Error", err)
			}
			return
		}
		if r.Kind == KindBase || r.Kind == KindCatalog {
			return
		}
		if !ValidName(r.Name) || strings.Contains(r.Name, "..") || strings.Contains(r.Name, "//") {
			t.Fatalf("accepted unsafe name %q from %q", r.Name, p)
		}
		if r.Kind == KindBlob && r.Digest.IsZero() {
			t.Fatalf("blob route without digest: %q", p)
		}
	})
}
