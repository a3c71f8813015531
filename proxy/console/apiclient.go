package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dtrcache/dtrcache/proxy/origin"
)

// apiError is an answer of the origin's API that is not a success: its
// status and the registry-style error it carried.
type apiError struct {
	Status  int
	Code    string
	Message string
	// Problems are the fields the API named (a 400 with a detail list).
	Problems []problem
}

// problem is one problem the API found with a field.
type problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return http.StatusText(e.Status)
	}
	return e.Message
}

// maxAnswer bounds an in-process answer the console reads.
const maxAnswer = 16 << 20

// answer is an in-process response, as recorded.
type answer struct {
	status int
	header http.Header
	body   bytes.Buffer
	over   bool
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

func (a *answer) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.body.Len()+len(p) > maxAnswer {
		a.over = true
		return 0, errors.New("console: answer too large")
	}
	return a.body.Write(p)
}

// valuesOnly is a context with the deadline and cancellation of its
// parent but none of its values, so that an in-process request does not
// write into the log fields of the page that made it.
type valuesOnly struct{ context.Context }

func (valuesOnly) Value(any) any { return nil }

// apiTimeout bounds one in-process call.
const apiTimeout = 30 * time.Second

// do hands a request to the origin's handler as user, in process, and
// returns its answer. The request keeps the page request's client address
// (the audit lines name the browser's client).
func (con *Console) do(r *http.Request, user, method, path string, header http.Header, body []byte) (*answer, error) {
	ctx, cancel := context.WithTimeout(valuesOnly{r.Context()}, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(origin.OnBehalfOf(ctx, user), method, path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	a := &answer{header: http.Header{}}
	con.c.Origin.ServeHTTP(a, req)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.over {
		return nil, fmt.Errorf("console: %s %s: answer over %d bytes", method, path, maxAnswer)
	}
	return a, nil
}

// call makes an API call as user: body (if not nil) as JSON, a 2xx
// answer decoded into out (if not nil), anything else an *apiError.
func (con *Console) call(r *http.Request, user, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	a, err := con.do(r, user, method, path, nil, b)
	if err != nil {
		return err
	}
	if a.status < 200 || a.status > 299 {
		return decodeError(a)
	}
	if out != nil && a.status != http.StatusNoContent {
		if err := json.Unmarshal(a.body.Bytes(), out); err != nil {
			return fmt.Errorf("console: %s %s: %w", method, path, err)
		}
	}
	return nil
}

// decodeError reads a registry-style error answer.
func decodeError(a *answer) *apiError {
	e := &apiError{Status: a.status}
	var body struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(a.body.Bytes(), &body) == nil && len(body.Errors) > 0 {
		first := body.Errors[0]
		e.Code, e.Message = first.Code, first.Message
		var list []problem
		var one problem
		if json.Unmarshal(first.Detail, &list) == nil {
			e.Problems = list
		} else if json.Unmarshal(first.Detail, &one) == nil && one.Field != "" {
			one.Message = first.Message
			e.Problems = []problem{one}
		}
	}
	return e
}

// statusOf returns the HTTP status an error of a call should be shown
// with.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusBadGateway
}
