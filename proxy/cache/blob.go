package cache

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
)

// serveBlob answers GET/HEAD for a blob: from the store, by joining a
// running fill, or by starting one.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, route regapi.Route) error {
	f := serve.FieldsFrom(r.Context())
	a, err := s.authorize(r, route)
	if err != nil {
		s.Metrics.blob(a.mode, "denied")
		return err
	}
	d := route.Digest
	if regapi.NotModified(r, d.String()) {
		f.Result = "not_modified"
		s.Metrics.blob(a.mode, f.Result)
		regapi.BlobHeaders(w.Header(), d.String(), "")
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if r.Method == http.MethodHead {
		return s.headBlob(w, r, route, a)
	}
	blob, res, err := a.store.Fill(r.Context(), d, a.client.BlobSource(route.Name, d, a.header), s.Fill)
	if err != nil {
		s.Metrics.blob(a.mode, "error")
		return upstreamError(err, regapi.CodeBlobUnknown)
	}
	defer blob.Close()
	f.Result = res.String()
	s.Metrics.blob(a.mode, f.Result)
	source := "store"
	if blob.File() == nil {
		source = "fill"
	}
	n, err := regapi.ServeBlob(w, r, d.String(), blob, "")
	s.Metrics.bytes(a.mode, source, n)
	return err
}

// headBlob answers HEAD from the store, or asks the upstream on a miss
// without starting a fill.
func (s *Server) headBlob(w http.ResponseWriter, r *http.Request, route regapi.Route, a access) error {
	f := serve.FieldsFrom(r.Context())
	d := route.Digest
	size := int64(-1)
	if info, err := a.store.Stat(d); err == nil {
		f.Result, size = "hit", info.Size
	} else if !errors.Is(err, casstore.ErrNotFound) {
		return err
	} else {
		n, err := a.client.StatBlob(r.Context(), route.Name, d, a.header)
		if err != nil {
			s.Metrics.blob(a.mode, "error")
			return upstreamError(err, regapi.CodeBlobUnknown)
		}
		f.Result, size = "upstream_head", n
	}
	s.Metrics.blob(a.mode, f.Result)
	regapi.BlobHeaders(w.Header(), d.String(), "")
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
