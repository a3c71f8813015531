package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// smallBlob is the size up to which a blob goes in one PUT (two requests:
// POST, PUT); larger ones are POST, PATCH, PUT so that a cut transfer can
// resume from what the registry stored.
const smallBlob = 1 << 20

// maxRetryWait is the longest Retry-After the engine waits for within a
// copy; a registry asking for more fails the copy (transient), and the job
// runner tries later.
const maxRetryWait = 30 * time.Second

// copyBlob makes d present in the target repository: skipped if there,
// mounted within one registry, else streamed from the source.
func (c *copier) copyBlob(ctx context.Context, d Descriptor) error {
	if !validDigest(d.Digest) {
		return errf(ErrInvalidManifest, "blob digest %q", d.Digest)
	}
	if c.src.Client == c.dst.Client && c.src.Repository == c.dst.Repository {
		// Retagging within one repository: the blobs are there.
		c.skipped(d)
		return nil
	}
	idx := c.opt.Blobs
	if idx == nil {
		_, err := c.placeBlob(ctx, d, "")
		return err
	}
	key := c.dst.Client.URLs()[0] + " " + d.Digest
	known, err := idx.acquire(ctx, key)
	if err != nil {
		return err
	}
	placed := ""
	defer func() { idx.release(key, placed) }()
	placed, err = c.placeBlob(ctx, d, known)
	if known != "" && placed == "" {
		idx.forget(key)
	}
	return err
}

// placeBlob makes d present in the target repository and returns it ("" on
// error). known, if set, is another target repository believed to hold d:
// it is mounted from there.
func (c *copier) placeBlob(ctx context.Context, d Descriptor, known string) (string, error) {
	if known != "" && known != c.dst.Repository {
		loc, mounted, err := c.mountBlob(ctx, d, known)
		switch {
		case err != nil && !refused(err):
			return "", err
		case mounted:
			c.blobsMounted.Add(1)
			c.progress.bytesSkipped.Add(d.Size)
			return c.dst.Repository, nil
		case loc != "":
			return c.dst.Repository, c.upload(ctx, d, loc, true)
		}
	}
	if c.mount {
		loc, mounted, err := c.mountBlob(ctx, d, c.src.Repository)
		if err != nil {
			return "", err
		}
		if mounted {
			c.blobsMounted.Add(1)
			c.progress.bytesSkipped.Add(d.Size)
			return c.dst.Repository, nil
		}
		if loc != "" { // refused: upload in the session the registry opened
			return c.dst.Repository, c.upload(ctx, d, loc, true)
		}
	} else {
		ok, err := hasBlob(ctx, c.dst.Client, c.dst.Repository, d.Digest)
		if err != nil {
			return "", err
		}
		if ok {
			c.skipped(d)
			return c.dst.Repository, nil
		}
	}
	location := ""
	if cp, ok := c.resume[d.Digest]; ok {
		location = cp.Location
	}
	if err := c.upload(ctx, d, location, false); err != nil {
		return "", err
	}
	return c.dst.Repository, nil
}

// refused reports whether a mount attempt was turned down for want of
// rights on the repository mounted from (the copy then uploads).
func refused(err error) bool {
	var se *upstream.StatusError
	return errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden || se.Status == http.StatusNotFound)
}

// hasBlob HEADs a blob.
func hasBlob(ctx context.Context, cl *upstream.Client, repo, digest string) (bool, error) {
	req := upstream.Request{Method: http.MethodHead, Path: "/v2/" + repo + "/blobs/" + digest, Scope: upstream.PushScope(repo)}
	resp, err := cl.Do(ctx, req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, headError(ctx, cl, req, resp)
}

func (c *copier) skipped(d Descriptor) {
	c.blobsSkipped.Add(1)
	c.progress.bytesSkipped.Add(d.Size)
}

// mountBlob asks the target to link d from its repository from. A 201 means it is there
// (mounted now or before); a 202 means the registry refused and opened an
// upload session instead, whose location is returned.
func (c *copier) mountBlob(ctx context.Context, d Descriptor, from string) (location string, mounted bool, err error) {
	q := url.Values{"mount": {d.Digest}, "from": {from}}
	resp, err := c.dst.Client.Do(ctx, upstream.Request{
		Method: http.MethodPost, Path: "/v2/" + c.dst.Repository + "/blobs/uploads/?" + q.Encode(),
		Scope: upstream.MountScope(c.dst.Repository, from),
		Body:  noBody, ContentLength: 0,
	})
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		return "", true, nil
	case http.StatusAccepted:
		loc, err := upstream.Location(resp)
		if err != nil || loc == "" {
			return "", false, errors.Join(errors.New("mount refused, and the upload session has no Location"), err)
		}
		c.log.Debug("mount refused; copying", zap.String("digest", d.Digest))
		return loc, false, nil
	}
	return "", false, statusErr(resp)
}

