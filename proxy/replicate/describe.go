package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// Bounds of Describe.
const (
	// maxConfigSize bounds an image config read for its labels.
	maxConfigSize = 1 << 20
	// maxReportSize bounds a scan report read from a referrer.
	maxReportSize = 4 << 20
	// maxDescribed bounds the platform manifests of an index Describe reads.
	maxDescribed = 64
	// maxTags bounds ListTags.
	maxTags = 1 << 20
)

// Image is what the policy rules need to know about one image, gathered
// from its registry by Describe.
type Image struct {
	// Repository, Tag, Digest and MediaType name the manifest or index.
	Repository, Tag, Digest, MediaType string
	// ArtifactType is the manifest's artifactType, else its config's media
	// type (as the referrers API reports it); empty for an index without
	// one.
	ArtifactType string
	// Platforms lists every image manifest's platform (for an index, its
	// entries' platforms, leaving out unknown/unknown attestation entries).
	Platforms []Platform
	// Labels are the image config labels; for an index the union over its
	// platforms, the first platform's value winning where they differ.
	Labels map[string]string
	// Annotations are the manifest's (or index's own) annotations.
	Annotations map[string]string
	// Created is the config's created time; for an index the newest over
	// its platforms. Zero when unknown.
	Created time.Time
	// Referrers lists the manifests whose subject is the image (through
	// the referrers API or the sha256-<hex> tag scheme) and cosign's
	// sha256-<hex>.sig/.att/.sbom tags.
	Referrers []Referrer
	// Signed says a referrer of a signature type is attached (cosign,
	// sigstore bundles, notation), not that it verifies.
	Signed bool
	// ScanReports are the payloads of referrers that may be vulnerability
	// scan reports (in-toto/DSSE attestations, Trivy, Grype, SARIF
	// artifacts), newest first, for the rules' parser to read.
	ScanReports []Artifact
}

// Referrer is one manifest attached to an image.
type Referrer struct {
	Digest, MediaType, ArtifactType string
	Annotations                     map[string]string
	// Tag is set for cosign's tag convention (sha256-<hex>.sig).
	Tag string
}

// Artifact is the payload (first layer) of a referrer.
type Artifact struct {
	// Referrer is the manifest the payload belongs to.
	Referrer Referrer
	// MediaType is the payload layer's media type.
	MediaType string
	// Created is the referrer's org.opencontainers.image.created
	// annotation, zero if it has none.
	Created time.Time
	// Data is the payload, at most 4 MiB.
	Data []byte
}

// The artifact types that mark a signature.
var signatureTypes = []string{
	"application/vnd.dev.cosign.artifact.sig.v1+json",
	"application/vnd.dev.cosign.simplesigning.v1+json",
	"application/vnd.dev.sigstore.bundle.v0.3+json",
	"application/vnd.dev.sigstore.bundle+json;version=0.3",
	"application/vnd.cncf.notary.signature",
}

