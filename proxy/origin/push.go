package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// Push is a manifest the backend accepted through the origin.
type Push struct {
	// Repository and Reference name it as the client did (a tag or a
	// digest); Tag is the reference when it is a tag.
	Repository, Reference, Tag string
	// Digest is the manifest's digest (the backend's
	// Docker-Content-Digest).
	Digest string
	// MediaType is the manifest's media type as sent.
	MediaType string
	// Subject is the digest of the manifest this one refers to (OCI 1.1
	// referrers: a signature, an SBOM), "" if it has none.
	Subject string
	// Manifest is the manifest as pushed (nil if it was larger than a
	// manifest may be).
	Manifest []byte
	// User pushed it; Host is the registry host the client named.
	User, Host string
	// At is when the backend answered.
	At time.Time
}

// Operation is a delete or a pull the backend answered through the
// origin (Config.Deleted, Config.Pulled).
type Operation struct {
	// Repository is the repository; Tag the reference when it is a tag.
	Repository, Tag string
	// Digest is the digest of the path, or for a manifest named by tag
	// the backend's Docker-Content-Digest ("" if it sent none).
	Digest string
	// Blob: a blob delete (the backend's notifications report those like
	// manifest deletes); otherwise a manifest.
	Blob bool
	// MediaType is the manifest's, for a pull.
	MediaType string
	// User asked; Host is the registry host the client named.
	User, Host string
	// At is when the backend answered.
	At time.Time
}

// pushKey marks a manifest PUT in its context, for modifyResponse: its
// *pendingPush.
type pushKey struct{}

// pendingPush is a manifest PUT on its way to the backend, with the body
// as it passed (a manifest is at most regapi.MaxManifestSize bytes).
type pendingPush struct {
	Push
	body bytes.Buffer
	// over is set when the body was larger than a manifest may be.
	over bool
}

// capture is the request body of a manifest PUT, copied as it is read.
type capture struct {
	io.ReadCloser
	p *pendingPush
}

func (c capture) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if n > 0 && !c.p.over {
		if c.p.body.Len()+n > regapi.MaxManifestSize {
			c.p.over = true
		} else {
			c.p.body.Write(b[:n])
		}
	}
	return n, err
}

