package replicate

import (
	"net/url"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// Ref names an image in a registry.
type Ref struct {
	// Client talks to the registry (its URLs, credentials and transport).
	// Two Refs with the same Client are in the same registry: blobs are
	// mounted between their repositories instead of copied.
	Client *upstream.Client
	// Repository is the repository path, e.g. "dev/app".
	Repository string
	// Tag and Digest name the image. A source needs one of them (Digest
	// wins: the tag is then only informative). A target's Tag is what the
	// copy tags (the last write); without one the image is pushed by
	// digest only.
	Tag    string
	Digest string
}

// reference is the tag or digest to read the image by.
func (r Ref) reference() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// String formats r as host/repository:tag@digest (the host of the first
// URL).
func (r Ref) String() string {
	var b strings.Builder
	if r.Client != nil {
		if urls := r.Client.URLs(); len(urls) > 0 {
			if u, err := url.Parse(urls[0]); err == nil {
				b.WriteString(u.Host + "/")
			}
		}
	}
	b.WriteString(r.Repository)
	if r.Tag != "" {
		b.WriteString(":" + r.Tag)
	}
	if r.Digest != "" {
		b.WriteString("@" + r.Digest)
	}
	return b.String()
}

// at returns r naming digest d (for errors about one part of an image).
func (r Ref) at(d string) string {
	r.Tag, r.Digest = "", d
	return r.String()
}
