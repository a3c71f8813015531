package policy

import "strings"

// Artifact and media types of the referrers that make an image signed or
// carry its scan report. The engine asks the referrers API for them (or
// reads the sha256-<digest>.sig / .att tags of registries without it) and
// classifies each referrer with IsSignature and IsScanReport.
const (
	// ArtifactTypeCosignSignature is cosign's signature in OCI 1.1
	// referrers mode.
	ArtifactTypeCosignSignature = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// ArtifactTypeNotationSignature is a Notary Project (notation)
	// signature.
	ArtifactTypeNotationSignature = "application/vnd.cncf.notary.signature"
	// ArtifactTypeSigstoreBundle is a Sigstore bundle, what cosign 3 (and
	// cosign 2 with --new-bundle-format) attaches for a signature and for an
	// attestation alike; the dev.sigstore.bundle.predicateType annotation
	// tells them apart.
	ArtifactTypeSigstoreBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// MediaTypeCosignSimpleSigning is the layer media type of a legacy
	// cosign signature (the sha256-<digest>.sig tag).
	MediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// MediaTypeDSSEEnvelope is a DSSE envelope, the layer media type of a
	// legacy cosign attestation (the sha256-<digest>.att tag).
	MediaTypeDSSEEnvelope = "application/vnd.dsse.envelope.v1+json"
	// MediaTypeInTotoStatement is an unsigned in-toto statement.
	MediaTypeInTotoStatement = "application/vnd.in-toto+json"
	// ArtifactTypeTrivyReport is a Trivy JSON report attached as an OCI
	// artifact (`oras attach --artifact-type ...`). No type is registered
	// for it; this is the most common one in use, and the two below are
	// accepted too.
	ArtifactTypeTrivyReport = "application/vnd.aquasec.trivy.report+json"
	// ArtifactTypeGrypeReport is a Grype JSON report attached as an OCI
	// artifact.
	ArtifactTypeGrypeReport = "application/vnd.anchore.grype+json"
	// ArtifactTypeJSON is what `trivy referrer put` uses for a cosign-vuln
	// report. Being generic, a referrer of this type is only a candidate:
	// ParseScanReport says ErrNotScanReport for other JSON.
	ArtifactTypeJSON = "application/json"

	// PredicateTypeCosignVuln is the predicate type of a cosign
	// vulnerability attestation (`cosign attest --type vuln`).
	PredicateTypeCosignVuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
	// PredicateTypeCosignSign is the predicate type of a cosign 3
	// signature bundle.
	PredicateTypeCosignSign = "https://sigstore.dev/cosign/sign/v1"
)

// SignatureArtifactTypes returns the artifact and media types that can
// make an image signed (see IsSignature for the Sigstore bundle case).
func SignatureArtifactTypes() []string {
	return []string{ArtifactTypeCosignSignature, ArtifactTypeNotationSignature, ArtifactTypeSigstoreBundle,
		MediaTypeCosignSimpleSigning}
}

// ScanReportArtifactTypes returns the artifact and media types a scan
// report may come as (see IsScanReport).
func ScanReportArtifactTypes() []string {
	return []string{MediaTypeDSSEEnvelope, MediaTypeInTotoStatement, ArtifactTypeSigstoreBundle,
		ArtifactTypeTrivyReport, "application/vnd.aquasec.trivy.report.v1+json",
		"application/vnd.aquasecurity.trivy.report+json", ArtifactTypeGrypeReport, ArtifactTypeJSON}
}

// predicateTypeOf returns the predicate type a referrer's annotations
// announce: cosign 3 bundles, legacy cosign attestation layers and in-toto
// layers each use their own key. Empty when none is set.
func predicateTypeOf(annotations map[string]string) string {
	for _, k := range []string{"dev.sigstore.bundle.predicateType", "predicateType", "in-toto.io/predicate-type"} {
		if v := annotations[k]; v != "" {
			return v
		}
	}
	return ""
}

// isBundle reports whether t is a Sigstore bundle of any version
// ("application/vnd.dev.sigstore.bundle.v0.3+json",
// "application/vnd.dev.sigstore.bundle+json;version=0.2").
func isBundle(t string) bool {
	return strings.HasPrefix(t, "application/vnd.dev.sigstore.bundle")
}

// IsSignature reports whether a referrer with this artifact type (or, for
// the legacy .sig tag, layer media type) and these annotations is a
// signature. A Sigstore bundle is one unless its predicate-type
// annotation names something other than cosign's signature predicate (an
// attestation); a bundle without the annotation (cosign's fallback tag
// drops it) counts as a signature.
func IsSignature(artifactType string, annotations map[string]string) bool {
	switch artifactType {
	case ArtifactTypeCosignSignature, ArtifactTypeNotationSignature, MediaTypeCosignSimpleSigning:
		return true
	}
	if isBundle(artifactType) {
		pt := predicateTypeOf(annotations)
		return pt == "" || pt == PredicateTypeCosignSign
	}
	return false
}

// IsScanReport reports whether a referrer is worth fetching and handing to
// ParseScanReport. Attestations (DSSE envelopes, in-toto statements,
// Sigstore bundles) qualify when their predicate-type annotation is the
// cosign vulnerability predicate, or when they have none; Trivy and Grype
// report types and plain JSON always do. ParseScanReport has the last
// word: it returns ErrNotScanReport for the candidates that are not
// reports.
func IsScanReport(artifactType string, annotations map[string]string) bool {
	t, _, _ := strings.Cut(artifactType, ";")
	t = strings.TrimSpace(t)
	switch {
	case t == MediaTypeDSSEEnvelope, t == MediaTypeInTotoStatement, isBundle(t):
		pt := predicateTypeOf(annotations)
		return pt == "" || isVulnPredicate(pt)
	}
	for _, st := range ScanReportArtifactTypes() {
		if t == st {
			return true
		}
	}
	return false
}

// isVulnPredicate reports whether pt is the cosign vulnerability
// predicate; cosign's own spec once wrote it without the scheme.
func isVulnPredicate(pt string) bool {
	return pt == PredicateTypeCosignVuln || pt == strings.TrimPrefix(PredicateTypeCosignVuln, "https://")
}
