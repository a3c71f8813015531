package policy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	trivyCounts = VulnerabilityCounts{Critical: 1, High: 2, Medium: 2, Low: 1, All: 7}
	grypeCounts = VulnerabilityCounts{Critical: 1, High: 1, Medium: 2, Low: 1, All: 7}
)

func readScanFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "scan", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cosignVulnPredicate wraps a scanner result the way
// `trivy image --format cosign-vuln` does.
func cosignVulnPredicate(t testing.TB, result []byte) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{
		"invocation": map[string]any{"parameters": nil, "uri": "", "event_id": "", "builder.id": ""},
		"scanner": map[string]any{
			"uri":     "pkg:github/aquasecurity/trivy@v0.50.1",
			"version": "v0.50.1",
			"db":      map[string]any{"uri": "", "version": ""},
			"result":  json.RawMessage(result),
		},
		"metadata": map[string]any{"scanStartedOn": "2025-05-30T10:12:40Z", "scanFinishedOn": "2025-05-30T10:12:41Z"},
	})
}

// inTotoStatement wraps a predicate the way `cosign attest --type vuln`
// does.
func inTotoStatement(t testing.TB, predicateType string, predicate []byte) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": predicateType,
		"subject": []any{map[string]any{
			"name":   "registry.example.org/dev/app",
			"digest": map[string]string{"sha256": strings.Repeat("a", 64)},
		}},
		"predicate": json.RawMessage(predicate),
	})
}

// dsseEnvelope signs nothing: the parser does not verify signatures.
func dsseEnvelope(t testing.TB, payloadType string, payload []byte, enc *base64.Encoding) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{
		"payloadType": payloadType,
		"payload":     enc.EncodeToString(payload),
		"signatures":  []any{map[string]string{"keyid": "", "sig": "MEUCIQD0"}},
	})
}

func sigstoreBundle(t testing.TB, envelope []byte) []byte {
	t.Helper()
	return mustJSON(t, map[string]any{
		"mediaType":            "application/vnd.dev.sigstore.bundle.v0.3+json",
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "x"}},
		"dsseEnvelope":         json.RawMessage(envelope),
	})
}

func TestParseScanReport(t *testing.T) {
	trivy := readScanFixture(t, "trivy.json")
	grype := readScanFixture(t, "grype.json")
	pred := cosignVulnPredicate(t, trivy)
	stmt := inTotoStatement(t, PredicateTypeCosignVuln, pred)
	env := dsseEnvelope(t, MediaTypeInTotoStatement, stmt, base64.StdEncoding)
	twoScanners := mustJSON(t, map[string]any{"scanners": []any{
		map[string]any{"uri": "pkg:github/aquasecurity/trivy", "result": json.RawMessage(trivy)},
		map[string]any{"uri": "pkg:github/anchore/grype", "result": json.RawMessage(grype)},
	}})

	tests := []struct {
		name, mediaType string
		body            []byte
		want            VulnerabilityCounts
	}{
		{"trivy", ArtifactTypeTrivyReport, trivy, trivyCounts},
		{"trivy without a type", "", trivy, trivyCounts},
		{"trivy clean", "application/json", readScanFixture(t, "trivy-clean.json"), VulnerabilityCounts{}},
		{"trivy no results", "application/json", []byte(`{"SchemaVersion": 2, "Results": null}`), VulnerabilityCounts{}},
		{"grype", ArtifactTypeGrypeReport, grype, grypeCounts},
		{"grype clean", ArtifactTypeGrypeReport, readScanFixture(t, "grype-clean.json"), VulnerabilityCounts{}},
		{"cosign-vuln predicate", ArtifactTypeJSON, pred, trivyCounts},
		{"cosign-vuln predicate of grype", ArtifactTypeJSON, cosignVulnPredicate(t, grype), grypeCounts},
		{"in-toto statement", MediaTypeInTotoStatement, stmt, trivyCounts},
		{"in-toto v1 statement, scheme-less type", MediaTypeInTotoStatement,
			inTotoStatement(t, "cosign.sigstore.dev/attestation/vuln/v1", pred), trivyCounts},
		{"DSSE envelope", MediaTypeDSSEEnvelope, env, trivyCounts},
		{"DSSE envelope, raw URL base64", MediaTypeDSSEEnvelope, dsseEnvelope(t, MediaTypeInTotoStatement, stmt, base64.RawURLEncoding), trivyCounts},
		{"sigstore bundle", ArtifactTypeSigstoreBundle, sigstoreBundle(t, env), trivyCounts},
		{"bundle media type with parameters", "application/vnd.dev.sigstore.bundle+json;version=0.2", sigstoreBundle(t, env), trivyCounts},
		{"two scanners take the highest count", ArtifactTypeJSON, twoScanners,
			VulnerabilityCounts{Critical: 1, High: 2, Medium: 2, Low: 1, All: 7}},
		{"severities are case-insensitive", "", []byte(`{"matches":[{"vulnerability":{"severity":" CRITICAL "}},{"vulnerability":{"severity":"moderate"}},{"vulnerability":{"severity":""}}]}`),
			VulnerabilityCounts{Critical: 1, Medium: 1, All: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScanReport(tc.mediaType, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseScanReportErrors(t *testing.T) {
	trivy := readScanFixture(t, "trivy.json")
	pred := cosignVulnPredicate(t, trivy)
	slsa := inTotoStatement(t, "https://slsa.dev/provenance/v1", []byte(`{"buildDefinition":{}}`))
	tests := []struct {
		name, mediaType string
		body            []byte
		sentinel        error
		msg             string
	}{
		{"layer media type", "application/vnd.oci.image.layer.v1.tar+gzip", trivy, ErrNotScanReport,
			`policy: not a vulnerability scan report: media type "application/vnd.oci.image.layer.v1.tar+gzip" is not JSON`},
		{"too large", "", make([]byte, MaxScanReportSize+1), ErrInvalidScanReport,
			"policy: invalid scan report: 67108865 bytes, more than the 67108864 allowed"},
		{"not JSON", "", []byte("<html>"), ErrInvalidScanReport, "policy: invalid scan report: document: invalid character '<'"},
		{"empty", "", nil, ErrInvalidScanReport, "policy: invalid scan report: document: unexpected end of JSON input"},
		{"array", "", []byte("[]"), ErrInvalidScanReport, "policy: invalid scan report: document: json: cannot unmarshal array"},
		{"other JSON", "application/json", []byte(`{"spdxVersion":"SPDX-2.3"}`), ErrNotScanReport,
			"policy: not a vulnerability scan report: document is neither a Trivy report (Results), a Grype report (matches) nor a cosign vulnerability attestation"},
		{"SLSA statement", MediaTypeInTotoStatement, slsa, ErrNotScanReport,
			`policy: not a vulnerability scan report: predicate type "https://slsa.dev/provenance/v1" is not "https://cosign.sigstore.dev/attestation/vuln/v1"`},
		{"SLSA in DSSE", MediaTypeDSSEEnvelope, dsseEnvelope(t, MediaTypeInTotoStatement, slsa, base64.StdEncoding), ErrNotScanReport,
			`predicate type "https://slsa.dev/provenance/v1"`},
		{"DSSE of another payload type", MediaTypeDSSEEnvelope, dsseEnvelope(t, "application/vnd.dev.cosign.simplesigning.v1+json", []byte("{}"), base64.StdEncoding), ErrNotScanReport,
			`policy: not a vulnerability scan report: DSSE payload type "application/vnd.dev.cosign.simplesigning.v1+json", want "application/vnd.in-toto+json"`},
		{"DSSE without payload type", MediaTypeDSSEEnvelope, []byte(`{"payload":"e30="}`), ErrNotScanReport, "DSSE payload type none"},
		{"DSSE without payload", MediaTypeDSSEEnvelope, []byte(`{"payloadType":"application/vnd.in-toto+json"}`), ErrInvalidScanReport,
			"policy: invalid scan report: DSSE envelope without a payload"},
		{"DSSE bad base64", MediaTypeDSSEEnvelope, []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"!!!"}`), ErrInvalidScanReport,
			"policy: invalid scan report: DSSE payload: illegal base64 data at input byte 0"},
		{"DSSE payload not a statement", MediaTypeDSSEEnvelope, dsseEnvelope(t, MediaTypeInTotoStatement, trivy, base64.StdEncoding), ErrInvalidScanReport,
			"DSSE payload is not an in-toto statement (no predicateType)"},
		{"DSSE payload not JSON", MediaTypeDSSEEnvelope, dsseEnvelope(t, MediaTypeInTotoStatement, []byte("nope"), base64.StdEncoding), ErrInvalidScanReport,
			"policy: invalid scan report: in-toto statement: invalid character"},
		{"bundle envelope not an object", ArtifactTypeSigstoreBundle, []byte(`{"dsseEnvelope":"x"}`), ErrInvalidScanReport,
			"policy: invalid scan report: bundle dsseEnvelope: json: cannot unmarshal string"},
		{"statement without predicate", MediaTypeInTotoStatement, []byte(`{"predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1"}`), ErrInvalidScanReport,
			"vulnerability statement without a predicate"},
		{"predicate without scanner", MediaTypeInTotoStatement, inTotoStatement(t, PredicateTypeCosignVuln, []byte(`{"metadata":{}}`)), ErrInvalidScanReport,
			"vulnerability predicate without a scanner"},
		{"scanner without result", ArtifactTypeJSON, []byte(`{"scanner":{"uri":"x"}}`), ErrInvalidScanReport,
			"vulnerability predicate without a scanner result"},
		{"scanner null", ArtifactTypeJSON, []byte(`{"scanner":null}`), ErrInvalidScanReport, "without a scanner result"},
		{"scanner result of unknown format", ArtifactTypeJSON, cosignVulnPredicate(t, []byte(`{"runs":[]}`)), ErrNotScanReport,
			"scanner 0 result is neither a Trivy report"},
		{"scanners not a list", ArtifactTypeJSON, []byte(`{"scanners":{}}`), ErrInvalidScanReport,
			"policy: invalid scan report: predicate scanners: json: cannot unmarshal object"},
		{"trivy results not a list", "", []byte(`{"Results":{}}`), ErrInvalidScanReport,
			"policy: invalid scan report: document: Trivy report: json: cannot unmarshal object"},
		{"trivy severity not a string", "", []byte(`{"Results":[{"Vulnerabilities":[{"Severity":3}]}]}`), ErrInvalidScanReport, "Trivy report"},
		{"grype matches not a list", "", []byte(`{"matches":3}`), ErrInvalidScanReport,
			"policy: invalid scan report: document: Grype report: json: cannot unmarshal number"},
		{"nested statement in result", ArtifactTypeJSON, cosignVulnPredicate(t, inTotoStatement(t, PredicateTypeCosignVuln, pred)), ErrNotScanReport,
			"scanner 0 result is neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScanReport(tc.mediaType, tc.body)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q\nwant it to contain %q", err, tc.msg)
			}
		})
	}
}

func TestIsSignatureAndScanReport(t *testing.T) {
	bundle := func(pt string) map[string]string {
		return map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": pt}
	}
	tests := []struct {
		name         string
		artifactType string
		annotations  map[string]string
		sig, scan    bool
	}{
		{"cosign signature", ArtifactTypeCosignSignature, nil, true, false},
		{"notation signature", ArtifactTypeNotationSignature, nil, true, false},
		{"legacy cosign signature layer", MediaTypeCosignSimpleSigning, nil, true, false},
		{"cosign 3 signature bundle", ArtifactTypeSigstoreBundle, bundle(PredicateTypeCosignSign), true, false},
		{"bundle without annotations", ArtifactTypeSigstoreBundle, nil, true, true},
		{"older bundle type", "application/vnd.dev.sigstore.bundle+json;version=0.2", bundle(PredicateTypeCosignSign), true, false},
		{"vulnerability attestation bundle", ArtifactTypeSigstoreBundle, bundle(PredicateTypeCosignVuln), false, true},
		{"SLSA attestation bundle", ArtifactTypeSigstoreBundle, bundle("https://slsa.dev/provenance/v1"), false, false},
		{"legacy attestation layer, vuln", MediaTypeDSSEEnvelope, map[string]string{"predicateType": PredicateTypeCosignVuln}, false, true},
		{"legacy attestation layer, SBOM", MediaTypeDSSEEnvelope, map[string]string{"predicateType": "https://spdx.dev/Document"}, false, false},
		{"in-toto layer, vuln", MediaTypeInTotoStatement, map[string]string{"in-toto.io/predicate-type": "cosign.sigstore.dev/attestation/vuln/v1"}, false, true},
		{"DSSE without annotation", MediaTypeDSSEEnvelope, nil, false, true},
		{"trivy report", ArtifactTypeTrivyReport, nil, false, true},
		{"trivy report v1", "application/vnd.aquasec.trivy.report.v1+json", nil, false, true},
		{"grype report", ArtifactTypeGrypeReport, nil, false, true},
		{"trivy referrer put", ArtifactTypeJSON, map[string]string{"created-by": "trivy"}, false, true},
		{"SBOM", "application/spdx+json", nil, false, false},
		{"image", "application/vnd.oci.image.config.v1+json", nil, false, false},
		{"empty", "", nil, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsSignature(tc.artifactType, tc.annotations); got != tc.sig {
				t.Errorf("IsSignature = %v, want %v", got, tc.sig)
			}
			if got := IsScanReport(tc.artifactType, tc.annotations); got != tc.scan {
				t.Errorf("IsScanReport = %v, want %v", got, tc.scan)
			}
		})
	}
	for _, at := range SignatureArtifactTypes() {
		if !IsSignature(at, nil) {
			t.Errorf("SignatureArtifactTypes lists %s, which IsSignature refuses", at)
		}
	}
	for _, at := range ScanReportArtifactTypes() {
		if !IsScanReport(at, nil) {
			t.Errorf("ScanReportArtifactTypes lists %s, which IsScanReport refuses", at)
		}
	}
	l := SignatureArtifactTypes()
	l[0] = "changed"
	if SignatureArtifactTypes()[0] == "changed" {
		t.Error("SignatureArtifactTypes returned shared state")
	}
}
