package replicate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// The manifest media types the engine copies.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	// MediaTypeOCIConfig is the config of an ordinary OCI image.
	MediaTypeOCIConfig = "application/vnd.oci.image.config.v1+json"
	// MediaTypeDockerConfig is the config of a Docker v2 image.
	MediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// acceptManifests is the Accept header for manifest requests: every type
// the engine understands, so a registry never converts one (which would
// change its digest).
var acceptManifests = strings.Join([]string{MediaTypeOCIIndex, MediaTypeOCIManifest, MediaTypeDockerList, MediaTypeDockerManifest}, ", ")

// maxManifestSize bounds a manifest read: distribution refuses larger ones.
const maxManifestSize = 4 << 20

// Descriptor points at a blob or a manifest (OCI content descriptor).
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
}

// Platform is an index entry's platform.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String formats p as os/arch or os/arch/variant.
func (p Platform) String() string {
	if p.Variant == "" {
		return p.OS + "/" + p.Architecture
	}
	return p.OS + "/" + p.Architecture + "/" + p.Variant
}

// manifest is the part of an image manifest or index the engine reads.
// The raw bytes are what is copied; this is never marshalled back.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// isIndex reports whether a media type is an index (manifest list).
func isIndex(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

// fetched is a manifest as read from a registry.
type fetched struct {
	raw       []byte
	mediaType string
	digest    string
	m         manifest
}

// artifactType is what the referrers API reports for a manifest: its
// artifactType, else its config's media type.
func (f *fetched) artifactType() string {
	if f.m.ArtifactType != "" {
		return f.m.ArtifactType
	}
	if f.m.Config != nil {
		return f.m.Config.MediaType
	}
	return ""
}

// descriptor describes f as an entry of an index.
func (f *fetched) descriptor() Descriptor {
	return Descriptor{MediaType: f.mediaType, Digest: f.digest, Size: int64(len(f.raw)), ArtifactType: f.artifactType(), Annotations: f.m.Annotations}
}

// blobs lists the config and layers of an image manifest (none for an
// index). Layers with URLs (foreign layers) are not copied: they are not
// in the registry.
func (f *fetched) blobs() []Descriptor {
	var out []Descriptor
	if f.m.Config != nil {
		out = append(out, *f.m.Config)
	}
	for _, l := range f.m.Layers {
		if len(l.URLs) == 0 {
			out = append(out, l)
		}
	}
	return out
}

// digestOf returns the sha256 digest of b.
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// validDigest reports whether d is a sha256 digest (the only algorithm
// registries use for content addresses).
func validDigest(d string) bool {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil && strings.ToLower(hexPart) == hexPart
}

// parseManifest checks raw (read as mediaType, which may be empty: then
// the document's own mediaType field decides) and returns it parsed.
func parseManifest(raw []byte, mediaType string) (manifest, string, error) {
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, "", permanent(fmt.Errorf("%w: %v", ErrInvalidManifest, err))
	}
	if mediaType == "" || mediaType == "application/json" || mediaType == "text/plain" {
		mediaType = m.MediaType
		if mediaType == "" { // an OCI document without mediaType: tell by shape
			switch {
			case m.Manifests != nil:
				mediaType = MediaTypeOCIIndex
			case m.Config != nil:
				mediaType = MediaTypeOCIManifest
			}
		}
	}
	mediaType, _, _ = strings.Cut(mediaType, ";")
	mediaType = strings.TrimSpace(mediaType)
	switch mediaType {
	case MediaTypeOCIManifest, MediaTypeDockerManifest, MediaTypeOCIIndex, MediaTypeDockerList:
	default:
		return m, "", permanent(fmt.Errorf("%w %q", ErrUnsupportedMediaType, mediaType))
	}
	if m.SchemaVersion != 2 {
		return m, "", permanent(fmt.Errorf("%w: schemaVersion %d", ErrInvalidManifest, m.SchemaVersion))
	}
	if m.MediaType != "" && m.MediaType != mediaType {
		return m, "", permanent(fmt.Errorf("%w: served as %s but says %s", ErrInvalidManifest, mediaType, m.MediaType))
	}
	check := func(what string, d Descriptor) error {
		if !validDigest(d.Digest) || d.Size < 0 {
			return permanent(fmt.Errorf("%w: %s has digest %q size %d", ErrInvalidManifest, what, d.Digest, d.Size))
		}
		return nil
	}
	if isIndex(mediaType) {
		if m.Config != nil || len(m.Layers) > 0 {
			return m, "", permanent(fmt.Errorf("%w: an index with a config or layers", ErrInvalidManifest))
		}
		for i, d := range m.Manifests {
			if err := check(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return m, "", err
			}
		}
	} else {
		if m.Config == nil {
			return m, "", permanent(fmt.Errorf("%w: an image manifest without a config", ErrInvalidManifest))
		}
		if err := check("config", *m.Config); err != nil {
			return m, "", err
		}
		for i, d := range m.Layers {
			if err := check(fmt.Sprintf("layers[%d]", i), d); err != nil {
				return m, "", err
			}
		}
	}
	if m.Subject != nil {
		if err := check("subject", *m.Subject); err != nil {
			return m, "", err
		}
	}
	return m, mediaType, nil
}

