package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// CreateRequest is the body of POST /api/v0/webhooks (DTR's fields).
type CreateRequest struct {
	Type                Type   `json:"type"`
	Key                 string `json:"key"`
	Endpoint            string `json:"endpoint"`
	SkipTLSVerification bool   `json:"skipTLSVerification"`
	TLSCert             string `json:"tlsCert"`
}

// FieldError is a problem with one field of a request; the API answers
// it with 400 and a message that starts with the field's name.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// apiError is e as the API answers it.
func (e *FieldError) apiError() *regapi.Error {
	re := regapi.NewError(http.StatusBadRequest, "INVALID_FIELD", e.Error())
	re.Detail = map[string]string{"field": e.Field}
	return re
}

// maxEndpointLength bounds an endpoint URL.
const maxEndpointLength = 2048

// CheckSubscription checks the form of a subscription, without looking
// anything up: a known type, a key its scope allows, an http(s) endpoint
// URL, a PEM certificate. The error is a *FieldError.
func CheckSubscription(req CreateRequest) error {
	if err := checkType(req.Type); err != nil {
		return err
	}
	if err := checkKey(req.Type, req.Key); err != nil {
		return err
	}
	if _, _, err := checkEndpoint(req.Endpoint); err != nil {
		return err
	}
	if req.TLSCert != "" {
		if _, err := parseCerts(req.TLSCert); err != nil {
			return &FieldError{"tlsCert", err.Error()}
		}
	}
	return nil
}

func checkType(t Type) error {
	if !t.Valid() {
		if t == "" {
			return &FieldError{"type", "required"}
		}
		return &FieldError{"type", fmt.Sprintf("unknown event type %q", truncate(string(t), 64))}
	}
	return nil
}

func checkKey(t Type, key string) error {
	switch t.Scope() {
	case ScopeGlobal:
		if key != "" {
			return &FieldError{"key", fmt.Sprintf("%s is a global event: leave the key empty", t)}
		}
		return nil
	case ScopeNamespace:
		if strings.Contains(key, "/") {
			return &FieldError{"key", fmt.Sprintf("%s subscriptions take a namespace, not a repository", t)}
		}
	}
	if key != "" && !regapi.ValidName(key) {
		return &FieldError{"key", fmt.Sprintf("%q is not a repository or namespace name", truncate(key, 300))}
	}
	return nil
}

// checkEndpoint returns the endpoint's host name and port.
func checkEndpoint(endpoint string) (string, int, error) {
	bad := func(problem string) (string, int, error) { return "", 0, &FieldError{"endpoint", problem} }
	if endpoint == "" {
		return bad("required")
	}
	if len(endpoint) > maxEndpointLength {
		return bad(fmt.Sprintf("longer than %d characters", maxEndpointLength))
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return bad("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("want an http:// or https:// URL")
	}
	if u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		return bad("the URL has no host")
	}
	if u.User != nil {
		return bad("credentials in the URL are not allowed (receivers verify the signature instead)")
	}
	if u.Fragment != "" || strings.Contains(endpoint, "#") {
		return bad("the URL may not have a fragment")
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("invalid port %q", truncate(p, 20)))
		}
		port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	return u.Hostname(), port, nil
}

// checkAddress resolves the endpoint's host through the guard: a name
// with any refused address is refused.
func checkAddress(ctx context.Context, g Guard, endpoint string) error {
	host, port, err := checkEndpoint(endpoint)
	if err != nil {
		return err
	}
	if _, err := g.Resolve(ctx, host, port); err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return &FieldError{"endpoint", fmt.Sprintf("cannot resolve %s", truncate(host, 255))}
		}
		var denied *netguard.DeniedError
		if errors.As(err, &denied) {
			return &FieldError{"endpoint", fmt.Sprintf("%s resolves to %s, a %s, which webhooks may not reach (the origin's events.allow_private lists exceptions)",
				truncate(host, 255), denied.Addr, denied.Reason)}
		}
		return &FieldError{"endpoint", "address refused: " + err.Error()}
	}
	return nil
}
