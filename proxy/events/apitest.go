package events

import (
	"context"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// TestRequest is the body of POST /api/v0/webhooks/test: DTR's {type,
// endpoint}, and the TLS settings of a subscription. Key scopes the
// permission check: without it only administrators may test.
type TestRequest struct {
	Type                Type   `json:"type"`
	Endpoint            string `json:"endpoint"`
	Key                 string `json:"key"`
	SkipTLSVerification bool   `json:"skipTLSVerification"`
	TLSCert             string `json:"tlsCert"`
}

// TestResult is what the receiver answered to the sample.
type TestResult struct {
	EventID    string  `json:"eventID"`
	Success    bool    `json:"success"`
	Status     int     `json:"status,omitempty"`
	DurationMS float64 `json:"durationMs"`
	Error      string  `json:"error,omitempty"`
	// Secret is the throwaway secret the sample was signed with (a test
	// belongs to no webhook), so a receiver's verification can be tried.
	Secret string `json:"secret"`
}

func (a *API) test(w http.ResponseWriter, r *http.Request, user string) error {
	var req TestRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := CheckSubscription(CreateRequest{Type: req.Type, Key: req.Key, Endpoint: req.Endpoint, TLSCert: req.TLSCert}); err != nil {
		return err
	}
	if !a.Authority.CanAdmin(user, req.Key) {
		return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, "testing needs the key of a repository or namespace you administer")
	}
	if err := checkAddress(r.Context(), a.Guard, req.Endpoint); err != nil {
		return err
	}
	res, err := a.sendTest(r.Context(), req)
	if err != nil {
		return err
	}
	a.log().Info("webhook test sent", zap.String("user", user), zap.String("type", string(req.Type)),
		zap.String("endpointHost", endpointHost(req.Endpoint)), zap.Int("status", res.Status))
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *API) sendTest(ctx context.Context, req TestRequest) (TestResult, error) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ev, err := Sample(req.Type, a.Host)
	if err != nil {
		return TestResult{}, err
	}
	var o Outbox
	ev.ID = "test-" + o.newID(time.Now())
	ev.CreatedAt = time.Now().UTC()
	ev, body, err := o.Prepare(ev)
	if err != nil {
		return TestResult{}, err
	}
	c, err := newEndpointClient(a.Guard, req.SkipTLSVerification, req.TLSCert, timeout)
	if err != nil {
		return TestResult{}, &FieldError{"tlsCert", err.Error()}
	}
	defer c.close()
	secret := newSecret()
	e := &entry{pos: pos{ID: ev.ID}, typ: ev.Type, body: body}
	res := c.send(ctx, req.Endpoint, deliveryHeaders("test", secret, "dtrcache-webhook/1", e, 1), body)
	return TestResult{EventID: ev.ID, Success: res.ok(), Status: res.status, DurationMS: float64(res.duration.Microseconds()) / 1000,
		Error: res.text(), Secret: secret}, nil
}
