package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// policyView is a policy of any kind as the policies API shows it.
type policyView struct {
	Kind                string        `json:"kind"`
	ID                  string        `json:"id"`
	Name                string        `json:"name"`
	Enabled             bool          `json:"enabled"`
	SourceRepository    string        `json:"sourceRepository"`
	TargetRepository    string        `json:"targetRepository"`
	LocalRepository     string        `json:"localRepository"`
	RemoteHost          string        `json:"remoteHost"`
	RemoteRepository    string        `json:"remoteRepository"`
	Username            string        `json:"username"`
	RemoteCA            string        `json:"remoteCA"`
	SkipTLSVerification bool          `json:"skipTLSVerification"`
	Rules               []policy.Rule `json:"rules"`
	TagTemplate         string        `json:"tagTemplate"`
	Interval            string        `json:"interval"`
	MirrorDeletes       bool          `json:"mirrorDeletes"`
	AuthorID            string        `json:"authorID"`
	Source              string        `json:"source"`
	CreatedAt           time.Time     `json:"createdAt"`
	LastUpdated         time.Time     `json:"lastUpdated"`
	HasPassword         bool          `json:"hasPassword"`
}

// Repository is the local repository the policy belongs to.
func (p policyView) Repository() string {
	if p.Kind == string(policies.Promotion) {
		return p.SourceRepository
	}
	return p.LocalRepository
}

// Label names the policy: its name, else its id.
func (p policyView) Label() string {
	if p.Name != "" {
		return p.Name
	}
	return p.ID
}

// KindName is the kind in words.
func (p policyView) KindName() string { return kindName(p.Kind) }

// Target says where the policy copies to.
func (p policyView) Target() string {
	switch policies.Kind(p.Kind) {
	case policies.Promotion:
		return p.TargetRepository
	case policies.PushMirroring:
		return p.RemoteHost + " " + p.RemoteRepository
	}
	return p.LocalRepository + " (from " + p.RemoteHost + " " + p.RemoteRepository + ")"
}

func kindName(k string) string {
	switch policies.Kind(k) {
	case policies.Promotion:
		return "promotion"
	case policies.PushMirroring:
		return "push mirror"
	case policies.PollMirroring:
		return "poll mirror"
	}
	return k
}

// runAction is the jobs API action that runs a policy of kind now.
func runAction(k string) string {
	switch policies.Kind(k) {
	case policies.Promotion:
		return policies.ActionPromote
	case policies.PushMirroring:
		return "push_mirror"
	}
	return policies.ActionPollMirror
}

// allPolicies lists the policies user may see.
func (con *Console) allPolicies(r *http.Request, user string) ([]policyView, error) {
	var ps []policyView
	err := con.call(r, user, http.MethodGet, "/api/v0/policies", nil, &ps)
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Repository() != ps[j].Repository() {
			return ps[i].Repository() < ps[j].Repository()
		}
		return ps[i].Label() < ps[j].Label()
	})
	return ps, err
}

// findPolicy returns the policy id if user may see it.
func (con *Console) findPolicy(r *http.Request, user, id string) (policyView, error) {
	ps, err := con.allPolicies(r, user)
	if err != nil {
		return policyView{}, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p, nil
		}
	}
	return policyView{}, &apiError{Status: http.StatusNotFound, Message: "No such policy (or not one you manage)."}
}

// notices are the messages a redirect may ask a page to show.
var notices = map[string]string{
	"created": "Created the policy.",
	"saved":   "Saved the policy.",
	"deleted": "Deleted the policy.",
	"queued":  "Queued the jobs; they are listed below.",
	"polled":  "Queued a poll of every poll mirror you manage.",
}

func (con *Console) policyList(w http.ResponseWriter, r *http.Request, s *session) {
	ps, err := con.allPolicies(r, s.User)
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	p := con.pageFor(s, "policies", "Policies")
	p.Notice = notices[r.URL.Query().Get("notice")]
	p.Data = ps
	con.render(w, r, http.StatusOK, "policies", p)
}

