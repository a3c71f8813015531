package origin

import "context"

// onBehalfKey marks an in-process request made for a user whom another
// part of the origin authenticated (the web console's session).
type onBehalfKey struct{}

// OnBehalfOf returns a context for requests that code in this process
// hands to the origin's handler for user, who is already authenticated
// (the console checked its session). The origin treats such a request as
// one from user with valid credentials: the same access rules, the same
// audit lines, the same answers; a blob GET is served, never redirected
// (the caller is the origin process, not the user's client). Requests
// from the network cannot carry it: only a context made here does.
func OnBehalfOf(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, onBehalfKey{}, user)
}

// onBehalf returns the user an in-process request is made for.
func onBehalf(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(onBehalfKey{}).(string)
	return u, ok && u != ""
}
