package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds manifests read into memory (distribution's limit).
const MaxManifestSize = regapi.MaxManifestSize

// Media types the mirror recognises in manifests without a mediaType field.
const (
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerSchema1  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// acceptHeader returns the client's Accept values, or every manifest type
// when the client names none.
func acceptHeader(r *http.Request) []string {
	if a := r.Header.Values("Accept"); len(a) > 0 {
		return a
	}
	return manifestTypes
}

// manifestTypes are the manifest media types asked for when the client
// named none.
var manifestTypes = []string{v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, mediaDockerManifest, mediaDockerList, mediaDockerSchema1}

// StaleHeader marks a response served from the mirror's store because the
// upstream could not be reached to revalidate it.
const StaleHeader = "X-Dtrcache-Stale"

// serveManifest serves manifests in mirror mode: by digest from the store
// (immutable), by tag revalidated upstream on every request.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, route regapi.Route) error {
	if s.Mirror == nil {
		return regapi.NewError(http.StatusNotFound, regapi.CodeUnsupported, "manifests come from the origin, not this cache")
	}
	f := serve.FieldsFrom(r.Context())
	up, err := s.pickMirror(r)
	if err != nil {
		return err
	}
	f.Upstream = up.Name
	if !route.Digest.IsZero() {
		return s.manifestByDigest(w, r, route, up)
	}
	return s.manifestByTag(w, r, route, up)
}

func (s *Server) manifestByDigest(w http.ResponseWriter, r *http.Request, route regapi.Route, up *MirrorUpstream) error {
	f := serve.FieldsFrom(r.Context())
	d := route.Digest
	if body, err := s.readStored(d); err == nil {
		if err := s.confirm(r.Context(), up, route.Name, "manifests", d); err != nil {
			return err
		}
		f.Result = "hit"
		s.prefetchManifest(r, up, route.Name, body)
		return writeManifest(w, r, d, body, "")
	}
	body, ctype, err := s.fetchManifest(r.Context(), up, route.Name, d.String(), acceptHeader(r))
	if err != nil {
		return upstreamError(err, regapi.CodeManifestUnknown)
	}
	if err := verify(d, body); err != nil {
		return upstreamError(err, regapi.CodeManifestUnknown)
	}
	s.store(r.Context(), d, body)
	f.Result = "miss"
	s.prefetchManifest(r, up, route.Name, body)
	return writeManifest(w, r, d, body, ctype)
}

func (s *Server) manifestByTag(w http.ResponseWriter, r *http.Request, route regapi.Route, up *MirrorUpstream) error {
	f := serve.FieldsFrom(r.Context())
	tag := route.Reference
	accept := acceptHeader(r)
	// Revalidate with a HEAD (cheap, and not a pull for registries that
	// count them) when the tag was seen before; the first time, GET the
	// manifest at once instead of spending a round trip on the HEAD.
	method := http.MethodHead
	if _, err := s.Mirror.Tags.Get(up.Name, route.Name, tag); errors.Is(err, casstore.ErrNotFound) && r.Method == http.MethodGet {
		method = http.MethodGet
	}
	resp, err := up.Client.Do(r.Context(), upstream.Request{
		Method: method, Path: "/v2/" + route.Name + "/manifests/" + tag,
		Header: http.Header{"Accept": accept}, Scope: upstream.Scope(route.Name),
	})
	if err == nil && resp.StatusCode >= 500 {
		err = upstream.StatusErrorOf(resp)
	}
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return s.serveStale(w, r, route, up, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		s.Mirror.Tags.Delete(up.Name, route.Name, tag)
		return regapi.NewError(http.StatusNotFound, regapi.CodeManifestUnknown, "manifest unknown upstream")
	case resp.StatusCode != http.StatusOK:
		return upstreamError(upstream.StatusErrorOf(resp), regapi.CodeManifestUnknown)
	}
	if method == http.MethodGet {
		body, ctype, err := readManifest(resp)
		if err != nil {
			return upstreamError(err, regapi.CodeManifestUnknown)
		}
		d := casstore.FromBytes(body)
		f.Result = "miss"
		s.store(r.Context(), d, body)
		s.remember(up, route.Name, tag, d, body, ctype)
		s.prefetchManifest(r, up, route.Name, body)
		return writeManifest(w, r, d, body, ctype)
	}
	resp.Body.Close()
	// The upstream named the current digest: serve it from the store if we
	// have it, else fetch it.
	if d, err := casstore.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil {
		if body, err := s.readStored(d); err == nil {
			f.Result = "revalidated"
			s.remember(up, route.Name, tag, d, body, resp.Header.Get("Content-Type"))
			s.prefetchManifest(r, up, route.Name, body)
			return writeManifest(w, r, d, body, resp.Header.Get("Content-Type"))
		}
	}
	body, ctype, err := s.fetchManifest(r.Context(), up, route.Name, tag, accept)
	if err != nil {
		return upstreamError(err, regapi.CodeManifestUnknown)
	}
	d := casstore.FromBytes(body)
	if want, err := casstore.ParseDigest(resp.Header.Get("Docker-Content-Digest")); err == nil && want.Algorithm() == "sha256" && want != d {
		// The tag moved between HEAD and GET; trust what we hold.
		f.Result = "moved"
	} else {
		f.Result = "miss"
	}
	s.store(r.Context(), d, body)
	s.remember(up, route.Name, tag, d, body, ctype)
	s.prefetchManifest(r, up, route.Name, body)
	return writeManifest(w, r, d, body, ctype)
}

// serveStale serves a tag from the store while its upstream is unreachable.
func (s *Server) serveStale(w http.ResponseWriter, r *http.Request, route regapi.Route, up *MirrorUpstream, cause error) error {
	f := serve.FieldsFrom(r.Context())
	e, err := s.Mirror.Tags.Get(up.Name, route.Name, route.Reference)
	if err != nil {
		return upstreamError(cause, regapi.CodeManifestUnknown)
	}
	d, err := casstore.ParseDigest(e.Digest)
	if err != nil {
		return upstreamError(cause, regapi.CodeManifestUnknown)
	}
	body, err := s.readStored(d)
	if err != nil || !acceptable(r.Header.Values("Accept"), e.MediaType) {
		return upstreamError(cause, regapi.CodeManifestUnknown)
	}
	f.Result, f.Err = "stale", cause
	w.Header().Set(StaleHeader, "upstream unreachable; last revalidated "+e.Seen.UTC().Format(time.RFC3339))
	w.Header().Set("Warning", `110 dtrcache "Response is Stale"`)
	return writeManifest(w, r, d, body, e.MediaType)
}

// acceptable reports whether a client's Accept list admits mediaType.
func acceptable(accept []string, mediaType string) bool {
	if len(accept) == 0 {
		return true
	}
	for _, a := range accept {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
			if mt == mediaType || mt == "*/*" {
				return true
			}
		}
	}
	return false
}