// ruleRow is one row of the rule builder.
type ruleRow struct {
	Field, Operator string
	Values          []string
}

// policyForm is the policy form as shown and as sent.
type policyForm struct {
	ID, Kind, Name                         string
	Enabled, New, Managed                  bool
	Repository, TargetRepository           string
	RemoteHost, RemoteRepository, Username string
	Password, RemoteCA, Interval           string
	HasPassword, SkipTLS, MirrorDeletes    bool
	InitialEvaluation                      bool
	Rules                                  []ruleRow
	TagTemplate, PreviewTag                string
	Preview, PreviewError                  string
	Fields                                 []policy.RuleField
	Operators                              []operator
	KindLabel                              string
	IsPromotion, IsMirror, IsPoll          bool
	CreatedAt, LastUpdated                 time.Time
	AuthorID                               string
}

type operator struct {
	Name, Label string
}

// operatorLabels say what each operator does.
var operatorLabels = map[string]string{
	"eq": "equals", "neq": "does not equal", "sw": "starts with", "ew": "ends with", "contains": "contains",
	"oneof": "is one of", "noneof": "is none of", "matches": "matches the regexp", "semver": "is in the semver range",
	"before": "is before", "after": "is after", "gte": "≥", "gt": ">", "lte": "≤", "lt": "<",
}

// operators lists every operator once, in the order fields name them.
func operators(fields []policy.RuleField) []operator {
	var out []operator
	seen := map[string]bool{}
	for _, f := range fields {
		for _, op := range f.Operators {
			if !seen[op] {
				seen[op] = true
				out = append(out, operator{Name: op, Label: op + " — " + operatorLabels[op]})
			}
		}
	}
	return out
}

// finish fills what the template needs beyond the values.
func (f *policyForm) finish() {
	f.Fields = policy.RuleFields()
	f.Operators = operators(f.Fields)
	f.KindLabel = kindName(f.Kind)
	f.IsPromotion = f.Kind == string(policies.Promotion)
	f.IsPoll = f.Kind == string(policies.PollMirroring)
	f.IsMirror = !f.IsPromotion
	if f.PreviewTag == "" {
		f.PreviewTag = "1.2.0"
	}
	if len(f.Rules) == 0 || f.Rules[len(f.Rules)-1].Field != "" {
		f.Rules = append(f.Rules, ruleRow{}) // a blank row to add a rule
	}
}

func formOf(p policyView) policyForm {
	f := policyForm{ID: p.ID, Kind: p.Kind, Name: p.Name, Enabled: p.Enabled, Managed: p.Source == policies.SourceFile,
		Repository: p.Repository(), TargetRepository: p.TargetRepository, RemoteHost: p.RemoteHost,
		RemoteRepository: p.RemoteRepository, Username: p.Username, RemoteCA: p.RemoteCA, Interval: p.Interval,
		HasPassword: p.HasPassword, SkipTLS: p.SkipTLSVerification, MirrorDeletes: p.MirrorDeletes,
		TagTemplate: p.TagTemplate, CreatedAt: p.CreatedAt, LastUpdated: p.LastUpdated, AuthorID: p.AuthorID}
	for _, r := range p.Rules {
		f.Rules = append(f.Rules, ruleRow{Field: r.Field, Operator: r.Operator, Values: r.Values})
	}
	return f
}

// maxRules bounds the rows of the rule builder.
const maxRules = 64

// readForm reads the policy form of a POST.
func readForm(r *http.Request) policyForm {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	on := func(k string) bool { return r.PostFormValue(k) != "" }
	f := policyForm{Kind: v("kind"), Name: v("name"), Enabled: on("enabled"), Repository: v("repository"),
		TargetRepository: v("targetRepository"), RemoteHost: v("remoteHost"), RemoteRepository: v("remoteRepository"),
		Username: v("username"), Password: r.PostFormValue("password"), RemoteCA: v("remoteCA"), Interval: v("interval"),
		SkipTLS: on("skipTLSVerification"), MirrorDeletes: on("mirrorDeletes"), InitialEvaluation: on("initialEvaluation"),
		TagTemplate: v("tagTemplate"), PreviewTag: v("previewTag")}
	n, _ := strconv.Atoi(r.PostFormValue("rules"))
	for i := 0; i < min(n, maxRules); i++ {
		p := "rule" + strconv.Itoa(i) + "-"
		row := ruleRow{Field: v(p + "field"), Operator: v(p + "operator")}
		for _, line := range strings.Split(r.PostFormValue(p+"values"), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				row.Values = append(row.Values, line)
			}
		}
		if row.Field == "" || on(p+"remove") {
			continue
		}
		f.Rules = append(f.Rules, row)
	}
	return f
}

