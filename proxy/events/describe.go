package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Platform is what an image event says of a manifest's platforms.
type Platform struct {
	// OS and Architecture of a single-platform image ("linux", "arm64";
	// the variant is in Platforms).
	OS, Architecture string
	// Platforms are an index's ("linux/amd64", "linux/arm64/v8"), or the
	// image's own.
	Platforms []string
	MediaType string
}

// Describer finds a manifest's platforms, for what a notification does not
// carry. The origin's is a RegistryDescriber on the backend.
type Describer interface {
	Describe(ctx context.Context, repo, digest string) (Platform, error)
}

// RegistryDescriber reads manifests (and image configs) from a registry.
type RegistryDescriber struct {
	// Base is the registry's URL ("http://127.0.0.1:5000").
	Base *url.URL
	// Client makes the requests (nil: http.DefaultClient).
	Client *http.Client
	// User and Password, if set, authenticate (Basic).
	User, Password string
	// UserAgent marks the requests, so the registry's notifications of
	// these look-ups can be told from users' pulls.
	UserAgent string
}

// maxDescribeBody bounds a manifest or config read.
const maxDescribeBody = 4 << 20

var acceptManifests = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// Describe reads repo@digest: an index's platforms, or an image's config.
func (r *RegistryDescriber) Describe(ctx context.Context, repo, digest string) (Platform, error) {
	body, mt, err := r.get(ctx, repo, "manifests", digest, acceptManifests)
	if err != nil {
		return Platform{}, err
	}
	return r.DescribeManifest(ctx, repo, digest, body, mt)
}

// DescribeManifest describes a manifest already read (body, with its
// media type mt when the body does not say): an index's platforms, or an
// image's from its config, read from the registry.
func (r *RegistryDescriber) DescribeManifest(ctx context.Context, repo, digest string, body []byte, mt string) (Platform, error) {
	var m struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Manifests []struct {
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				Variant      string `json:"variant"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return Platform{}, fmt.Errorf("events: manifest %s@%s: %w", repo, digest, err)
	}
	p := Platform{MediaType: m.MediaType}
	if p.MediaType == "" {
		p.MediaType = mt
	}
	if len(m.Manifests) > 0 {
		for _, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS != "unknown" {
				p.Platforms = append(p.Platforms, platformString(d.Platform.OS, d.Platform.Architecture, d.Platform.Variant))
			}
		}
		return p, nil
	}
	if m.Config.Digest == "" {
		return p, nil
	}
	cfg, _, err := r.get(ctx, repo, "blobs", m.Config.Digest, "")
	if err != nil {
		return p, err
	}
	var c struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(cfg, &c) == nil && c.OS != "" {
		p.OS, p.Architecture = c.OS, c.Architecture
		p.Platforms = []string{platformString(c.OS, c.Architecture, c.Variant)}
	}
	return p, nil
}

func platformString(os, arch, variant string) string {
	s := os + "/" + arch
	if variant != "" {
		s += "/" + variant
	}
	return s
}

func (r *RegistryDescriber) get(ctx context.Context, repo, kind, digest, accept string) ([]byte, string, error) {
	u := r.Base.JoinPath("v2", repo, kind, digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	if r.User != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("events: describe %s@%s: %w", repo, digest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("events: describe %s@%s: %s answered %s", repo, digest, kind, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDescribeBody+1))
	if err != nil {
		return nil, "", fmt.Errorf("events: describe %s@%s: %w", repo, digest, err)
	}
	if len(b) > maxDescribeBody {
		return nil, "", fmt.Errorf("events: describe %s@%s: %s too large", repo, digest, kind)
	}
	return b, resp.Header.Get("Content-Type"), nil
}
