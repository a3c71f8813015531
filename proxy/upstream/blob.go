package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// Scope returns the token scope for pulling repo.
func Scope(repo string) string { return "repository:" + repo + ":pull" }

// BlobSource returns a casstore.Source that fetches d from repo, sending
// header (e.g. the forwarded user token) with every request.
func (c *Client) BlobSource(repo string, d casstore.Digest, header http.Header) casstore.Source {
	return casstore.SourceFunc(func(ctx context.Context, off, length int64) (casstore.Stream, error) {
		return c.FetchBlob(ctx, repo, d, off, length, header)
	})
}

// FetchBlob GETs bytes [off, off+length) of a blob (length < 0: to the
// end). A 200 to a range request is accepted (the skipped prefix is
// discarded). Not found, unauthorized and similar answers are permanent
// errors; 5xx, 429 and connection errors are not.
func (c *Client) FetchBlob(ctx context.Context, repo string, d casstore.Digest, off, length int64, header http.Header) (casstore.Stream, error) {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if rng := regapi.RangeHeader(off, length); rng != "" {
		h.Set("Range", rng)
	}
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/v2/" + repo + "/blobs/" + d.String(), Header: h, Scope: Scope(repo)})
	if err != nil {
		return casstore.Stream{}, err
	}
	return StreamOf(resp, off)
}

// StreamOf turns the response to a blob GET for the bytes from off into a
// casstore.Stream: a 200 (the skipped prefix is read and discarded) or a
// 206 whose Content-Range starts at off. Any other status becomes a
// *StatusError, wrapped with casstore.Permanent unless retrying may help
// (5xx, 429, 408). On error the body is closed. The forward proxy uses it
// for fills made with a client's own credentials.
func StreamOf(resp *http.Response, off int64) (casstore.Stream, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		size := resp.ContentLength
		if off > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				resp.Body.Close()
				return casstore.Stream{}, fmt.Errorf("upstream ignored the range; skipping %d bytes: %w", off, err)
			}
		}
		n := int64(-1)
		if size >= 0 {
			n = size - off
		}
		return casstore.Stream{Body: resp.Body, Size: size, Len: n}, nil
	case http.StatusPartialContent:
		start, end, total, ok := regapi.ParseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			resp.Body.Close()
			return casstore.Stream{}, casstore.Permanent(fmt.Errorf("upstream sent Content-Range %q for offset %d", resp.Header.Get("Content-Range"), off))
		}
		return casstore.Stream{Body: resp.Body, Size: total, Len: end - start + 1}, nil
	}
	serr := StatusErrorOf(resp)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return casstore.Stream{}, serr
	}
	return casstore.Stream{}, casstore.Permanent(serr)
}

// StatBlob HEADs a blob and returns its size.
func (c *Client) StatBlob(ctx context.Context, repo string, d casstore.Digest, header http.Header) (int64, error) {
	resp, err := c.Do(ctx, Request{Method: http.MethodHead, Path: "/v2/" + repo + "/blobs/" + d.String(), Header: header, Scope: Scope(repo)})
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, StatusErrorOf(resp)
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}