// body is the policy as the API takes it.
func (f policyForm) body() map[string]any {
	rules := []policy.Rule{}
	for _, r := range f.Rules {
		if r.Field != "" {
			rules = append(rules, policy.Rule{Field: r.Field, Operator: r.Operator, Values: append([]string{}, r.Values...)})
		}
	}
	b := map[string]any{"enabled": f.Enabled, "rules": rules, "tagTemplate": f.TagTemplate}
	if f.Name != "" {
		b["name"] = f.Name
	}
	switch policies.Kind(f.Kind) {
	case policies.Promotion:
		b["targetRepository"] = f.TargetRepository
	case policies.PushMirroring, policies.PollMirroring:
		b["remoteHost"], b["remoteRepository"], b["skipTLSVerification"] = f.RemoteHost, f.RemoteRepository, f.SkipTLS
		if f.Username != "" {
			b["username"] = f.Username
		}
		if f.Password != "" {
			b["password"] = f.Password
		}
		if f.RemoteCA != "" {
			b["remoteCA"] = f.RemoteCA
		}
		if f.Kind == string(policies.PollMirroring) {
			b["mirrorDeletes"] = f.MirrorDeletes
			if f.Interval != "" {
				b["interval"] = f.Interval
			}
		}
	}
	return b
}

// preview expands the form's tag template for its preview tag.
func (con *Console) preview(f *policyForm) {
	f.Preview, f.PreviewError = con.expand(f.TagTemplate, f.PreviewTag)
}

// expand expands a tag template as the policy engine would now.
func (con *Console) expand(tmpl, tag string) (string, string) {
	t, err := policy.ParseTagTemplate(tmpl)
	if err != nil {
		return "", err.Error()
	}
	out, err := t.In(con.c.Location).Expand(tag, con.c.Now())
	if err != nil {
		return "", err.Error()
	}
	return out, ""
}

func (con *Console) showPolicyForm(w http.ResponseWriter, r *http.Request, s *session, status int, f policyForm, msg page) {
	f.finish()
	con.preview(&f)
	title := "New " + kindName(f.Kind) + " policy"
	if !f.New {
		title = "Policy " + f.Name
		if f.Name == "" {
			title = "Policy " + f.ID
		}
	}
	p := con.pageFor(s, "policies", title)
	p.Notice, p.Error, p.Problems = msg.Notice, msg.Error, msg.Problems
	p.Data = f
	con.render(w, r, status, "policy", p)
}

func (con *Console) policyNew(w http.ResponseWriter, r *http.Request, s *session) {
	kind := r.URL.Query().Get("kind")
	if _, ok := policies.ParseKind(kind); !ok {
		kind = string(policies.Promotion)
	}
	con.showPolicyForm(w, r, s, http.StatusOK, policyForm{Kind: kind, New: true, Enabled: true, InitialEvaluation: true}, page{})
}

func (con *Console) policyEdit(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := con.findPolicy(r, s.User, r.PathValue("id"))
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	con.showPolicyForm(w, r, s, http.StatusOK, formOf(p), page{Notice: notices[r.URL.Query().Get("notice")]})
}

