package console

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/policies"
)

// jobRow is a job with what the pages show of its parameters.
type jobRow struct {
	jobs.Job
	Repository, Tag, Digest string
}

// Open reports whether the job may still change.
func (j jobRow) Open() bool { return !j.State.Terminal() }

// Percent is the job's progress in bytes, 0 to 100 (-1: unknown).
func (j jobRow) Percent() int {
	if j.Progress.BytesTotal <= 0 {
		if j.State == jobs.Done {
			return 100
		}
		return -1
	}
	return int(100 * j.Progress.BytesDone / j.Progress.BytesTotal)
}

func rowOf(j jobs.Job) jobRow {
	r := jobRow{Job: j}
	var p struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
	}
	if json.Unmarshal(j.Params, &p) == nil {
		r.Repository, r.Tag, r.Digest = p.Repository, p.Tag, p.Digest
	}
	return r
}

type jobsData struct {
	Jobs                    []jobRow
	State, Action, PolicyID string
	States                  []jobs.State
	Actions                 []string
	AnyOpen                 bool
}

// maxJobs bounds the jobs listed.
const maxJobs = 100

func (con *Console) jobList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := jobsData{State: q.Get("state"), Action: q.Get("action"), PolicyID: q.Get("policy"),
		States:  []jobs.State{jobs.Waiting, jobs.Running, jobs.Done, jobs.Error, jobs.Cancelled},
		Actions: []string{policies.ActionPromote, policies.ActionPushMirrorTag, policies.ActionPollMirror, policies.ActionPollMirrorTag, policies.ActionReferrers}}
	v := url.Values{"limit": {"100"}}
	for k, val := range map[string]string{"state": d.State, "action": d.Action, "policy": d.PolicyID} {
		if val != "" {
			v.Set(k, val)
		}
	}
	var list struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/jobs?"+v.Encode(), nil, &list); err != nil {
		con.failed(w, r, s, err)
		return
	}
	for i, j := range list.Jobs {
		if i >= maxJobs {
			break
		}
		row := rowOf(j)
		d.Jobs = append(d.Jobs, row)
		d.AnyOpen = d.AnyOpen || row.Open()
	}
	p := con.pageFor(s, "jobs", "Jobs")
	p.Notice = notices[q.Get("notice")]
	p.Data = d
	con.render(w, r, http.StatusOK, "jobs", p)
}

func (con *Console) jobDetail(w http.ResponseWriter, r *http.Request, s *session) {
	var j jobs.Job
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/jobs/"+url.PathEscape(r.PathValue("id")), nil, &j); err != nil {
		con.failed(w, r, s, err)
		return
	}
	p := con.pageFor(s, "jobs", "Job "+j.ID)
	if r.URL.Query().Get("notice") == "cancelled" {
		p.Notice = "Asked the job to stop."
	}
	p.Data = rowOf(j)
	con.render(w, r, http.StatusOK, "job", p)
}

func (con *Console) jobCancel(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := con.call(r, s.User, http.MethodDelete, "/api/v0/jobs/"+url.PathEscape(id), nil, nil); err != nil {
		con.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/console/jobs/"+url.PathEscape(id)+"?notice=cancelled", http.StatusSeeOther)
}

// pollNow runs every poll mirror the user manages now.
func (con *Console) pollNow(w http.ResponseWriter, r *http.Request, s *session) {
	if err := con.call(r, s.User, http.MethodPost, "/api/v0/jobs", map[string]string{"action": policies.ActionPollMirror}, nil); err != nil {
		con.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/console/jobs?action="+policies.ActionPollMirror+"&notice=polled", http.StatusSeeOther)
}
