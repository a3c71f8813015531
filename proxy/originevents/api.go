package originevents

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// identifier is the webhooks API's login: the origin's accounts, a 401
// with the challenge when anonymous.
type identifier struct{ auth origin.Authenticator }

func (i identifier) Identify(r *http.Request) (string, error) {
	user, err := i.auth.User(r)
	if err == nil && user == "" {
		realm := i.auth.Realm
		if realm == "" {
			realm = "dtrcache"
		}
		err = regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required").
			WithHeader("WWW-Authenticate", `Basic realm="`+realm+`"`)
	}
	return user, err
}

// authority answers the webhooks API with the origin's access rules.
type authority struct {
	access  *policy.Access
	backend *upstream.Client
}

// CanAdmin: administrators anything; a repository's or namespace's
// administrators its scope (a namespace as any repository in it).
func (a authority) CanAdmin(user, scope string) bool {
	if a.access.IsAdmin(user) {
		return true
	}
	if scope == "" {
		return false
	}
	if !strings.Contains(scope, "/") {
		scope += "/*"
	}
	return a.access.Decide(user, scope, policy.ActionAdmin).Allowed
}

// RepositoryExists asks the backend for the repository's tags.
func (a authority) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	resp, err := a.backend.Do(ctx, upstream.Request{Method: http.MethodGet, Path: "/v2/" + repo + "/tags/list"})
	if err != nil {
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return false, nil
		}
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}
