package regapi

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/dtrcache/dtrcache/casstore"
)

// Kind is the kind of API route.
type Kind int

// The routes of the distribution API that dtrcache distinguishes.
const (
	KindBase      Kind = iota + 1 // /v2/
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindTags                      // /v2/<name>/tags/list
	KindCatalog                   // /v2/_catalog
	KindUpload                    // /v2/<name>/blobs/uploads/...
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

// String returns the route's metric label.
func (k Kind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindBlob:
		return "blob"
	case KindManifest:
		return "manifest"
	case KindTags:
		return "tags"
	case KindCatalog:
		return "catalog"
	case KindUpload:
		return "upload"
	case KindReferrers:
		return "referrers"
	}
	return "other"
}

// Route is a parsed API path.
type Route struct {
	Kind Kind
	// Name is the repository name.
	Name string
	// Reference is a manifest tag or digest, or the upload path suffix.
	Reference string
	// Digest is set for blobs, referrers, and manifests by digest.
	Digest casstore.Digest
}

// MaxNameLength is the longest repository name accepted.
const MaxNameLength = 255

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// ValidName reports whether s is a valid repository name.
func ValidName(s string) bool { return len(s) <= MaxNameLength && nameRE.MatchString(s) }

// ValidTag reports whether s is a valid tag.
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// ParseRoute parses the escaped path of a request under /v2/. Names,
// tags and digests are validated against the OCI grammar; anything else
// (percent-encoding, "..", empty segments) is a 400 NAME_INVALID or
// DIGEST_INVALID, and an unknown path is a 404.
func ParseRoute(escapedPath string) (Route, error) {
	if escapedPath == "/v2" || escapedPath == "/v2/" {
		return Route{Kind: KindBase}, nil
	}
	rest, ok := strings.CutPrefix(escapedPath, "/v2/")
	if !ok {
		return Route{}, NewError(http.StatusNotFound, CodeUnsupported, "not a registry API path")
	}
	if strings.ContainsAny(rest, "%\x00\\") {
		return Route{}, NewError(http.StatusBadRequest, CodeNameInvalid, "encoded or invalid characters in path")
	}
	if rest == "_catalog" {
		return Route{Kind: KindCatalog}, nil
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return withName(Route{Kind: KindTags}, name)
	}
	if i := strings.LastIndex(rest, "/blobs/uploads"); i >= 0 && (len(rest) == i+len("/blobs/uploads") || rest[i+len("/blobs/uploads")] == '/') {
		r, err := withName(Route{Kind: KindUpload, Reference: rest[i+len("/blobs/uploads"):]}, rest[:i])
		return r, err
	}
	// The last separator in the path decides: a repository name may itself
	// contain a "blobs" or "manifests" segment.
	best, bestAt := -1, -1
	seps := []struct {
		sep  string
		kind Kind
	}{{"/blobs/", KindBlob}, {"/manifests/", KindManifest}, {"/referrers/", KindReferrers}}
	for i, k := range seps {
		if at := strings.LastIndex(rest, k.sep); at > bestAt {
			best, bestAt = i, at
		}
	}
	if best >= 0 {
		k, i := seps[best], bestAt
		ref := rest[i+len(k.sep):]
		r, err := withName(Route{Kind: k.kind, Reference: ref}, rest[:i])
		if err != nil {
			return r, err
		}
		if k.kind == KindManifest && !strings.Contains(ref, ":") {
			if !ValidTag(ref) {
				return Route{}, NewError(http.StatusBadRequest, CodeManifestInvalid, "invalid tag")
			}
			return r, nil
		}
		d, err := casstore.ParseDigest(ref)
		if err != nil {
			return Route{}, Errorf(http.StatusBadRequest, CodeDigestInvalid, "invalid digest", err)
		}
		r.Digest = d
		return r, nil
	}
	return Route{}, NewError(http.StatusNotFound, CodeUnsupported, "unknown registry API path")
}

func withName(r Route, name string) (Route, error) {
	if !ValidName(name) {
		return Route{}, NewError(http.StatusBadRequest, CodeNameInvalid, "invalid repository name")
	}
	r.Name = name
	return r, nil
}
