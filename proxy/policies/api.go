package policies

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// Authenticator tells who sent a request: the user ("" when anonymous),
// or the error to answer with (bad credentials: a 401 with a challenge).
// The origin implements it with its own login, so the API has no second
// account model.
type Authenticator interface {
	User(r *http.Request) (string, error)
}

// Handler serves the policy and job API under /api/v0 (DTR's resource
// shapes):
//
//	GET|POST          /api/v0/repositories/{repo}/{kind}        list; create (?initialEvaluation=true)
//	GET|PUT|DELETE    /api/v0/repositories/{repo}/{kind}/{id}
//	GET               /api/v0/policies                          every policy the user may see
//	GET               /api/v0/policies/plan                     what each policy would copy now
//	GET|POST          /api/v0/jobs                              list (filters); run now {"action","parameters"}
//	GET|DELETE        /api/v0/jobs/{id}                         one job with its log; cancel
//
// {kind} is promotionPolicies, pushMirroringPolicies or
// pollMirroringPolicies; {repo} may have several path segments. Who may:
// administrators anything; a user with admin on a repository its
// promotion and push-mirroring policies (and push on a promotion's
// target), and its poll-mirroring policies.
func (s *Service) Handler(auth Authenticator, audit *zap.Logger) http.Handler {
	if audit == nil {
		audit = s.log
	}
	h := &api{s: s, auth: auth, audit: audit}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v0/repositories/", h.repositories)
	mux.HandleFunc("GET /api/v0/policies", h.user(h.listAll))
	mux.HandleFunc("GET /api/v0/policies/plan", h.user(h.plan))
	mux.HandleFunc("GET /api/v0/jobs", h.user(h.listJobs))
	mux.HandleFunc("POST /api/v0/jobs", h.user(h.runJob))
	mux.HandleFunc("GET /api/v0/jobs/{id}", h.user(h.getJob))
	mux.HandleFunc("DELETE /api/v0/jobs/{id}", h.user(h.cancelJob))
	return mux
}

type api struct {
	s     *Service
	auth  Authenticator
	audit *zap.Logger
}