func noBody() (io.ReadCloser, error) { return http.NoBody, nil }

// upload streams d from the source into the target, in the upload session
// at location if there is one (fresh: just opened, nothing in it). Transient failures resume where the
// target's upload stands, up to Retries times.
func (c *copier) upload(ctx context.Context, d Descriptor, location string, fresh bool) error {
	attempt, restarted := 0, false
	for {
		var err error
		location, err = c.uploadOnce(ctx, d, location, fresh, attempt > 0)
		fresh = false
		if err == nil {
			c.blobsCopied.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if errors.Is(err, ErrDigestMismatch) && attempt > 0 && !restarted {
			// A resumed upload that does not add up (the registry kept
			// bytes it had not acknowledged): once more from zero.
			c.log.Debug("resumed upload failed its digest; starting over", zap.String("digest", d.Digest), zap.Error(err))
			c.cancelUpload(ctx, location)
			location, restarted = "", true
			continue
		}
		transient, wait := IsTransient(err)
		if !transient || attempt >= c.opt.Retries || wait > maxRetryWait {
			return err
		}
		attempt++
		c.resumes.Add(1)
		delay := backoff(attempt, wait)
		c.log.Debug("blob transfer failed; resuming", zap.String("digest", d.Digest), zap.Int("attempt", attempt), zap.Duration("delay", delay), zap.Error(err))
		if err := c.sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// backoff is the wait before retry attempt n: exponential from 100 ms with
// jitter, at most 5 s, or the registry's Retry-After if longer.
func backoff(n int, retryAfter time.Duration) time.Duration {
	d := min(100*time.Millisecond<<min(n-1, 6), 5*time.Second)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

func (c *copier) sleep(ctx context.Context, d time.Duration) error {
	var ch <-chan time.Time
	if c.opt.sleep != nil {
		ch = c.opt.sleep(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		ch = t.C
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// uploadOnce is one attempt at d: it opens a session (or, resuming, asks
// the registry how much of location it has), streams the rest from the
// source, and commits. It returns the session's latest location, so a
// failed attempt can be resumed.
func (c *copier) uploadOnce(ctx context.Context, d Descriptor, location string, fresh, resuming bool) (string, error) {
	var offset int64
	if location != "" && !fresh {
		off, loc, err := c.uploadStatus(ctx, location)
		switch {
		case errors.Is(err, errUploadGone):
			c.log.Debug("upload session gone; starting over", zap.String("digest", d.Digest))
			location = ""
		case err != nil:
			return location, err
		case off > d.Size:
			c.cancelUpload(ctx, loc)
			location = ""
		default:
			offset, location = off, loc
		}
	}
	if location == "" {
		loc, err := c.startUpload(ctx)
		if err != nil {
			return "", err
		}
		location, fresh = loc, true
	}
	if fresh {
		c.checkpoint(d, location, 0)
	}
	if offset == d.Size {
		return c.commit(ctx, d, location, nil, 0)
	}
	cd, err := casstore.ParseDigest(d.Digest)
	if err != nil {
		return location, permanent(err)
	}
	st, err := c.src.Client.FetchBlob(ctx, c.src.Repository, cd, offset, -1, nil)
	if err != nil {
		return location, wrap("read blob", c.src.at(d.Digest), err)
	}
	defer st.Body.Close()
	if st.Size >= 0 && st.Size != d.Size {
		return location, errf(ErrSizeMismatch, "the source's blob has %d bytes, its descriptor says %d", st.Size, d.Size)
	}
	body := &blobReader{c: c, d: d, r: st.Body, sent: offset, lastCP: offset, location: &location, ctx: ctx}
	if offset == 0 && d.Size <= smallBlob && !resuming {
		return c.commit(ctx, d, location, body, d.Size)
	}
	start, chunk := offset, d.Size-offset // start > 0: resumed at the registry's count
	if c.opt.ChunkSize > 0 {
		chunk = c.opt.ChunkSize
	}
	for offset < d.Size {
		n := min(chunk, d.Size-offset)
		loc, stored, err := c.patch(ctx, location, body, offset, n, offset == start && start > 0)
		if err != nil {
			return location, err
		}
		location, offset = loc, stored
		c.checkpoint(d, location, offset)
	}
	return c.commit(ctx, d, location, nil, 0)
}

// errUploadGone is an upload session the registry no longer knows.
var errUploadGone = errors.New("upload session unknown")

// startUpload opens an upload session in the target repository.
func (c *copier) startUpload(ctx context.Context) (string, error) {
	resp, err := c.dst.Client.Do(ctx, upstream.Request{
		Method: http.MethodPost, Path: "/v2/" + c.dst.Repository + "/blobs/uploads/",
		Scope: upstream.PushScope(c.dst.Repository), Body: noBody,
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", statusErr(resp)
	}
	loc, err := upstream.Location(resp)
	if err != nil || loc == "" {
		return "", errors.Join(errors.New("upload session without a Location"), err)
	}
	return loc, nil
}

// uploadStatus asks how many bytes of the upload at location the registry
// has (GET → 204, Range: 0-<last byte>) and returns the session's fresh
// location.
func (c *copier) uploadStatus(ctx context.Context, location string) (int64, string, error) {
	resp, err := c.dst.Client.Do(ctx, upstream.Request{Method: http.MethodGet, URL: location, Scope: upstream.PushScope(c.dst.Repository)})
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
	case http.StatusNotFound:
		return 0, "", errUploadGone
	default:
		se := upstream.StatusErrorOf(resp)
		switch {
		case transientStatus(se.Status):
			return 0, "", se
		case se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden:
			return 0, "", permanent(se)
		}
		// BLOB_UPLOAD_UNKNOWN, BLOB_UPLOAD_INVALID, or a registry that
		// cannot tell an upload's status: start over.
		return 0, "", errUploadGone
	}
	stored, ok := parseUploadRange(resp.Header.Get("Range"))
	if !ok {
		return 0, "", errUploadGone // no usable offset: start over
	}
	loc, err := upstream.Location(resp)
	if err != nil {
		return 0, "", err
	}
	if loc == "" {
		loc = location
	}
	return stored, loc, nil
}

// parseUploadRange reads an upload's "Range: 0-<last>" (distribution's
// form, also "bytes=0-<last>") as the count of bytes stored. "0-0" is
// ambiguous (nothing, or one byte) and is read as nothing; resuming then
// fails its Content-Range check and the upload starts over.
func parseUploadRange(h string) (int64, bool) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "bytes=")
	if h == "" {
		return 0, true
	}
	a, b, ok := strings.Cut(h, "-")
	if !ok || a != "0" {
		return 0, false
	}
	last, err := strconv.ParseInt(b, 10, 64)
	if err != nil || last < 0 || last == math.MaxInt64 {
		return 0, false
	}
	if last == 0 {
		return 0, true
	}
	return last + 1, true
}

// patch sends n bytes of body as the upload's bytes [offset, offset+n) and
// returns the new location and the count the registry reports stored.
func (c *copier) patch(ctx context.Context, location string, body *blobReader, offset, n int64, resumed bool) (string, int64, error) {
	used := false
	h := http.Header{
		"Content-Type":  {"application/octet-stream"},
		"Content-Range": {strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(offset+n-1, 10)},
	}
	if resumed {
		// A resumed range may be refused (the registry's count moved): let
		// it say so before the body goes.
		h.Set("Expect", "100-continue")
	}
	resp, err := c.dst.Client.Do(ctx, upstream.Request{
		Method: http.MethodPatch, URL: location, Scope: upstream.PushScope(c.dst.Repository),
		Header: h,
		Body: func() (io.ReadCloser, error) {
			if used { // a challenge in the middle of a stream: resume instead
				return nil, errors.New("upload body cannot be sent twice")
			}
			used = true
			return io.NopCloser(io.LimitReader(body, n)), nil
		},
		ContentLength: n,
	})
	if err != nil {
		return location, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		// The registry's count moved since it was asked (a cut request it
		// was still writing): ask again and resume from there.
		return location, 0, &retryableError{fmt.Errorf("the registry refused the upload range: %w", upstream.StatusErrorOf(resp))}
	}
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent {
		return location, 0, statusErr(resp)
	}
	loc, err := upstream.Location(resp)
	if err != nil {
		return location, 0, err
	}
	if loc == "" {
		loc = location
	}
	stored := offset + n
	if h := resp.Header.Get("Range"); h != "" {
		if s, ok := parseUploadRange(h); ok {
			stored = s
		}
	}
	if stored != offset+n {
		return loc, 0, fmt.Errorf("the registry stored %d bytes of the upload, want %d", stored, offset+n)
	}
	return loc, stored, nil
}

// commit finishes the upload (PUT ?digest=), sending body (n bytes) with
// it if set; the registry checks the digest.
func (c *copier) commit(ctx context.Context, d Descriptor, location string, body io.Reader, n int64) (string, error) {
	u, err := url.Parse(location)
	if err != nil {
		return location, permanent(fmt.Errorf("upload location: %w", err))
	}
	q := u.Query()
	q.Set("digest", d.Digest)
	u.RawQuery = q.Encode()
	used := false
	req := upstream.Request{Method: http.MethodPut, URL: u.String(), Scope: upstream.PushScope(c.dst.Repository), Body: noBody}
	if body != nil {
		req.Header = http.Header{"Content-Type": {"application/octet-stream"}}
		req.ContentLength = n
		req.Body = func() (io.ReadCloser, error) {
			if used {
				return nil, errors.New("upload body cannot be sent twice")
			}
			used = true
			return io.NopCloser(body), nil
		}
	}
	resp, err := c.dst.Client.Do(ctx, req)
	if err != nil {
		return location, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusAccepted {
		se := upstream.StatusErrorOf(resp)
		if se.Code == "DIGEST_INVALID" || se.Code == "BLOB_UPLOAD_INVALID" && strings.Contains(strings.ToLower(se.Message), "digest") {
			return location, permanent(fmt.Errorf("%w: %w", ErrDigestMismatch, se))
		}
		if transientStatus(se.Status) {
			return location, se
		}
		return location, permanent(se)
	}
	return location, nil
}

// cancelUpload deletes an upload session, best effort.
func (c *copier) cancelUpload(ctx context.Context, location string) {
	if location == "" {
		return
	}
	resp, err := c.dst.Client.Do(ctx, upstream.Request{Method: http.MethodDelete, URL: location, Scope: upstream.PushScope(c.dst.Repository)})
	if err == nil {
		resp.Body.Close()
	}
}

func (c *copier) checkpoint(d Descriptor, location string, offset int64) {
	if c.opt.Checkpoint != nil {
		c.opt.Checkpoint(Checkpoint{Repository: c.dst.Repository, Digest: d.Digest, Size: d.Size, Location: location, Offset: offset})
	}
}

// blobReader is the source stream of one blob as the target's request
// body: it waits for the bandwidth cap, counts progress, and checkpoints.
type blobReader struct {
	c        *copier
	d        Descriptor
	r        io.Reader
	sent     int64 // blob offset of the next byte
	lastCP   int64
	location *string
	ctx      context.Context
}

func (b *blobReader) Read(p []byte) (int, error) {
	if lim := b.c.limiter; lim != nil && len(p) > lim.Burst() {
		p = p[:lim.Burst()]
	}
	n, err := b.r.Read(p)
	if n > 0 {
		if lim := b.c.limiter; lim != nil {
			if werr := lim.WaitN(b.ctx, n); werr != nil && err == nil {
				err = werr
			}
		}
		b.sent += int64(n)
		b.c.progress.bytesCopied.Add(int64(n))
		b.c.progress.setCurrent(b.d.Digest, b.sent)
		if b.sent-b.lastCP >= b.c.opt.CheckpointEvery {
			b.lastCP = b.sent
			b.c.checkpoint(b.d, *b.location, b.sent)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = &sourceError{err}
	}
	return n, err
}

// sourceError is a failure reading the source while sending to the
// target.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "reading the source: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }
