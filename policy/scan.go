package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxScanReportSize bounds the size of a scan report body. Callers reading
// one from a registry read at most this many bytes plus one, so that a
// larger body is refused rather than cut.
const MaxScanReportSize = 64 << 20

// ParseScanReport counts the vulnerabilities in a scan report attached to
// an image, given the referrer's artifact type (or layer media type) and
// its body. It understands, whatever the type says:
//
//   - a cosign vulnerability attestation: an in-toto statement whose
//     predicateType is PredicateTypeCosignVuln, bare, in a DSSE envelope
//     (base64 payload, what `cosign attest --type vuln` writes) or in a
//     Sigstore bundle's dsseEnvelope; its predicate.scanner.result (or
//     each predicate.scanners[].result) is a Trivy or Grype report;
//   - the bare cosign-vuln predicate (`trivy image --format cosign-vuln`);
//   - a Trivy JSON report: Results[].Vulnerabilities[].Severity;
//   - a Grype JSON report: matches[].vulnerability.severity.
//
// Severities count case-insensitively as critical, high, medium (or
// moderate) and low; unknown, negligible and anything else count in All
// only. A predicate listing several scanners gives, per severity, the
// highest count of any of them. Attestations of other predicate types,
// other JSON and non-JSON types give ErrNotScanReport; bad JSON, bad
// base64 and bodies over MaxScanReportSize give ErrInvalidScanReport.
func ParseScanReport(mediaType string, body []byte) (VulnerabilityCounts, error) {
	if mt, _, _ := strings.Cut(mediaType, ";"); mt != "" && !strings.HasSuffix(strings.TrimSpace(mt), "json") {
		return VulnerabilityCounts{}, fmt.Errorf("%w: media type %q is not JSON", ErrNotScanReport, mediaType)
	}
	if len(body) > MaxScanReportSize {
		return VulnerabilityCounts{}, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrInvalidScanReport, len(body), MaxScanReportSize)
	}
	return parseDocument(body)
}

