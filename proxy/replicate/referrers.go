package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// maxReferrerPages bounds the pages of one referrers listing.
const maxReferrerPages = 100

// fallbackTag is the tag the OCI 1.1 referrers tag scheme uses for the
// referrers of digest: sha256-<hex>.
func fallbackTag(digest string) string { return strings.Replace(digest, ":", "-", 1) }

// sourceReferrers lists the referrers of digest at the source: from the
// referrers API where it has one, else from the sha256-<hex> tag (whose
// index is returned too, so the target can get the same bytes).
func (c *copier) sourceReferrers(ctx context.Context, digest string) ([]Descriptor, *fetched, error) {
	c.mu.Lock()
	api := c.srcAPI
	c.mu.Unlock()
	if api != apiNo {
		descs, ok, err := listReferrers(ctx, c.src.Client, c.src.Repository, digest)
		if err != nil {
			return nil, nil, err
		}
		c.mu.Lock()
		if ok {
			c.srcAPI = apiYes
		} else {
			c.srcAPI = apiNo
		}
		c.mu.Unlock()
		if ok {
			return descs, nil, nil
		}
	}
	return tagSchemeReferrers(ctx, c.src.Client, c.src.Repository, digest)
}

// tagSchemeReferrers reads the sha256-<hex> tag index of digest (none: no
// referrers).
func tagSchemeReferrers(ctx context.Context, cl *upstream.Client, repo, digest string) ([]Descriptor, *fetched, error) {
	if !strings.HasPrefix(digest, "sha256:") {
		return nil, nil, nil
	}
	tag := fallbackTag(digest)
	ok, _, _, err := headManifest(ctx, cl, repo, tag)
	if err != nil || !ok {
		return nil, nil, err
	}
	f, err := getManifest(ctx, cl, repo, tag, "")
	if err != nil {
		return nil, nil, err
	}
	if !isIndex(f.mediaType) {
		return nil, nil, nil // a tag that happens to look like one
	}
	return f.m.Manifests, f, nil
}

// listReferrers GETs /v2/<repo>/referrers/<digest>, following Link
// pages. ok is false when the registry has no referrers API (404, 400,
// 405 or 501 to the request, or an answer that is not an index).
func listReferrers(ctx context.Context, cl *upstream.Client, repo, digest string) (descs []Descriptor, ok bool, err error) {
	req := upstream.Request{Method: http.MethodGet, Path: "/v2/" + repo + "/referrers/" + digest, Scope: upstream.Scope(repo),
		Header: http.Header{"Accept": {MediaTypeOCIIndex}}}
	for page := 0; ; page++ {
		if page == maxReferrerPages {
			return nil, false, errf(ErrTooLarge, "more than %d pages of referrers", maxReferrerPages)
		}
		resp, err := cl.Do(ctx, req)
		if err != nil {
			return nil, false, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			if page == 0 {
				resp.Body.Close()
				return nil, false, nil
			}
			return nil, false, statusErr(resp)
		default:
			return nil, false, statusErr(resp)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
		resp.Body.Close()
		if err != nil {
			return nil, false, err
		}
		var idx manifest
		mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
		if len(raw) > maxManifestSize || json.Unmarshal(raw, &idx) != nil || (strings.TrimSpace(mt) != MediaTypeOCIIndex && idx.MediaType != MediaTypeOCIIndex) {
			if page == 0 {
				return nil, false, nil // not a referrers API answer
			}
			return nil, false, errf(ErrInvalidManifest, "referrers page %d is not an OCI index", page)
		}
		descs = append(descs, idx.Manifests...)
		next := nextLink(resp)
		if next == "" {
			return descs, true, nil
		}
		req.Path, req.URL = "", next
	}
}

// nextLink returns the absolute URL of resp's Link rel="next", or "".
func nextLink(resp *http.Response) string {
	for _, h := range resp.Header.Values("Link") {
		for _, part := range strings.Split(h, ",") {
			target, params, found := strings.Cut(strings.TrimSpace(part), ";")
			if !found || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) && !strings.Contains(params, "rel=next") {
				continue
			}
			target = strings.TrimSpace(target)
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			u, err := resp.Request.URL.Parse(target[1 : len(target)-1])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				continue
			}
			return u.String()
		}
	}
	return ""
}

// targetAPI finds out (once per copy) whether the target serves the
// referrers API, asking about subject.
func (c *copier) targetAPI(ctx context.Context, subject string) (bool, error) {
	c.mu.Lock()
	api := c.dstAPI
	c.mu.Unlock()
	if api != apiUnknown {
		return api == apiYes, nil
	}
	_, ok, err := listReferrers(ctx, c.dst.Client, c.dst.Repository, subject)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.dstAPI = map[bool]apiSupport{true: apiYes, false: apiNo}[ok]
	c.mu.Unlock()
	return ok, nil
}

// updateTargetIndex lists refs in the target's sha256-<hex> tag index of
// n, when the target has no referrers API: the index there gains the
// referrers it lacks (an index the target does not have yet is the
// source's own, byte for byte, when that lists them all).
func (c *copier) updateTargetIndex(ctx context.Context, n *node, refs []*node) error {
	if api, err := c.targetAPI(ctx, n.f.digest); err != nil || api {
		return err
	}
	tag := fallbackTag(n.f.digest)
	existing, _, err := tagSchemeReferrers(ctx, c.dst.Client, c.dst.Repository, n.f.digest)
	if err != nil {
		return err
	}
	var missing []Descriptor
	for _, r := range refs {
		if !slices.ContainsFunc(existing, func(d Descriptor) bool { return d.Digest == r.f.digest }) {
			missing = append(missing, r.f.descriptor())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	idx := n.srcIndex
	if existing != nil || idx == nil || !listsAll(idx, missing) {
		if idx, err = newIndex(append(existing, missing...)); err != nil {
			return err
		}
	}
	if _, err := putManifest(ctx, c.dst.Client, c.dst.Repository, tag, idx); err != nil {
		return err
	}
	c.manifestsPushed.Add(1)
	return nil
}

func listsAll(idx *fetched, descs []Descriptor) bool {
	for _, d := range descs {
		if !slices.ContainsFunc(idx.m.Manifests, func(x Descriptor) bool { return x.Digest == d.Digest }) {
			return false
		}
	}
	return true
}

// newIndex builds the OCI index of the referrers tag scheme.
func newIndex(descs []Descriptor) (*fetched, error) {
	for i := range descs {
		descs[i].Platform = nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, descs}); err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	raw := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	m, mt, err := parseManifest(raw, MediaTypeOCIIndex)
	if err != nil {
		return nil, err
	}
	return &fetched{raw: raw, mediaType: mt, digest: digestOf(raw), m: m}, nil
}
