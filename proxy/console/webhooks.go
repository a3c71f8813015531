package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
)

// webhook is a subscription as the webhooks API shows it.
type webhook struct {
	ID                  string    `json:"id"`
	Type                string    `json:"type"`
	Key                 string    `json:"key"`
	Endpoint            string    `json:"endpoint"`
	AuthorID            string    `json:"authorID"`
	CreatedAt           time.Time `json:"createdAt"`
	LastSuccessfulAt    time.Time `json:"lastSuccessfulAt"`
	Inactive            bool      `json:"inactive"`
	InactiveReason      string    `json:"inactiveReason"`
	SkipTLSVerification bool      `json:"skipTLSVerification"`
	Secret              string    `json:"secret"`
}

type deliveries struct {
	Attempts []events.Attempt `json:"attempts"`
	Failing  *struct {
		EventID  string    `json:"eventID"`
		Since    time.Time `json:"since"`
		Attempts int       `json:"attempts"`
		NextAt   time.Time `json:"nextAt"`
	} `json:"failing"`
}

type testResult struct {
	EventID    string  `json:"eventID"`
	Success    bool    `json:"success"`
	Status     int     `json:"status"`
	DurationMS float64 `json:"durationMs"`
	Error      string  `json:"error"`
}

// webhookForm is the subscription and test form.
type webhookForm struct {
	Type, Key, Endpoint, TLSCert string
	SkipTLS                      bool
}

type webhooksData struct {
	Enabled  bool
	Webhooks []webhook
	Types    []events.Type
	Form     webhookForm
	// Created is the webhook just made, with its secret (shown once).
	Created *webhook
	Test    *testResult
}

// disabled reports whether err, the answer to the webhooks list, says
// the origin serves no webhooks API (no events section in its
// configuration): the list itself is never a 404.
func disabled(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (con *Console) webhookList(w http.ResponseWriter, r *http.Request, s *session) {
	con.showWebhooks(w, r, s, http.StatusOK, webhooksData{}, page{Notice: map[string]string{"deleted": "Deleted the webhook."}[r.URL.Query().Get("notice")]})
}

func (con *Console) showWebhooks(w http.ResponseWriter, r *http.Request, s *session, status int, d webhooksData, msg page) {
	d.Types, d.Enabled = events.Types, true
	if d.Form.Type == "" {
		d.Form.Type = string(events.TagPush)
	}
	err := con.call(r, s.User, http.MethodGet, "/api/v0/webhooks", nil, &d.Webhooks)
	switch {
	case disabled(err):
		d.Enabled = false
	case err != nil:
		con.failed(w, r, s, err)
		return
	}
	p := con.pageFor(s, "webhooks", "Webhooks")
	p.Notice, p.Error, p.Problems = msg.Notice, msg.Error, msg.Problems
	p.Data = d
	con.render(w, r, status, "webhooks", p)
}

func readWebhookForm(r *http.Request) webhookForm {
	return webhookForm{Type: strings.TrimSpace(r.PostFormValue("type")), Key: strings.TrimSpace(r.PostFormValue("key")),
		Endpoint: strings.TrimSpace(r.PostFormValue("endpoint")), TLSCert: strings.TrimSpace(r.PostFormValue("tlsCert")),
		SkipTLS: r.PostFormValue("skipTLSVerification") != ""}
}

func (f webhookForm) body() map[string]any {
	return map[string]any{"type": f.Type, "key": f.Key, "endpoint": f.Endpoint, "skipTLSVerification": f.SkipTLS, "tlsCert": f.TLSCert}
}

func (con *Console) webhookCreate(w http.ResponseWriter, r *http.Request, s *session) {
	f := readWebhookForm(r)
	var made webhook
	if err := con.call(r, s.User, http.MethodPost, "/api/v0/webhooks", f.body(), &made); err != nil {
		con.showWebhooks(w, r, s, statusOf(err), webhooksData{Form: f}, withError(err))
		return
	}
	con.showWebhooks(w, r, s, http.StatusCreated, webhooksData{Created: &made}, page{Notice: "Subscribed. Keep the secret below: it signs every delivery and is not shown again."})
}

func (con *Console) webhookTest(w http.ResponseWriter, r *http.Request, s *session) {
	f := readWebhookForm(r)
	var res testResult
	if err := con.call(r, s.User, http.MethodPost, "/api/v0/webhooks/test", f.body(), &res); err != nil {
		con.showWebhooks(w, r, s, statusOf(err), webhooksData{Form: f}, withError(err))
		return
	}
	con.showWebhooks(w, r, s, http.StatusOK, webhooksData{Form: f, Test: &res}, page{})
}

type webhookData struct {
	Hook       webhook
	Deliveries deliveries
}

func (con *Console) webhookDetail(w http.ResponseWriter, r *http.Request, s *session) {
	id := url.PathEscape(r.PathValue("id"))
	var d webhookData
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/webhooks/"+id, nil, &d.Hook); err != nil {
		con.failed(w, r, s, err)
		return
	}
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/webhooks/"+id+"/deliveries", nil, &d.Deliveries); err != nil {
		con.failed(w, r, s, err)
		return
	}
	p := con.pageFor(s, "webhooks", "Webhook "+d.Hook.ID)
	p.Data = d
	con.render(w, r, http.StatusOK, "webhook", p)
}

func (con *Console) webhookDelete(w http.ResponseWriter, r *http.Request, s *session) {
	if err := con.call(r, s.User, http.MethodDelete, "/api/v0/webhooks/"+url.PathEscape(r.PathValue("id")), nil, nil); err != nil {
		con.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/console/webhooks?notice=deleted", http.StatusSeeOther)
}
