package origin

import (
	"context"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/regapi"
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
	// User pushed it.
	User string
	// At is when the backend answered.
	At time.Time
}

// pushKey marks a manifest PUT in its context, for modifyResponse.
type pushKey struct{}

// pushTimeout bounds the Pushed callback: it writes jobs and events
// durably before the client hears that its push succeeded.
const pushTimeout = 10 * time.Second

// notePush tells Config.Pushed about an accepted manifest PUT. It runs
// before the response goes to the client, so whatever the callback stores
// (policy jobs, events) exists by the time the client knows of the push.
func (s *Server) notePush(resp *http.Response) {
	p, ok := resp.Request.Context().Value(pushKey{}).(Push)
	if !ok || s.c.Pushed == nil || resp.StatusCode != http.StatusCreated {
		return
	}
	p.Digest, p.At = resp.Header.Get("Docker-Content-Digest"), time.Now().UTC()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(resp.Request.Context()), pushTimeout)
	defer cancel()
	s.c.Pushed(ctx, p)
}

// pushOf returns the Push a manifest PUT would make, for its context.
func pushOf(r *http.Request, route regapi.Route, user string) (Push, bool) {
	if route.Kind != regapi.KindManifest || r.Method != http.MethodPut {
		return Push{}, false
	}
	p := Push{Repository: route.Name, Reference: route.Reference, User: user, MediaType: r.Header.Get("Content-Type")}
	if route.Digest.IsZero() {
		p.Tag = route.Reference
	}
	return p, true
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
// credentials), or a 401 with a challenge for bad ones.
func (a Authenticator) User(r *http.Request) (string, error) {
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
