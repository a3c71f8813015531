package forward

import (
	"net/http"
	"strconv"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// A manifest vouches for what it lists. A 200 for
// GET /v2/<repo>/manifests/<ref>, answered by the registry to a client's
// credentials, proves that this credential may pull <repo>; and a
// registry accepts a manifest into a repository only when the blobs and
// child manifests it lists are in that repository (distribution refuses
// the push with MANIFEST_BLOB_UNKNOWN). So the digests the manifest lists
// (an image's config and layers, an index's manifests) are remembered as
// authorized for (credential, registry, repository, digest), exactly as a
// HEAD's yes would be and for the same TTL, and the blob GETs of the pull
// that follows need no HEAD. Blobs no manifest vouched for keep their
// HEAD. A registry that serves manifests listing blobs outside the
// repository breaks the assumption: Options.NoManifestVouching turns this
// off.

// manifestTap passes a manifest answer through to the client and keeps a
// copy of its body, so the blobs it lists are vouched for before the
// client has its last byte (and can ask for the first blob).
type manifestTap struct {
	http.ResponseWriter
	status  int
	want    int64 // Content-Length, -1 if none
	body    []byte
	skip    bool // not a 200 of plain bytes, or too large
	vouched bool
	vouch   func(body []byte)
}

func newManifestTap(w http.ResponseWriter, vouch func([]byte)) *manifestTap {
	return &manifestTap{ResponseWriter: w, want: -1, vouch: vouch}
}

func (m *manifestTap) WriteHeader(code int) {
	if m.status == 0 {
		m.status = code
		h := m.Header()
		if code != http.StatusOK || (h.Get("Content-Encoding") != "" && h.Get("Content-Encoding") != "identity") {
			m.skip = true
		}
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
			m.want = n
			if n > regapi.MaxManifestSize {
				m.skip = true
			}
		}
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *manifestTap) Write(p []byte) (int, error) {
	if m.status == 0 {
		m.WriteHeader(http.StatusOK)
	}
	if !m.skip && !m.vouched {
		if len(m.body)+len(p) > regapi.MaxManifestSize {
			m.skip, m.body = true, nil
		} else {
			m.body = append(m.body, p...)
			if int64(len(m.body)) == m.want {
				m.done()
			}
		}
	}
	return m.ResponseWriter.Write(p)
}

// finish vouches for a body without Content-Length once it has ended.
func (m *manifestTap) finish() {
	if m.want < 0 {
		m.done()
	}
}

func (m *manifestTap) done() {
	if m.skip || m.vouched || m.status != http.StatusOK {
		return
	}
	m.vouched = true
	m.vouch(m.body)
}

func (m *manifestTap) Flush() { http.NewResponseController(m.ResponseWriter).Flush() }

func (m *manifestTap) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// manifestRefs returns the digests a manifest lists: an image manifest's
// config and layers (foreign layers left out), an index's manifests.
func manifestRefs(body []byte) []casstore.Digest { return regapi.ManifestRefs(body) }

// forwardManifest forwards a manifest GET and, when the registry answers
// 200, remembers the digests the manifest lists as authorized for r's
// credentials in that repository.
func (p *Proxy) forwardManifest(w http.ResponseWriter, r *http.Request, t target, route regapi.Route) {
	cred, host := credential(r), t.String()
	tap := newManifestTap(w, func(body []byte) {
		refs := manifestRefs(body)
		for _, d := range refs {
			p.auth.vouch(authKey{cred: cred, host: host, repo: route.Name, digest: d.String()})
		}
		p.metrics.vouched(len(refs))
	})
	p.forward(tap, r)
	tap.finish()
}