// isScanReportType says whether an artifact type may be a scan report.
func isScanReportType(t string) bool {
	t = strings.ToLower(t)
	for _, s := range []string{"dsse", "in-toto", "intoto", "vuln", "trivy", "grype", "sarif", "scan"} {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// Describe reads what the rules need about the image ref names: its
// manifest, the platform manifests and configs of an index (at most 64),
// its referrers, and the payloads of those that may be scan reports.
func Describe(ctx context.Context, ref Ref) (Image, error) {
	if ref.Client == nil || ref.Repository == "" || ref.reference() == "" {
		return Image{}, &Error{Op: "describe", Ref: ref.String(), Err: permanent(errors.New("need a client, a repository and a tag or digest"))}
	}
	f, err := getManifest(ctx, ref.Client, ref.Repository, ref.reference(), ref.Digest)
	if err != nil {
		return Image{}, wrap("describe", ref.String(), err)
	}
	img := Image{Repository: ref.Repository, Tag: ref.Tag, Digest: f.digest, MediaType: f.mediaType,
		ArtifactType: f.artifactType(), Annotations: f.m.Annotations}
	if err := describeContent(ctx, ref, f, &img); err != nil {
		return img, wrap("describe", ref.at(f.digest), err)
	}
	if err := describeReferrers(ctx, ref, f.digest, &img); err != nil {
		return img, wrap("describe referrers", ref.at(f.digest), err)
	}
	return img, nil
}

// describeContent fills platforms, labels and created from the configs.
func describeContent(ctx context.Context, ref Ref, f *fetched, img *Image) error {
	if !isIndex(f.mediaType) {
		cfg, err := readConfig(ctx, ref, f)
		if err != nil || cfg == nil {
			return err
		}
		if cfg.OS != "" || cfg.Architecture != "" {
			img.Platforms = []Platform{{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
		}
		img.Labels, img.Created = cfg.Config.Labels, cfg.Created
		return nil
	}
	read := 0
	for _, d := range f.m.Manifests {
		if d.Platform != nil && (d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown") {
			continue // buildx attestation manifests
		}
		if d.Platform != nil {
			img.Platforms = append(img.Platforms, *d.Platform)
		}
		if isIndex(d.MediaType) || read == maxDescribed {
			continue
		}
		read++
		child, err := getManifest(ctx, ref.Client, ref.Repository, d.Digest, d.Digest)
		if err != nil {
			return err
		}
		cfg, err := readConfig(ctx, ref, child)
		if err != nil {
			return err
		}
		if cfg == nil {
			continue
		}
		if d.Platform == nil && (cfg.OS != "" || cfg.Architecture != "") {
			img.Platforms = append(img.Platforms, Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
		}
		for k, v := range cfg.Config.Labels {
			if img.Labels == nil {
				img.Labels = map[string]string{}
			}
			if _, ok := img.Labels[k]; !ok {
				img.Labels[k] = v
			}
		}
		if cfg.Created.After(img.Created) {
			img.Created = cfg.Created
		}
	}
	return nil
}

// imageConfig is the part of an image config Describe reads.
type imageConfig struct {
	OS           string    `json:"os"`
	Architecture string    `json:"architecture"`
	Variant      string    `json:"variant"`
	Created      time.Time `json:"created"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
}

// readConfig reads an image manifest's config, nil for one that is not an
// image config (an artifact's).
func readConfig(ctx context.Context, ref Ref, f *fetched) (*imageConfig, error) {
	if f.m.Config == nil || (f.m.Config.MediaType != MediaTypeOCIConfig && f.m.Config.MediaType != MediaTypeDockerConfig) {
		return nil, nil
	}
	if f.m.Config.Size > maxConfigSize {
		return nil, errf(ErrTooLarge, "image config of %d bytes", f.m.Config.Size)
	}
	raw, err := readBlob(ctx, ref, *f.m.Config, maxConfigSize)
	if err != nil {
		return nil, err
	}
	var cfg imageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, errf(ErrInvalidManifest, "image config %s: %v", f.m.Config.Digest, err)
	}
	return &cfg, nil
}

// readBlob reads a small blob whole and checks its digest.
func readBlob(ctx context.Context, ref Ref, d Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, errf(ErrTooLarge, "blob %s of %d bytes", d.Digest, d.Size)
	}
	cd, err := casstore.ParseDigest(d.Digest)
	if err != nil {
		return nil, permanent(err)
	}
	st, err := ref.Client.FetchBlob(ctx, ref.Repository, cd, 0, -1, nil)
	if err != nil {
		return nil, err
	}
	defer st.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(st.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) != d.Size {
		return nil, errf(ErrSizeMismatch, "blob %s has %d bytes, want %d", d.Digest, len(raw), d.Size)
	}
	if got := digestOf(raw); got != d.Digest {
		return nil, errf(ErrDigestMismatch, "blob %s hashes to %s", d.Digest, got)
	}
	return raw, nil
}

// describeReferrers lists the image's referrers, decides Signed and reads
// the candidate scan reports.
func describeReferrers(ctx context.Context, ref Ref, digest string, img *Image) error {
	descs, ok, err := listReferrers(ctx, ref.Client, ref.Repository, digest)
	if err != nil {
		return err
	}
	if !ok {
		if descs, _, err = tagSchemeReferrers(ctx, ref.Client, ref.Repository, digest); err != nil {
			return err
		}
	}
	for _, d := range descs {
		img.Referrers = append(img.Referrers, Referrer{Digest: d.Digest, MediaType: d.MediaType, ArtifactType: d.ArtifactType, Annotations: d.Annotations})
	}
	for _, suffix := range []string{".sig", ".att", ".sbom"} {
		tag := fallbackTag(digest) + suffix
		ok, d, mt, err := headManifest(ctx, ref.Client, ref.Repository, tag)
		if err != nil {
			return err
		}
		if ok {
			r := Referrer{Digest: d, MediaType: mt, Tag: tag}
			if suffix == ".sig" {
				r.ArtifactType = "application/vnd.dev.cosign.simplesigning.v1+json"
			}
			img.Referrers = append(img.Referrers, r)
		}
	}
	for _, r := range img.Referrers {
		if slices.Contains(signatureTypes, r.ArtifactType) {
			img.Signed = true
		}
		if !isScanReportType(r.ArtifactType) || r.Tag != "" {
			continue
		}
		a, err := readPayload(ctx, ref, r)
		if err != nil {
			return err
		}
		if a != nil {
			img.ScanReports = append(img.ScanReports, *a)
		}
	}
	sort.SliceStable(img.ScanReports, func(i, j int) bool { return img.ScanReports[i].Created.After(img.ScanReports[j].Created) })
	return nil
}

// readPayload reads a referrer's first layer (nil if it has none, or one
// over the size bound).
func readPayload(ctx context.Context, ref Ref, r Referrer) (*Artifact, error) {
	f, err := getManifest(ctx, ref.Client, ref.Repository, r.Digest, r.Digest)
	if err != nil {
		return nil, err
	}
	if isIndex(f.mediaType) || len(f.m.Layers) == 0 || f.m.Layers[0].Size > maxReportSize {
		return nil, nil
	}
	data, err := readBlob(ctx, ref, f.m.Layers[0], maxReportSize)
	if err != nil {
		return nil, err
	}
	a := &Artifact{Referrer: r, MediaType: f.m.Layers[0].MediaType, Data: data}
	if t, err := time.Parse(time.RFC3339, f.m.Annotations["org.opencontainers.image.created"]); err == nil {
		a.Created = t
	}
	return a, nil
}

// Resolve returns the digest and media type of the manifest ref names
// (HEAD with the Accept list of the OCI and Docker types; a GET where the
// registry leaves the digest out).
func Resolve(ctx context.Context, ref Ref) (digest, mediaType string, err error) {
	if ref.Client == nil || ref.Repository == "" || ref.reference() == "" {
		return "", "", &Error{Op: "resolve", Ref: ref.String(), Err: permanent(errors.New("need a client, a repository and a tag or digest"))}
	}
	ok, d, mt, err := headManifest(ctx, ref.Client, ref.Repository, ref.reference())
	if err != nil {
		return "", "", wrap("resolve", ref.String(), err)
	}
	if !ok {
		return "", "", wrap("resolve", ref.String(), permanent(&upstream.StatusError{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: "manifest unknown", Upstream: hostOf(ref)}))
	}
	if validDigest(d) && mt != "" {
		return d, mt, nil
	}
	f, err := getManifest(ctx, ref.Client, ref.Repository, ref.reference(), ref.Digest)
	if err != nil {
		return "", "", wrap("resolve", ref.String(), err)
	}
	return f.digest, f.mediaType, nil
}

func hostOf(ref Ref) string {
	if urls := ref.Client.URLs(); len(urls) > 0 {
		if u, err := url.Parse(urls[0]); err == nil {
			return u.Host
		}
	}
	return ""
}

// ListTags returns the tags of ref's repository (its Tag and Digest are
// ignored), following the registry's Link pages.
func ListTags(ctx context.Context, ref Ref) ([]string, error) { return listTags(ctx, ref, 1000) }

// listTags is ListTags asking for pages of pageSize tags.
func listTags(ctx context.Context, ref Ref, pageSize int) ([]string, error) {
	if ref.Client == nil || ref.Repository == "" {
		return nil, &Error{Op: "list tags", Ref: ref.String(), Err: permanent(errors.New("need a client and a repository"))}
	}
	var tags []string
	req := upstream.Request{Method: http.MethodGet, Path: "/v2/" + ref.Repository + "/tags/list?n=" + strconv.Itoa(pageSize), Scope: upstream.Scope(ref.Repository)}
	for page := 0; ; page++ {
		if page == maxTags/pageSize+1 {
			return nil, wrap("list tags", ref.String(), errf(ErrTooLarge, "more than %d pages of tags", page))
		}
		resp, err := ref.Client.Do(ctx, req)
		if err != nil {
			return nil, wrap("list tags", ref.String(), err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, wrap("list tags", ref.String(), statusErr(resp))
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, wrap("list tags", ref.String(), fmt.Errorf("tag list: %w", err))
		}
		tags = append(tags, page.Tags...)
		if len(tags) > maxTags {
			return nil, wrap("list tags", ref.String(), errf(ErrTooLarge, "more than %d tags", maxTags))
		}
		next := nextLink(resp)
		if next == "" {
			return tags, nil
		}
		req.Path, req.URL = "", next
	}
}