func manifestPath(repo, ref string) string { return "/v2/" + repo + "/manifests/" + ref }

// getManifest fetches repo's manifest ref (a tag or digest) and checks it:
// its digest must be want (if set, or ref when ref is a digest), and the
// registry's Docker-Content-Digest must agree with the bytes.
func getManifest(ctx context.Context, c *upstream.Client, repo, ref, want string) (*fetched, error) {
	if want == "" && validDigest(ref) {
		want = ref
	}
	resp, err := c.Do(ctx, upstream.Request{
		Method: http.MethodGet, Path: manifestPath(repo, ref), Scope: upstream.Scope(repo),
		Header: http.Header{"Accept": {acceptManifests}},
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusErr(resp)
	}
	if resp.ContentLength > maxManifestSize {
		return nil, permanent(fmt.Errorf("%w: manifest of %d bytes", ErrTooLarge, resp.ContentLength))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxManifestSize {
		return nil, permanent(fmt.Errorf("%w: manifest over %d bytes", ErrTooLarge, maxManifestSize))
	}
	f := &fetched{raw: raw, digest: digestOf(raw)}
	if want != "" && f.digest != want {
		return nil, permanent(fmt.Errorf("%w: %s/%s has digest %s, want %s", ErrDigestMismatch, repo, ref, f.digest, want))
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && validDigest(h) && h != f.digest {
		return nil, permanent(fmt.Errorf("%w: %s/%s: the registry says %s, the bytes hash to %s", ErrDigestMismatch, repo, ref, h, f.digest))
	}
	if f.m, f.mediaType, err = parseManifest(raw, resp.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	return f, nil
}

// headManifest reports whether repo has the manifest ref, with its digest
// and media type.
func headManifest(ctx context.Context, c *upstream.Client, repo, ref string) (ok bool, digest, mediaType string, err error) {
	req := upstream.Request{
		Method: http.MethodHead, Path: manifestPath(repo, ref), Scope: upstream.Scope(repo),
		Header: http.Header{"Accept": {acceptManifests}},
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return false, "", "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
		return true, resp.Header.Get("Docker-Content-Digest"), strings.TrimSpace(mt), nil
	case http.StatusNotFound:
		return false, "", "", nil
	}
	return false, "", "", headError(ctx, c, req, resp)
}

// headError is the error for a failed HEAD: a HEAD answer has no body, so
// the request is repeated as a GET to read the registry's error code and
// message (falling back to the bare status).
func headError(ctx context.Context, c *upstream.Client, req upstream.Request, resp *http.Response) error {
	if !transientStatus(resp.StatusCode) {
		req.Method = http.MethodGet
		if again, err := c.Do(ctx, req); err == nil {
			if again.StatusCode == resp.StatusCode {
				return statusErr(again)
			}
			again.Body.Close()
		}
	}
	return statusErr(resp)
}

// putManifest pushes raw as repo's manifest ref (a digest or tag) and
// returns the response headers. The registry must report the same digest.
func putManifest(ctx context.Context, c *upstream.Client, repo, ref string, f *fetched) (http.Header, error) {
	resp, err := c.Do(ctx, upstream.Request{
		Method: http.MethodPut, Path: manifestPath(repo, ref), Scope: upstream.PushScope(repo),
		Header:        http.Header{"Content-Type": {f.mediaType}},
		Body:          func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.raw)), nil },
		ContentLength: int64(len(f.raw)),
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, statusErr(resp)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != f.digest {
		return nil, permanent(fmt.Errorf("%w: pushed %s, the registry stored %s", ErrDigestMismatch, f.digest, h))
	}
	return resp.Header, nil
}