// subjectOf returns the subject digest of a manifest body ("" if none).
func subjectOf(body []byte) string {
	var m struct {
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(body, &m) != nil || m.Subject == nil {
		return ""
	}
	return m.Subject.Digest
}

// defaultRecordTimeout is Config.RecordTimeout's default.
const defaultRecordTimeout = 20 * time.Second

// errNotRecorded marks the error modifyResponse returns when Config.Pushed
// or Config.Deleted kept failing: the client gets a 503 to retry.
var errNotRecorded = errors.New("not recorded")

// record calls fns (Config.Pushed or Config.Deleted for one operation) in
// order, each until it succeeds or the operation's RecordTimeout passes,
// backing off between attempts (250 ms, doubling to 2 s); one that
// succeeded is not called again. The context is the request's without its
// cancellation: a client that hangs up does not cut a record short.
func (s *Server) record(req *http.Request, what string, fns ...func(context.Context) error) error {
	timeout := s.c.RecordTimeout
	if timeout <= 0 {
		timeout = defaultRecordTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), timeout)
	defer cancel()
	wait := 250 * time.Millisecond
	next := 0 // fns[:next] succeeded
	for attempt := 1; ; attempt++ {
		var err error
		for next < len(fns) {
			if err = fns[next](ctx); err != nil {
				break
			}
			next++
		}
		if err == nil {
			return nil
		}
		s.c.Logger.Warn("recording an operation failed", zap.String("operation", what), zap.String("path", req.URL.Path),
			zap.Int("step", next+1), zap.Int("steps", len(fns)), zap.Int("attempt", attempt), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %s after %d attempts: %w", errNotRecorded, what, attempt, err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// notePush tells Config.Pushed about an accepted manifest PUT. It runs
// before the response goes to the client, so whatever the callback stores
// (policy jobs, events) exists by the time the client knows of the push;
// if it cannot be stored, the client is told to push again.
func (s *Server) notePush(resp *http.Response) error {
	pp, ok := resp.Request.Context().Value(pushKey{}).(*pendingPush)
	if !ok || len(s.c.Pushed) == 0 || resp.StatusCode != http.StatusCreated {
		return nil
	}
	p := pp.Push
	p.Digest, p.At = resp.Header.Get("Docker-Content-Digest"), time.Now().UTC()
	if !pp.over {
		p.Manifest = bytes.Clone(pp.body.Bytes())
		p.Subject = subjectOf(p.Manifest)
	}
	fns := make([]func(context.Context) error, len(s.c.Pushed))
	for i, hook := range s.c.Pushed {
		fns[i] = func(ctx context.Context) error { return hook(ctx, p) }
	}
	return s.record(resp.Request, "push", fns...)
}

// watchPush marks a manifest PUT so that its push is told to
// Config.Pushed once the backend accepted it, its body copied on the way.
func (s *Server) watchPush(r *http.Request, route regapi.Route, user string) *http.Request {
	if len(s.c.Pushed) == 0 || route.Kind != regapi.KindManifest || r.Method != http.MethodPut {
		return r
	}
	pp := &pendingPush{Push: Push{Repository: route.Name, Reference: route.Reference, User: user, Host: r.Host, MediaType: r.Header.Get("Content-Type")}}
	if route.Digest.IsZero() {
		pp.Tag = route.Reference
	}
	r = r.WithContext(context.WithValue(r.Context(), pushKey{}, pp))
	if r.Body != nil {
		r.Body = capture{ReadCloser: r.Body, p: pp}
	}
	return r
}

// opKey marks a delete or a pull in its context, for modifyResponse: its
// *pendingOp.
type opKey struct{}

type pendingOp struct {
	Operation
	pull bool
}

// watchOp marks a manifest or blob DELETE (for Config.Deleted) and a
// manifest GET or HEAD while Config.WantPulls says pulls are wanted (for
// Config.Pulled).
func (s *Server) watchOp(r *http.Request, route regapi.Route, user string) *http.Request {
	op := &pendingOp{Operation: Operation{Repository: route.Name, User: user, Host: r.Host}}
	switch {
	case r.Method == http.MethodDelete && s.c.Deleted != nil && (route.Kind == regapi.KindManifest || route.Kind == regapi.KindBlob):
		op.Blob = route.Kind == regapi.KindBlob
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && route.Kind == regapi.KindManifest &&
		s.c.Pulled != nil && s.c.WantPulls != nil && s.c.WantPulls():
		op.pull = true
	default:
		return r
	}
	if route.Digest.IsZero() {
		op.Tag = route.Reference
	} else {
		op.Digest = route.Digest.String()
	}
	return r.WithContext(context.WithValue(r.Context(), opKey{}, op))
}

// noteOp tells Config.Deleted (202) or Config.Pulled (200) about an
// operation the backend answered, before the response goes to the client.
// A delete that cannot be recorded is an error, as a push is (notePush); a
// pull is recorded at most once, and its failure is only logged: a pull
// must not fail because the event log is down.
func (s *Server) noteOp(resp *http.Response) error {
	op, ok := resp.Request.Context().Value(opKey{}).(*pendingOp)
	if !ok {
		return nil
	}
	o := op.Operation
	o.At = time.Now().UTC()
	if o.Digest == "" && !o.Blob {
		o.Digest = resp.Header.Get("Docker-Content-Digest")
	}
	switch {
	case op.pull && resp.StatusCode == http.StatusOK:
		o.MediaType = resp.Header.Get("Content-Type")
		ctx, cancel := context.WithTimeout(context.WithoutCancel(resp.Request.Context()), defaultRecordTimeout)
		defer cancel()
		s.c.Pulled(ctx, o)
	case !op.pull && resp.StatusCode == http.StatusAccepted:
		return s.record(resp.Request, "delete", func(ctx context.Context) error { return s.c.Deleted(ctx, o) })
	}
	return nil
}

// Authenticator checks the origin's accounts (Basic auth) for the API
// handlers the origin mounts (Config.API): policies, jobs, webhooks. It
// is the same check the registry API makes, so there is one account
// model.
type Authenticator struct {
	Users *policy.Users
	// Realm is the Basic realm of the challenge ("" means "dtrcache").
	Realm string
}

// User returns the user r authenticates as ("" when it sends no
// credentials; the user of an in-process request, OnBehalfOf), or a 401
// with a challenge for bad credentials.
func (a Authenticator) User(r *http.Request) (string, error) {
	if user, ok := onBehalf(r.Context()); ok {
		return user, nil // authenticated in this process (OnBehalfOf)
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", nil
	}
	if err := a.Users.Authenticate(user, pass); err != nil {
		realm := a.Realm
		if realm == "" {
			realm = "dtrcache"
		}
		return "", regapi.Errorf(http.StatusUnauthorized, regapi.CodeUnauthorized, "invalid username or password", err).
			WithHeader("WWW-Authenticate", `Basic realm="`+realm+`"`)
	}
	return user, nil
}