// document holds the top-level keys that tell the report formats apart.
type document struct {
	// DSSE envelope
	PayloadType *string `json:"payloadType"`
	Payload     *string `json:"payload"`
	// Sigstore bundle
	DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
	// in-toto statement
	PredicateType *string         `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	// cosign vulnerability predicate
	Scanner  json.RawMessage `json:"scanner"`
	Scanners json.RawMessage `json:"scanners"`
	// Trivy
	SchemaVersion json.RawMessage `json:"SchemaVersion"`
	Results       json.RawMessage `json:"Results"`
	// Grype
	Matches json.RawMessage `json:"matches"`
}

// decodeDocument decodes the top level of a JSON object.
func decodeDocument(what string, b []byte) (document, error) {
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%w: %s: %v", ErrInvalidScanReport, what, err)
	}
	return d, nil
}

// parseDocument handles the outermost layer: an envelope, a statement, a
// predicate or a report. Each layer may only contain the next one, so
// nesting is bounded.
func parseDocument(body []byte) (VulnerabilityCounts, error) {
	d, err := decodeDocument("document", body)
	if err != nil {
		return VulnerabilityCounts{}, err
	}
	switch {
	case d.PayloadType != nil || d.Payload != nil:
		return parseEnvelope(d)
	case d.DSSEEnvelope != nil:
		env, err := decodeDocument("bundle dsseEnvelope", d.DSSEEnvelope)
		if err != nil {
			return VulnerabilityCounts{}, err
		}
		return parseEnvelope(env)
	case d.PredicateType != nil:
		return parseStatement(d)
	case d.Scanner != nil || d.Scanners != nil:
		return parsePredicate(d)
	}
	return parseReport("document", d, body)
}

// parseEnvelope decodes a DSSE envelope's payload, which must be an
// in-toto statement.
func parseEnvelope(env document) (VulnerabilityCounts, error) {
	if env.PayloadType == nil || *env.PayloadType != MediaTypeInTotoStatement {
		pt := "none"
		if env.PayloadType != nil {
			pt = fmt.Sprintf("%q", *env.PayloadType)
		}
		return VulnerabilityCounts{}, fmt.Errorf("%w: DSSE payload type %s, want %q", ErrNotScanReport, pt, MediaTypeInTotoStatement)
	}
	if env.Payload == nil {
		return VulnerabilityCounts{}, fmt.Errorf("%w: DSSE envelope without a payload", ErrInvalidScanReport)
	}
	payload, err := decodeBase64(*env.Payload)
	if err != nil {
		return VulnerabilityCounts{}, fmt.Errorf("%w: DSSE payload: %v", ErrInvalidScanReport, err)
	}
	st, err := decodeDocument("in-toto statement", payload)
	if err != nil {
		return VulnerabilityCounts{}, err
	}
	if st.PredicateType == nil {
		return VulnerabilityCounts{}, fmt.Errorf("%w: DSSE payload is not an in-toto statement (no predicateType)", ErrInvalidScanReport)
	}
	return parseStatement(st)
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, as the
// DSSE specification allows.
func decodeBase64(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// parseStatement checks an in-toto statement's predicate type and parses
// its predicate.
func parseStatement(st document) (VulnerabilityCounts, error) {
	if !isVulnPredicate(*st.PredicateType) {
		return VulnerabilityCounts{}, fmt.Errorf("%w: predicate type %q is not %q", ErrNotScanReport, *st.PredicateType, PredicateTypeCosignVuln)
	}
	if st.Predicate == nil || bytes.Equal(bytes.TrimSpace(st.Predicate), []byte("null")) {
		return VulnerabilityCounts{}, fmt.Errorf("%w: vulnerability statement without a predicate", ErrInvalidScanReport)
	}
	pred, err := decodeDocument("predicate", st.Predicate)
	if err != nil {
		return VulnerabilityCounts{}, err
	}
	if pred.Scanner == nil && pred.Scanners == nil {
		return VulnerabilityCounts{}, fmt.Errorf("%w: vulnerability predicate without a scanner", ErrInvalidScanReport)
	}
	return parsePredicate(pred)
}

// scanner is one scanner entry of a cosign vulnerability predicate.
type scanner struct {
	URI    string          `json:"uri"`
	Result json.RawMessage `json:"result"`
}

// parsePredicate counts the results of a cosign vulnerability predicate:
// "scanner" as cosign writes it, or "scanners" as its specification once
// described it.
func parsePredicate(pred document) (VulnerabilityCounts, error) {
	var scanners []scanner
	if pred.Scanner != nil {
		var s scanner
		if err := json.Unmarshal(pred.Scanner, &s); err != nil {
			return VulnerabilityCounts{}, fmt.Errorf("%w: predicate scanner: %v", ErrInvalidScanReport, err)
		}
		scanners = append(scanners, s)
	}
	if pred.Scanners != nil {
		var ss []scanner
		if err := json.Unmarshal(pred.Scanners, &ss); err != nil {
			return VulnerabilityCounts{}, fmt.Errorf("%w: predicate scanners: %v", ErrInvalidScanReport, err)
		}
		scanners = append(scanners, ss...)
	}
	var out VulnerabilityCounts
	found := false
	for i, s := range scanners {
		if s.Result == nil || bytes.Equal(bytes.TrimSpace(s.Result), []byte("null")) {
			continue
		}
		what := fmt.Sprintf("scanner %d result", i)
		d, err := decodeDocument(what, s.Result)
		if err != nil {
			return VulnerabilityCounts{}, err
		}
		c, err := parseReport(what, d, s.Result)
		if err != nil {
			return VulnerabilityCounts{}, err
		}
		out, found = maxCounts(out, c), true
	}
	if !found {
		return VulnerabilityCounts{}, fmt.Errorf("%w: vulnerability predicate without a scanner result", ErrInvalidScanReport)
	}
	return out, nil
}

// maxCounts returns the highest count of a and b per severity.
func maxCounts(a, b VulnerabilityCounts) VulnerabilityCounts {
	return VulnerabilityCounts{
		Critical: max(a.Critical, b.Critical), High: max(a.High, b.High), Medium: max(a.Medium, b.Medium),
		Low: max(a.Low, b.Low), All: max(a.All, b.All),
	}
}

// trivyReport and grypeReport keep only the severities.
type trivyReport struct {
	Results []struct {
		Vulnerabilities []struct {
			Severity string `json:"Severity"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

type grypeReport struct {
	Matches []struct {
		Vulnerability struct {
			Severity string `json:"severity"`
		} `json:"vulnerability"`
	} `json:"matches"`
}

// parseReport counts a Trivy or a Grype report.
func parseReport(what string, d document, b []byte) (VulnerabilityCounts, error) {
	var c VulnerabilityCounts
	switch {
	case d.Results != nil || d.SchemaVersion != nil:
		var r trivyReport
		if err := json.Unmarshal(b, &r); err != nil {
			return c, fmt.Errorf("%w: %s: Trivy report: %v", ErrInvalidScanReport, what, err)
		}
		for _, res := range r.Results {
			for _, v := range res.Vulnerabilities {
				c.add(v.Severity)
			}
		}
	case d.Matches != nil:
		var r grypeReport
		if err := json.Unmarshal(b, &r); err != nil {
			return c, fmt.Errorf("%w: %s: Grype report: %v", ErrInvalidScanReport, what, err)
		}
		for _, m := range r.Matches {
			c.add(m.Vulnerability.Severity)
		}
	default:
		return c, fmt.Errorf("%w: %s is neither a Trivy report (Results), a Grype report (matches) nor a cosign vulnerability attestation", ErrNotScanReport, what)
	}
	return c, nil
}

// add counts one finding of severity s.
func (c *VulnerabilityCounts) add(s string) {
	c.All++
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical":
		c.Critical++
	case "high":
		c.High++
	case "medium", "moderate":
		c.Medium++
	case "low":
		c.Low++
	}
}
