package forward

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// serveIntercepted answers a request for an intercepted registry: blob
// reads from the store, everything else forwarded unchanged.
func (p *Proxy) serveIntercepted(w http.ResponseWriter, r *http.Request, t target) {
	route, err := regapi.ParseRoute(r.URL.EscapedPath())
	if err == nil && route.Kind == regapi.KindBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		p.serveBlob(w, r, t, route)
		return
	}
	if err == nil && route.Kind == regapi.KindManifest && r.Method == http.MethodGet && p.vouching {
		p.forwardManifest(w, r, t, route)
		return
	}
	p.forward(w, r)
	if r.Method == http.MethodDelete && route.Name != "" {
		// After the registry acted: a blob deleted from a repository must
		// not be served through it from the store.
		p.auth.forget(t.String(), route.Name)
	}
}

// forward sends r to the registry unchanged and relays the answer
// (goproxy: the transport, header handling, trailers).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	fieldsFrom(r.Context()).result = "forward"
	p.gp.ServeHTTP(flushWriter{w}, r)
}

// flushWriter flushes after every write. goproxy copies a forwarded body
// with io.Copy and flushes only for event streams, so the first bytes of
// a streamed answer (a chunked body the registry writes piece by piece)
// would wait in http.Server's buffer; this passes each piece on as it
// comes. It hides io.ReaderFrom on purpose, so io.Copy calls Write.
type flushWriter struct{ http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.ResponseWriter.Write(p)
	if err == nil {
		err = http.NewResponseController(f.ResponseWriter).Flush()
	}
	return n, err
}

func (f flushWriter) Flush() { http.NewResponseController(f.ResponseWriter).Flush() }

func (f flushWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// serveBlob answers GET or HEAD of a blob. The registry authorizes first
// (a HEAD with the client's credentials, or a positive answer remembered
// for this credential, repository and digest: a HEAD's, or a manifest's
// that listed the digest); anything but a yes is
// forwarded so the client gets the registry's own answer. Then: a hit is
// served from the store; a miss joins or starts the one fill of the
// digest, made with the credentials of the client that starts it.
func (p *Proxy) serveBlob(w http.ResponseWriter, r *http.Request, t target, route regapi.Route) {
	f := fieldsFrom(r.Context())
	d := route.Digest
	f.repo, f.digest = route.Name, d.String()
	key := authKey{cred: credential(r), host: t.String(), repo: route.Name, digest: d.String()}
	if how, ok := p.auth.allowed(key); ok {
		f.auth = how
	} else {
		ok, err := p.probe(r, t, route)
		switch {
		case err != nil:
			f.auth, f.err = "error", err
		case !ok:
			f.auth = "denied"
		default:
			f.auth = "allowed"
			p.auth.remember(key)
		}
	}
	p.metrics.authCheck(f.auth)
	switch f.auth {
	case "error":
		f.result = "error"
		regapi.WriteError(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "registry unreachable", f.err))
		return
	case "denied":
		p.forward(w, r)
		return
	}
	if regapi.NotModified(r, d.String()) {
		f.result = "not_modified"
		regapi.BlobHeaders(w.Header(), d.String(), "")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	var blob *casstore.Blob
	var err error
	if r.Method == http.MethodHead {
		// A HEAD never starts a fill; on a miss the registry answers it.
		blob, err = p.store.Open(d)
		if errors.Is(err, casstore.ErrNotFound) {
			p.forward(w, r)
			return
		}
		f.result = "hit"
	} else {
		var res casstore.Result
		blob, res, err = p.store.Fill(r.Context(), d, p.source(r, t, route), p.fill)
		f.result = res.String()
	}
	if err != nil {
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status < 500 || errors.Is(err, casstore.ErrTooLarge) {
			// The registry refused the GET after all, or the store will not
			// hold the blob: the client gets the registry's own answer.
			f.err = err
			p.forward(w, r)
			return
		}
		f.result, f.err = "error", err
		regapi.WriteError(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, "blob not available from the registry", err))
		return
	}
	defer blob.Close()
	source := "store"
	if blob.File() == nil {
		source = "fill"
	}
	n, err := regapi.ServeBlob(w, r, d.String(), blob, "")
	p.metrics.sent(source, n)
	if errors.Is(err, regapi.ErrAborted) {
		f.err = err
		panic(http.ErrAbortHandler) // a cut body must never look complete
	}
}

// probe asks the registry whether r's credentials may read the blob: a
// HEAD with those credentials, redirects not followed. A 2xx is a yes, and
// so is a 302, 303 or 307 to another host (the registry sending the
// client to its object storage); anything else — 401, 404, a redirect back
// to the registry such as http→https or a login page on the same host —
// is a no. err is set when the registry could not be asked.
func (p *Proxy) probe(r *http.Request, t target, route regapi.Route) (bool, error) {
	ctx, cancel := context.WithTimeout(r.Context(), p.probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, blobURL(r, route), nil)
	if err != nil {
		return false, err
	}
	req.Header = credentialsOf(r)
	req.Host = r.Host
	resp, err := p.probes.Do(req)
	if err != nil {
		return false, upstream.RedactURL(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect:
		loc, err := resp.Location()
		return err == nil && loc.Host != "" && loc.Host != req.URL.Host && loc.Hostname() != req.URL.Hostname(), nil
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 300, nil
}

// source returns the fill source for a blob: GETs with r's credentials,
// from the blob mirror first when there is one.
func (p *Proxy) source(r *http.Request, t target, route regapi.Route) casstore.Source {
	direct := &blobSource{client: p.fetches, url: blobURL(r, route), header: credentialsOf(r)}
	if p.mirror == nil {
		return direct
	}
	return &mirrorSource{p: p, url: p.mirror.blobURL(t, route), fallback: direct, digest: route.Digest.String()}
}

// blobURL is the registry URL of the blob r asks for (r.URL is absolute).
func blobURL(r *http.Request, route regapi.Route) string {
	u := *r.URL
	u.Path, u.RawPath = "/v2/"+route.Name+"/blobs/"+route.Digest.String(), ""
	u.User, u.Fragment = nil, ""
	return u.String()
}

const defaultProbeTimeout = 30 * time.Second