func (s *Server) remember(up *MirrorUpstream, repo, tag string, d casstore.Digest, body []byte, ctype string) {
	if ctype == "" {
		ctype = detectMediaType(body)
	}
	if err := s.Mirror.Tags.Put(up.Name, repo, tag, TagEntry{Digest: d.String(), MediaType: ctype, Seen: time.Now()}); err != nil && s.Logger != nil {
		s.Logger.Sugar().Warnf("cache: remember tag %s:%s: %v", repo, tag, err)
	}
}

// fetchManifest GETs a manifest (by tag or digest) with the client's Accept.
func (s *Server) fetchManifest(ctx context.Context, up *MirrorUpstream, repo, ref string, accept []string) ([]byte, string, error) {
	resp, err := up.Client.Do(ctx, upstream.Request{
		Method: http.MethodGet, Path: "/v2/" + repo + "/manifests/" + ref,
		Header: http.Header{"Accept": accept}, Scope: upstream.Scope(repo),
	})
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", upstream.StatusErrorOf(resp)
	}
	return readManifest(resp)
}

// readManifest reads a manifest response body (bounded) and its media type.
func readManifest(resp *http.Response) ([]byte, string, error) {
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return nil, "", regapi.NewError(http.StatusBadGateway, regapi.CodeManifestInvalid, "manifest too large")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, "", err
	}
	if len(body) > MaxManifestSize {
		return nil, "", regapi.NewError(http.StatusBadGateway, regapi.CodeManifestInvalid, "manifest too large")
	}
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return body, ctype, nil
}

func verify(d casstore.Digest, body []byte) error {
	h := d.NewHash()
	h.Write(body)
	if fmt.Sprintf("%x", h.Sum(nil)) != d.Hex() {
		return fmt.Errorf("%w: manifest %s", casstore.ErrDigestMismatch, d)
	}
	return nil
}