// policySubmit handles the policy form's buttons: preview the template,
// add a rule row, or save (create or replace through the API).
func (con *Console) policySubmit(w http.ResponseWriter, r *http.Request, s *session) {
	f := readForm(r)
	id := r.PathValue("id")
	f.New, f.ID = id == "", id
	if !f.New {
		old, err := con.findPolicy(r, s.User, id)
		if err != nil {
			con.failed(w, r, s, err)
			return
		}
		f.Kind, f.Repository, f.HasPassword, f.Managed = old.Kind, old.Repository(), old.HasPassword, old.Source == policies.SourceFile
		f.CreatedAt, f.LastUpdated, f.AuthorID = old.CreatedAt, old.LastUpdated, old.AuthorID
	}
	if _, ok := policies.ParseKind(f.Kind); !ok {
		con.errorPage(w, r, s, http.StatusBadRequest, "Unknown kind of policy.")
		return
	}
	switch r.PostFormValue("do") {
	case "preview":
		con.showPolicyForm(w, r, s, http.StatusOK, f, page{})
		return
	case "addrule":
		f.Rules = append(f.Rules, ruleRow{Field: "tag", Operator: "eq"})
		con.showPolicyForm(w, r, s, http.StatusOK, f, page{})
		return
	}
	if !regapi.ValidName(f.Repository) {
		con.showPolicyForm(w, r, s, http.StatusBadRequest, f, page{Error: "The policy is not valid.",
			Problems: []problem{{Field: "repository", Message: "want a repository name such as dev/app"}}})
		return
	}
	path := "/api/v0/repositories/" + f.Repository + "/" + f.Kind
	method, notice := http.MethodPost, "created"
	if f.New {
		path += "?initialEvaluation=" + strconv.FormatBool(f.InitialEvaluation)
	} else {
		path += "/" + url.PathEscape(id)
		method, notice = http.MethodPut, "saved"
	}
	var saved policyView
	if err := con.call(r, s.User, method, path, f.body(), &saved); err != nil {
		con.showPolicyForm(w, r, s, statusOf(err), f, withError(err))
		return
	}
	http.Redirect(w, r, "/console/policies/"+url.PathEscape(saved.ID)+"?notice="+notice, http.StatusSeeOther)
}

func (con *Console) policyDelete(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := con.findPolicy(r, s.User, r.PathValue("id"))
	if err == nil {
		err = con.call(r, s.User, http.MethodDelete, "/api/v0/repositories/"+p.Repository()+"/"+p.Kind+"/"+url.PathEscape(p.ID), nil, nil)
	}
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/console/policies?notice=deleted", http.StatusSeeOther)
}

func (con *Console) policyRun(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := con.findPolicy(r, s.User, r.PathValue("id"))
	if err == nil {
		body := map[string]any{"action": runAction(p.Kind), "parameters": map[string]string{"policyID": p.ID}}
		err = con.call(r, s.User, http.MethodPost, "/api/v0/jobs", body, nil)
	}
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/console/jobs?policy="+url.QueryEscape(p.ID)+"&notice=queued", http.StatusSeeOther)
}

type planData struct {
	Policy policyView
	Plan   policies.Plan
}

func (con *Console) policyPlan(w http.ResponseWriter, r *http.Request, s *session) {
	p, err := con.findPolicy(r, s.User, r.PathValue("id"))
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	var plans []policies.Plan
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/policies/plan?policy="+url.QueryEscape(p.ID), nil, &plans); err != nil {
		con.failed(w, r, s, err)
		return
	}
	if len(plans) != 1 {
		con.failed(w, r, s, errors.New("the plan API answered "+strconv.Itoa(len(plans))+" plans for one policy"))
		return
	}
	pg := con.pageFor(s, "policies", "Plan of "+p.Label())
	pg.Data = planData{Policy: p, Plan: plans[0]}
	con.render(w, r, http.StatusOK, "plan", pg)
}

// templatePreview answers the live preview's script: the expansion of a
// tag template, as JSON {"tag": …} or {"error": …}.
func (con *Console) templatePreview(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	tag := q.Get("tag")
	if tag == "" {
		tag = "1.2.0"
	}
	out, problem := con.expand(q.Get("template"), tag)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if problem != "" {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": problem})
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"tag": out})
}