func fail(w http.ResponseWriter, r *http.Request, err error) { regapi.WriteError(w, r, err) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func errNotFound(what string) error {
	return regapi.NewError(http.StatusNotFound, "NOT_FOUND", what)
}

func errDenied(why string) error {
	return regapi.NewError(http.StatusForbidden, regapi.CodeDenied, why)
}

// user requires a logged-in user.
func (h *api) user(fn func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, err := h.auth.User(r)
		if err != nil {
			fail(w, r, err)
			return
		}
		if user == "" {
			fail(w, r, regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required"))
			return
		}
		fn(w, r, user)
	}
}

// may reports whether user may manage policies of kind on repo (and, for
// a promotion, write its target).
func (h *api) may(user string, rec Record) (bool, string) {
	a := h.s.c.Access
	if a.IsAdmin(user) {
		return true, "administrator"
	}
	repo := rec.Repository()
	if !a.Decide(user, repo, policy.ActionAdmin).Allowed {
		return false, "needs admin on " + repo
	}
	if rec.Promotion != nil && rec.Promotion.TargetRepository != "" && !a.Decide(user, rec.Promotion.TargetRepository, policy.ActionPush).Allowed {
		return false, "needs push on the target " + rec.Promotion.TargetRepository
	}
	return true, "admin on " + repo
}

func (h *api) decide(r *http.Request, user string, rec Record, what string) error {
	ok, why := h.may(user, rec)
	h.audit.Info("authorization", zap.String("user", user), zap.String("repo", rec.Repository()), zap.String("action", "admin"),
		zap.String("api", what), zap.Bool("allowed", ok), zap.String("reason", why), zap.String("remote", r.RemoteAddr))
	if !ok {
		return errDenied("requested access to the resource is denied: " + why)
	}
	return nil
}

// repositories routes /api/v0/repositories/{repo}/{kind}[/{id}].
func (h *api) repositories(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/api/v0/repositories/")
	segs := strings.Split(rest, "/")
	var kind Kind
	var repo, id string
	for i, seg := range segs {
		if k, ok := ParseKind(seg); ok && i > 0 {
			kind, repo = k, strings.Join(segs[:i], "/")
			switch len(segs) - i {
			case 1:
			case 2:
				id = segs[i+1]
			default:
				kind = ""
			}
			break
		}
	}
	if kind == "" || id == "" && strings.HasSuffix(rest, "/") {
		fail(w, r, errNotFound("unknown API endpoint"))
		return
	}
	if !regapi.ValidName(repo) {
		fail(w, r, regapi.NewError(http.StatusBadRequest, regapi.CodeNameInvalid, "invalid repository name "+strconv.Quote(repo)))
		return
	}
	h.user(func(w http.ResponseWriter, r *http.Request, user string) {
		switch {
		case id == "" && r.Method == http.MethodGet:
			h.list(w, r, user, kind, repo)
		case id == "" && r.Method == http.MethodPost:
			h.create(w, r, user, kind, repo)
		case id != "" && r.Method == http.MethodGet:
			h.get(w, r, user, kind, repo, id)
		case id != "" && r.Method == http.MethodPut:
			h.update(w, r, user, kind, repo, id)
		case id != "" && r.Method == http.MethodDelete:
			h.delete(w, r, user, kind, repo, id)
		default:
			w.Header().Set("Allow", "GET, POST, PUT, DELETE")
			fail(w, r, regapi.NewError(http.StatusMethodNotAllowed, regapi.CodeUnsupported, "method not allowed"))
		}
	})(w, r)
}

// decodeRecord reads a policy of kind from a request body, refusing
// unknown fields, and puts repo in as its repository.
func decodePolicy(r *http.Request, kind Kind, repo string) (Record, error) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 256<<10))
	dec.DisallowUnknownFields()
	rec := Record{Kind: kind}
	var err error
	var gotRepo *string
	switch kind {
	case Promotion:
		rec.Promotion = &policy.PromotionPolicy{}
		err = dec.Decode(rec.Promotion)
		gotRepo = &rec.Promotion.SourceRepository
	case PushMirroring:
		rec.Push = &policy.PushMirroringPolicy{}
		err = dec.Decode(rec.Push)
		gotRepo = &rec.Push.LocalRepository
	case PollMirroring:
		rec.Poll = &policy.PollMirroringPolicy{}
		err = dec.Decode(rec.Poll)
		gotRepo = &rec.Poll.LocalRepository
	}
	if err != nil {
		return rec, regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", "invalid policy: "+err.Error(), err)
	}
	if *gotRepo != "" && *gotRepo != repo {
		key := "sourceRepository"
		if kind != Promotion {
			key = "localRepository"
		}
		return rec, invalid(&policy.ValidationError{Problems: []error{&policy.FieldError{Key: key,
			Err: errors.New("is " + strconv.Quote(*gotRepo) + " but the URL names " + strconv.Quote(repo))}}})
	}
	*gotRepo = repo
	return rec, nil
}

// invalid turns a validation error into a 400 listing every problem.
func invalid(err error) error {
	var ve *policy.ValidationError
	problems := []map[string]string{}
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			entry := map[string]string{"message": p.Error()}
			var fe *policy.FieldError
			var re *policy.RuleError
			switch {
			case errors.As(p, &fe):
				entry["field"] = fe.Key
			case errors.As(p, &re):
				entry["field"] = "rules"
			}
			problems = append(problems, entry)
		}
	} else {
		problems = append(problems, map[string]string{"message": err.Error()})
	}
	e := regapi.Errorf(http.StatusBadRequest, "INVALID_POLICY", err.Error(), err)
	e.Detail = problems
	return e
}

