package policy

import (
	"fmt"
	"strings"
	"time"
)

// Image is what rules are evaluated against: one tag of one repository and
// what the copy engine learnt about the manifest it points to. The policy
// package never fetches any of it; the engine gathers it (from the
// manifest, the image configs and the referrers) and hands it over, so the
// rules stay pure functions of this value.
type Image struct {
	// Repository is the repository path without the registry host, e.g.
	// "dev/app".
	Repository string
	// Tag is the tag being evaluated, e.g. "1.2.0".
	Tag string
	// Digest is the digest of the manifest or index the tag points to.
	Digest string
	// MediaType is the media type of that manifest or index, e.g.
	// "application/vnd.oci.image.index.v1+json".
	MediaType string
	// ArtifactType is the manifest's artifactType field; when the manifest
	// has none, the media type of its config, as the OCI referrers API
	// reports it (an ordinary image then says
	// "application/vnd.oci.image.config.v1+json"). Empty for an index
	// without an artifactType.
	ArtifactType string
	// Platforms lists the OS, architecture and variant of every image
	// manifest: one entry for a single manifest, one per runnable platform
	// for an index. Entries that are not images (buildx attestation
	// manifests, platform unknown/unknown) are left out.
	Platforms []Platform
	// Labels are the image config labels. For an index they are the union
	// over its platforms; where platforms disagree on a key, the value of
	// the first platform in index order wins (see MergeLabels).
	Labels map[string]string
	// Annotations are the annotations of the manifest or index the tag
	// points to (for an index, the index's own, not its children's).
	Annotations map[string]string
	// Created is the image config's created time; for an index, the newest
	// over its platforms. Zero when unknown: then no created criterion
	// holds.
	Created time.Time
	// Signed says the image has at least one referrer of a signature type
	// (IsSignature). It says a signature is attached, not that it verifies:
	// dtrcache checks no signing keys.
	Signed bool
	// Vulnerabilities holds the counts of the newest scan report attached
	// to the image (ParseScanReport); nil when it has none, and then no
	// vulnerability criterion holds.
	Vulnerabilities *VulnerabilityCounts
}

// VulnerabilityCounts counts the findings of one scan report by severity.
// A finding is one vulnerability in one package, as the scanners' own
// summaries count them, so a CVE present in two packages counts twice.
type VulnerabilityCounts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	// All counts every finding, including those of unknown or negligible
	// severity, so All >= Critical+High+Medium+Low.
	All int `json:"all"`
}

// Platform is the platform of one image manifest, as in an OCI index.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String formats p as os/arch or os/arch/variant, e.g. "linux/arm/v7".
func (p Platform) String() string {
	if p.Variant == "" {
		return p.OS + "/" + p.Architecture
	}
	return p.OS + "/" + p.Architecture + "/" + p.Variant
}

// normalize maps the usual aliases onto the names an OCI index uses
// (x86_64 is amd64, aarch64 is arm64, armhf is arm/v7) and drops the
// variants that are the default for their architecture (amd64/v1,
// arm64/v8), so that equal platforms compare equal.
func (p Platform) normalize() Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386", "i686":
		p.Architecture = "386"
	}
	switch p.Architecture {
	case "amd64":
		if p.Variant == "v1" {
			p.Variant = ""
		}
	case "arm64":
		if p.Variant == "8" || p.Variant == "v8" {
			p.Variant = ""
		}
	case "arm":
		switch p.Variant {
		case "":
			p.Variant = "v7"
		case "5", "6", "7", "8":
			p.Variant = "v" + p.Variant
		}
	}
	return p
}

// platformPattern is a compiled platform criterion value. Without a
// variant it matches every variant of the OS and architecture.
type platformPattern struct {
	p          Platform // normalized
	anyVariant bool
}

// parsePlatformPattern parses "os/arch" or "os/arch/variant".
func parsePlatformPattern(s string) (platformPattern, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return platformPattern{}, fmt.Errorf("platform %q is not os/arch or os/arch/variant", s)
	}
	for _, part := range parts {
		if part == "" {
			return platformPattern{}, fmt.Errorf("platform %q has an empty part", s)
		}
	}
	pp := platformPattern{p: Platform{OS: parts[0], Architecture: parts[1]}, anyVariant: len(parts) == 2}
	if len(parts) == 3 {
		pp.p.Variant = parts[2]
	}
	pp.p = pp.p.normalize()
	return pp, nil
}

// match reports whether the image platform p matches the pattern.
func (pp platformPattern) match(p Platform) bool {
	p = p.normalize()
	if p.OS != pp.p.OS || p.Architecture != pp.p.Architecture {
		return false
	}
	return pp.anyVariant || p.Variant == pp.p.Variant
}

// MergeLabels returns the union of the labels of an index's platforms,
// given in index order. Where platforms disagree on a key, the first
// platform's value wins. It returns nil when there are no labels.
func MergeLabels(perPlatform ...map[string]string) map[string]string {
	var out map[string]string
	for _, labels := range perPlatform {
		for k, v := range labels {
			if out == nil {
				out = make(map[string]string)
			}
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}
