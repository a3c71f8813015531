package cache

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/proxy/upstream"
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
	// A mirror upstream with CheckRepository confirms the repository of
	// content the store holds or is filling (links.go); a cold blob is
	// confirmed by the upstream request that fetches it.
	// (The store is asked only when there is something to confirm: a stat
	// per blob GET otherwise, for nothing.)
	check := a.up != nil && !s.Mirror.linked(a.up, route.Name, d)
	if check {
		if _, err := a.store.Stat(d); err == nil || a.store.Filling(d) {
			if err := s.confirm(r.Context(), a.up, route.Name, "blobs", d); err != nil {
				s.Metrics.blob(a.mode, "denied")
				return err
			}
			check = false
		}
	}
	if regapi.NotModified(r, d.String()) {
		f.Result = "not_modified"
		s.Metrics.blob(a.mode, f.Result)
		regapi.BlobHeaders(w.Header(), d.String(), "")
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if r.Method == http.MethodHead {
		return s.headBlob(w, r, route, a, check)
	}
	if start, length, ok := regapi.ParseRangeStart(r.Header.Get("Range")); ok && start >= directRangeMin && !a.store.Filling(d) {
		// With a fill running, the range joins it instead: a resumed
		// download behind or near the fill's front reads what the fill
		// writes, and the store sends only a range far ahead of it
		// upstream on its own (casstore.Options.FarAhead).
		if _, err := a.store.Stat(d); errors.Is(err, casstore.ErrNotFound) {
			if handled, err := s.serveRangeDirect(w, r, route, a, start, length); handled {
				return err
			}
		}
	}
	t0 := time.Now()
	blob, res, err := a.store.Fill(r.Context(), d, a.client.BlobSource(route.Name, d, a.header), s.Fill)
	if err != nil {
		s.Metrics.blob(a.mode, "error")
		return upstreamError(err, regapi.CodeBlobUnknown)
	}
	if res == casstore.Miss {
		s.judgeLink(a.client, a.store, blob, time.Since(t0))
	}
	defer blob.Close()
	defer s.await(a.store, d, blob)()
	switch {
	case res == casstore.Miss && a.up != nil:
		s.Mirror.markLinked(a.up, route.Name, d) // its first stream came from route.Name
	case check:
		// Stored or joined since the check above: confirm now.
		if err := s.confirm(r.Context(), a.up, route.Name, "blobs", d); err != nil {
			s.Metrics.blob(a.mode, "denied")
			return err
		}
	}
	f.Result = res.String()
	s.Metrics.blob(a.mode, f.Result)
	w.Header().Set(CacheStatusHeader, cacheStatus(res))
	source := "store"
	if blob.File() == nil {
		source = "fill"
	}
	n, err := regapi.ServeBlob(w, r, d.String(), blob, "")
	s.Metrics.bytes(a.mode, source, n)
	return err
}

// headBlob answers HEAD from the store, or asks the upstream on a miss
// without starting a fill. With "Cache-Control: only-if-cached" (RFC 9111
// 5.2.1.7) a miss is a 504 instead: the origin's console asks so which
// blobs the store holds. check says the repository must still be
// confirmed for a stored blob.
func (s *Server) headBlob(w http.ResponseWriter, r *http.Request, route regapi.Route, a access, check bool) error {
	f := serve.FieldsFrom(r.Context())
	d := route.Digest
	size := int64(-1)
	if info, err := a.store.Stat(d); err == nil {
		if check {
			if err := s.confirm(r.Context(), a.up, route.Name, "blobs", d); err != nil {
				s.Metrics.blob(a.mode, "denied")
				return err
			}
		}
		f.Result, size = "hit", info.Size
	} else if !errors.Is(err, casstore.ErrNotFound) {
		return err
	} else if onlyIfCached(r) {
		f.Result = "not_cached"
		s.Metrics.blob(a.mode, f.Result)
		return regapi.NewError(http.StatusGatewayTimeout, regapi.CodeBlobUnknown, "blob not in this cache's store (only-if-cached)")
	} else {
		n, err := a.client.StatBlob(r.Context(), route.Name, d, a.header)
		if err != nil {
			s.Metrics.blob(a.mode, "error")
			return upstreamError(err, regapi.CodeBlobUnknown)
		}
		if a.up != nil {
			s.Mirror.markLinked(a.up, route.Name, d)
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

// onlyIfCached reports whether r asks for an answer from the store only.
func onlyIfCached(r *http.Request) bool {
	for _, v := range r.Header.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), "only-if-cached") {
				return true
			}
		}
	}
	return false
}

// directRangeMin is how far into an uncached blob, with no fill running, a
// range must start to be answered straight from upstream (while the whole
// blob fills in the background) rather than from the fill it would start.
const directRangeMin = 4 << 20

// serveRangeDirect answers a range far into an uncached blob with its own
// upstream range request: the first byte arrives after one upstream round
// trip instead of after the fill's first response. The blob's fill starts
// in the background so the next request finds it. It reports false (and
// has written nothing) when the fill path should answer instead: the
// upstream did not give the blob's size, or refused the range.
func (s *Server) serveRangeDirect(w http.ResponseWriter, r *http.Request, route regapi.Route, a access, start, length int64) (bool, error) {
	f := serve.FieldsFrom(r.Context())
	d := route.Digest
	st, err := a.client.FetchBlob(r.Context(), route.Name, d, start, length, a.header)
	var se *upstream.StatusError
	if errors.As(err, &se) && se.Status == http.StatusRequestedRangeNotSatisfiable {
		return false, nil // the fill learns the size and answers 416 itself
	}
	if err != nil {
		s.Metrics.blob(a.mode, "error")
		return true, upstreamError(err, regapi.CodeBlobUnknown)
	}
	defer st.Body.Close()
	if st.Size < 0 {
		return false, nil
	}
	if a.up != nil {
		s.Mirror.markLinked(a.up, route.Name, d)
	}
	s.fillInBackground(prefetchJob{store: a.store, client: a.client, repo: route.Name, d: d, header: a.header, size: -1})
	n := st.Len
	if length >= 0 && (n < 0 || n > length) {
		n = length
	}
	if n < 0 {
		n = st.Size - start
	}
	f.Result = "direct_range"
	s.Metrics.blob(a.mode, f.Result)
	h := w.Header()
	h.Set(CacheStatusHeader, "dtrcache; fwd=partial")
	regapi.BlobHeaders(h, d.String(), "")
	h.Set("Content-Range", regapi.ByteRange{Start: start, Length: n}.ContentRange(st.Size))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	written, err := io.Copy(w, io.LimitReader(st.Body, n))
	s.Metrics.bytes(a.mode, "upstream", written)
	if err != nil || written != n {
		return true, fmt.Errorf("%w: %d of %d bytes: %w", regapi.ErrAborted, written, n, errOr(err, io.ErrUnexpectedEOF))
	}
	return true, nil
}

// CacheStatusHeader tells a client how the cache answered a blob GET
// (RFC 9211): "dtrcache; hit" from the store, "dtrcache; fwd=miss;
// stored" when the request started the fill, "dtrcache; fwd=miss;
// collapsed" when it joined a running one, "dtrcache; fwd=partial" for a
// range fetched upstream on its own. dtrcache warm reads it to tell the
// bytes the cache filled from those it had.
const CacheStatusHeader = "Cache-Status"

func cacheStatus(res casstore.Result) string {
	switch res {
	case casstore.Hit:
		return "dtrcache; hit"
	case casstore.Joined:
		return "dtrcache; fwd=miss; collapsed"
	}
	return "dtrcache; fwd=miss; stored"
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