// store keeps a verified manifest in the mirror's store (best effort).
func (s *Server) store(ctx context.Context, d casstore.Digest, body []byte) {
	b, _, err := s.Mirror.Store.Fill(context.WithoutCancel(ctx), d, casstore.BytesSource(body), casstore.FillOptions{})
	if err == nil {
		b.Close()
	}
}

// readStored returns a complete manifest from the mirror's store.
func (s *Server) readStored(d casstore.Digest) ([]byte, error) {
	b, err := s.Mirror.Store.Open(d)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if b.Size() > MaxManifestSize {
		return nil, errors.New("cache: stored object too large for a manifest")
	}
	return io.ReadAll(b)
}

// prefetchManifest starts background fills of a manifest's blobs the
// store does not hold (GET only: a HEAD does not announce a pull).
func (s *Server) prefetchManifest(r *http.Request, up *MirrorUpstream, repo string, body []byte) {
	s.Mirror.markManifest(up, repo, body)
	if r.Method != http.MethodGet || !s.prefetchEnabled() {
		return
	}
	var jobs []prefetchJob
	for _, b := range regapi.ManifestBlobSizes(body) {
		d := b.Digest
		if _, err := s.Mirror.Store.Stat(d); err == nil {
			// Stored: nothing to fetch. (A warm pull's manifest would
			// otherwise queue every blob, and a worker open each file
			// only to find it is a hit.)
			continue
		}
		jobs = append(jobs, prefetchJob{store: s.Mirror.Store, client: up.Client, repo: repo, d: d, size: b.Size})
	}
	s.enqueue(jobs)
}

// writeManifest serves a manifest body.
func writeManifest(w http.ResponseWriter, r *http.Request, d casstore.Digest, body []byte, ctype string) error {
	if ctype == "" {
		ctype = detectMediaType(body)
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if regapi.NotModified(r, d.String()) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return nil
}

// detectMediaType derives a manifest's media type from its content.
func detectMediaType(body []byte) string {
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if json.Unmarshal(body, &m) != nil {
		return "application/octet-stream"
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.SchemaVersion == 1 || len(m.FSLayers) > 0:
		return mediaDockerSchema1
	case len(m.Manifests) > 0:
		return v1.MediaTypeImageIndex
	case len(m.Config) > 0:
		return v1.MediaTypeImageManifest
	}
	return "application/octet-stream"
}

// passThrough forwards tags/list and _catalog to the mirror upstream.
func (s *Server) passThrough(w http.ResponseWriter, r *http.Request, route regapi.Route) error {
	if s.Mirror == nil {
		return regapi.NewError(http.StatusNotFound, regapi.CodeUnsupported, "not served by this cache")
	}
	up, err := s.pickMirror(r)
	if err != nil {
		return err
	}
	serve.FieldsFrom(r.Context()).Upstream = up.Name
	q := r.URL.Query()
	q.Del("ns")
	path := r.URL.EscapedPath()
	if enc := q.Encode(); enc != "" {
		path += "?" + enc
	}
	scope := ""
	if route.Name != "" {
		scope = upstream.Scope(route.Name)
	}
	resp, err := up.Client.Do(r.Context(), upstream.Request{Method: r.Method, Path: path, Scope: scope})
	if err != nil {
		return upstreamError(err, regapi.CodeNameUnknown)
	}
	defer resp.Body.Close()
	copyHeaders(w.Header(), resp.Header, "Content-Type", "Content-Length", "WWW-Authenticate")
	if link := resp.Header.Get("Link"); link != "" {
		w.Header().Set("Link", withNS(link, r.URL.Query().Get("ns")))
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%w: %w", regapi.ErrAborted, err)
	}
	return nil
}

// withNS keeps ?ns= on a pagination Link (`<url>; rel="next"`), so the
// next page goes to the same mirrored registry.
func withNS(link, ns string) string {
	if ns == "" {
		return link
	}
	i, j := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
	if i < 0 || j < i {
		return link
	}
	u, err := url.Parse(link[i+1 : j])
	if err != nil {
		return link
	}
	q := u.Query()
	q.Set("ns", ns)
	u.RawQuery = q.Encode()
	return link[:i+1] + u.String() + link[j:]
}