// check validates rec for saving: its own fields, chains of promotions,
// and a reachable, allowed remote.
func (h *api) check(ctx context.Context, rec Record) error {
	if err := rec.Validate(); err != nil {
		return invalid(err)
	}
	if rec.Promotion != nil {
		var existing []policy.PromotionPolicy
		for _, o := range h.s.All() {
			if o.Promotion != nil {
				existing = append(existing, *o.Promotion)
			}
		}
		if err := policy.DetectPromotionCycle(existing, *rec.Promotion); err != nil {
			e := regapi.Errorf(http.StatusBadRequest, "INVALID_POLICY", err.Error(), err)
			e.Detail = []map[string]string{{"field": "targetRepository", "message": err.Error()}}
			return e
		}
	}
	if remote, ok := rec.Remote(); ok {
		if err := h.s.checkRemote(ctx, remote); err != nil {
			field, msg, _ := strings.Cut(err.Error(), ": ")
			e := regapi.Errorf(http.StatusBadRequest, "INVALID_POLICY", err.Error(), err)
			e.Detail = []map[string]string{{"field": field, "message": msg}}
			return e
		}
	}
	return nil
}

func (h *api) create(w http.ResponseWriter, r *http.Request, user string, kind Kind, repo string) {
	rec, err := decodePolicy(r, kind, repo)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := h.decide(r, user, rec, "create "+string(kind)); err != nil {
		fail(w, r, err)
		return
	}
	initial := false
	if v := r.URL.Query().Get("initialEvaluation"); v != "" {
		if initial, err = strconv.ParseBool(v); err != nil {
			fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "initialEvaluation: want true or false"))
			return
		}
	}
	rec.setID(newPolicyID())
	if err := h.check(r.Context(), rec); err != nil {
		fail(w, r, err)
		return
	}
	now := h.s.now()
	rec.AuthorID, rec.CreatedAt, rec.UpdatedAt, rec.Source = user, now, now, SourceAPI
	secret := rec.takePassword()
	rec.HasPassword = secret != ""
	if _, err := h.s.put(r.Context(), rec, 0, &secret); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.audit.Info("policy created", zap.String("user", user), zap.String("policy", rec.ID()), zap.String("kind", string(kind)), zap.String("repo", repo))
	out := rec.View()
	if initial && rec.Enabled() {
		js, err := h.s.Evaluate(r.Context(), rec.ID())
		if err != nil {
			h.s.log.Warn("initial evaluation", zap.String("policy", rec.ID()), zap.Error(err))
			out["initialEvaluationError"] = err.Error()
		}
		out["jobs"] = jobIDs(js)
	}
	writeJSON(w, http.StatusCreated, out)
}

func jobIDs(js []jobs.Job) []string {
	out := make([]string, 0, len(js))
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func (h *api) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNameUsed):
		fail(w, r, regapi.Errorf(http.StatusConflict, "ALREADY_EXISTS", err.Error(), err))
	default:
		fail(w, r, err)
	}
}

// lookup finds the policy id of kind on repo.
func (h *api) lookup(ctx context.Context, kind Kind, repo, id string) (Record, int64, error) {
	rec, rev, err := h.s.get(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && (rec.Kind != kind || rec.Repository() != repo) {
		return Record{}, 0, errNotFound("no such policy")
	}
	return rec, rev, err
}

func (h *api) get(w http.ResponseWriter, r *http.Request, user string, kind Kind, repo, id string) {
	rec, _, err := h.lookup(r.Context(), kind, repo, id)
	if err != nil {
		fail(w, r, err)
		return
	}
	if ok, _ := h.may(user, rec); !ok {
		fail(w, r, errDenied("requested access to the resource is denied"))
		return
	}
	writeJSON(w, http.StatusOK, rec.View())
}

func (h *api) list(w http.ResponseWriter, r *http.Request, user string, kind Kind, repo string) {
	probe := Record{Kind: kind}
	switch kind {
	case Promotion:
		probe.Promotion = &policy.PromotionPolicy{SourceRepository: repo}
	case PushMirroring:
		probe.Push = &policy.PushMirroringPolicy{LocalRepository: repo}
	case PollMirroring:
		probe.Poll = &policy.PollMirroringPolicy{LocalRepository: repo}
	}
	if err := h.decide(r, user, probe, "list "+string(kind)); err != nil {
		fail(w, r, err)
		return
	}
	out := []map[string]any{}
	for _, rec := range h.s.All() {
		if rec.Kind == kind && rec.Repository() == repo {
			out = append(out, rec.View())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *api) update(w http.ResponseWriter, r *http.Request, user string, kind Kind, repo, id string) {
	old, rev, err := h.lookup(r.Context(), kind, repo, id)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := h.decide(r, user, old, "update "+string(kind)); err != nil {
		fail(w, r, err)
		return
	}
	if old.Source == SourceFile {
		fail(w, r, regapi.NewError(http.StatusConflict, "MANAGED", "this policy is managed by the origin's policy file; change it there"))
		return
	}
	rec, err := decodePolicy(r, kind, repo)
	if err != nil {
		fail(w, r, err)
		return
	}
	rec.setID(id)
	if err := h.decide(r, user, rec, "update "+string(kind)); err != nil { // a new target needs push too
		fail(w, r, err)
		return
	}
	// The password is write-only: a body without one keeps the stored one.
	secret := rec.takePassword()
	var newSecret *string
	rec.HasPassword = old.HasPassword
	if secret != "" {
		newSecret, rec.HasPassword = &secret, true
	}
	if remote, ok := rec.Remote(); ok && remote.Username == "" && old.HasPassword {
		empty := ""
		newSecret, rec.HasPassword = &empty, false
	}
	if err := h.checkUpdate(r.Context(), rec, old); err != nil {
		fail(w, r, err)
		return
	}
	rec.AuthorID, rec.CreatedAt, rec.UpdatedAt, rec.Source = old.AuthorID, old.CreatedAt, h.s.now(), SourceAPI
	if _, err := h.s.put(r.Context(), rec, rev, newSecret); err != nil {
		h.storeError(w, r, err)
		return
	}
	h.audit.Info("policy updated", zap.String("user", user), zap.String("policy", id), zap.String("kind", string(kind)), zap.String("repo", repo))
	writeJSON(w, http.StatusOK, rec.View())
}

// checkUpdate validates an updated policy; a mirroring policy that keeps a
// stored password passes validation with a placeholder.
func (h *api) checkUpdate(ctx context.Context, rec, old Record) error {
	probe := rec
	if rec.HasPassword {
		switch {
		case rec.Push != nil:
			p := *rec.Push
			p.Password = "(stored)"
			probe.Push = &p
		case rec.Poll != nil:
			p := *rec.Poll
			p.Password = "(stored)"
			probe.Poll = &p
		}
	}
	return h.check(ctx, probe)
}

func (h *api) delete(w http.ResponseWriter, r *http.Request, user string, kind Kind, repo, id string) {
	rec, rev, err := h.lookup(r.Context(), kind, repo, id)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := h.decide(r, user, rec, "delete "+string(kind)); err != nil {
		fail(w, r, err)
		return
	}
	if rec.Source == SourceFile {
		fail(w, r, regapi.NewError(http.StatusConflict, "MANAGED", "this policy is managed by the origin's policy file; remove it there"))
		return
	}
	if err := h.s.remove(r.Context(), id, rev); err != nil {
		fail(w, r, err)
		return
	}
	h.audit.Info("policy deleted", zap.String("user", user), zap.String("policy", id), zap.String("kind", string(kind)), zap.String("repo", repo))
	w.WriteHeader(http.StatusNoContent)
}

func (h *api) listAll(w http.ResponseWriter, r *http.Request, user string) {
	out := []map[string]any{}
	for _, rec := range h.s.All() {
		if ok, _ := h.may(user, rec); ok {
			v := rec.View()
			v["kind"] = rec.Kind
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// visibleJob reports whether user may see a job: administrators all, others
// the jobs of policies they manage.
func (h *api) visibleJob(user string, j jobs.Job) bool {
	if h.s.c.Access.IsAdmin(user) {
		return true
	}
	rec, ok := h.s.Lookup(j.PolicyID)
	if !ok {
		return false
	}
	allowed, _ := h.may(user, rec)
	return allowed
}

func (h *api) listJobs(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	f := jobs.Filter{Action: q.Get("action"), PolicyID: q.Get("policy"), Before: q.Get("before")}
	for _, st := range q["state"] {
		for _, s := range strings.Split(st, ",") {
			if !jobs.ValidState(s) {
				fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "state: "+strconv.Quote(s)+" is not waiting, running, done, error or cancelled"))
				return
			}
			f.States = append(f.States, jobs.State(s))
		}
	}
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.key); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", p.key+": want an RFC 3339 time"))
				return
			}
			*p.dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "limit: want 1 to 1000"))
			return
		}
		f.Limit = n
	}
	all, err := h.s.c.Queue.List(r.Context(), f)
	if err != nil {
		fail(w, r, err)
		return
	}
	out := []jobs.Job{}
	for _, j := range all {
		if h.visibleJob(user, j) {
			j.Log = nil // the list is a summary; GET /jobs/{id} has the log
			out = append(out, j)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
}

func (h *api) getJob(w http.ResponseWriter, r *http.Request, user string) {
	j, err := h.s.c.Queue.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, jobs.ErrNotFound) || err == nil && !h.visibleJob(user, j) {
		fail(w, r, errNotFound("no such job"))
		return
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (h *api) cancelJob(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	j, err := h.s.c.Queue.Get(r.Context(), id)
	if errors.Is(err, jobs.ErrNotFound) || err == nil && !h.visibleJob(user, j) {
		fail(w, r, errNotFound("no such job"))
		return
	}
	if err == nil {
		j, err = h.s.c.Queue.Cancel(r.Context(), id)
	}
	switch {
	case errors.Is(err, jobs.ErrFinished):
		fail(w, r, regapi.NewError(http.StatusConflict, "JOB_FINISHED", "the job has already ended ("+string(j.State)+")"))
		return
	case err != nil:
		fail(w, r, err)
		return
	}
	h.audit.Info("job cancelled", zap.String("user", user), zap.String("job", id))
	writeJSON(w, http.StatusAccepted, j)
}

// runJob starts policy work now: {"action":"poll_mirror"} polls every
// enabled poll mirror the user manages (or {"parameters":{"policyID":…}}
// one), and an action of promote or push_mirror with a policyID evaluates
// that policy over every tag of its repository.
func (h *api) runJob(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		Action     string `json:"action"`
		Parameters struct {
			PolicyID string `json:"policyID"`
		} `json:"parameters"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		fail(w, r, regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", "invalid request body: "+err.Error(), err))
		return
	}
	var targets []Record
	switch body.Action {
	case ActionPollMirror, ActionPromote, "push_mirror", ActionPushMirrorTag:
	default:
		fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "action: want poll_mirror, promote or push_mirror"))
		return
	}
	if id := body.Parameters.PolicyID; id != "" {
		rec, ok := h.s.Lookup(id)
		if !ok {
			fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "parameters.policyID: no such policy"))
			return
		}
		targets = []Record{rec}
	} else if body.Action == ActionPollMirror {
		for _, rec := range h.s.All() {
			if rec.Kind == PollMirroring && rec.Enabled() {
				targets = append(targets, rec)
			}
		}
	} else {
		fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "parameters.policyID: required for "+body.Action))
		return
	}
	var queued []jobs.Job
	for _, rec := range targets {
		want := map[string]Kind{ActionPollMirror: PollMirroring, ActionPromote: Promotion, "push_mirror": PushMirroring, ActionPushMirrorTag: PushMirroring}[body.Action]
		if rec.Kind != want {
			fail(w, r, regapi.NewError(http.StatusBadRequest, "INVALID_PARAMETER", "parameters.policyID: policy "+rec.ID()+" is not a "+string(want)+" policy"))
			return
		}
		if err := h.decide(r, user, rec, "run "+body.Action); err != nil {
			if body.Parameters.PolicyID != "" {
				fail(w, r, err)
				return
			}
			continue
		}
		js, err := h.s.Evaluate(r.Context(), rec.ID())
		if err != nil {
			fail(w, r, regapi.Errorf(http.StatusBadGateway, regapi.CodeUnavailable, err.Error(), err))
			return
		}
		queued = append(queued, js...)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"jobs": queued})
}
