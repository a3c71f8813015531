package policies

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// PlanItem is one tag a policy would copy now, or why not.
type PlanItem struct {
	Source string `json:"source"`
	Target string `json:"target,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Action is "copy" (the target lacks it or has another digest),
	// "up-to-date" (the target has this digest), "skip" (Reason: a rule
	// not met, a template error) or "error".
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Plan is what one policy would do now.
type Plan struct {
	PolicyID string     `json:"policyID"`
	Name     string     `json:"name,omitempty"`
	Kind     Kind       `json:"kind"`
	Enabled  bool       `json:"enabled"`
	Items    []PlanItem `json:"items"`
	// Truncated says only the first MaxPlanTags tags were looked at.
	Truncated bool   `json:"truncated,omitempty"`
	Error     string `json:"error,omitempty"`
}

// MaxPlanTags bounds the tags one plan looks at.
const MaxPlanTags = 200

// PlanPolicy works out, without copying anything, which tags rec would
// copy where now.
func (s *Service) PlanPolicy(ctx context.Context, rec Record) Plan {
	p := Plan{PolicyID: rec.ID(), Name: rec.Name(), Kind: rec.Kind, Enabled: rec.Enabled(), Items: []PlanItem{}}
	rules, tmpl := rec.Rules()
	matcher, err := policy.CompileRules(rules)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	template, err := policy.ParseTagTemplate(tmpl)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	var srcClient, dstClient *upstream.Client
	var srcRepo, dstRepo string
	switch rec.Kind {
	case Promotion:
		srcClient, dstClient, srcRepo, dstRepo = s.c.Local, s.c.Local, rec.Promotion.SourceRepository, rec.Promotion.TargetRepository
	case PushMirroring:
		remote, err := s.remoteFor(ctx, rec)
		if err != nil {
			p.Error = err.Error()
			return p
		}
		srcClient, dstClient, srcRepo, dstRepo = s.c.Local, remote, rec.Push.LocalRepository, rec.Push.RemoteRepository
	case PollMirroring:
		remote, err := s.remoteFor(ctx, rec)
		if err != nil {
			p.Error = err.Error()
			return p
		}
		srcClient, dstClient, srcRepo, dstRepo = remote, s.c.Local, rec.Poll.RemoteRepository, rec.Poll.LocalRepository
	}
	tags, err := listTags(ctx, srcClient, srcRepo)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	if len(tags) > MaxPlanTags {
		tags, p.Truncated = tags[:MaxPlanTags], true
	}
	now := s.now()
	for _, tag := range tags {
		src := replicate.Ref{Client: srcClient, Repository: srcRepo, Tag: tag}
		item := PlanItem{Source: src.String()}
		if !nameRulesHold(rules, srcRepo, tag, now) {
			continue // not even a candidate: the plan lists what the rules look at
		}
		img, err := describe(ctx, src)
		if err != nil {
			item.Action, item.Reason = "error", err.Error()
			p.Items = append(p.Items, item)
			continue
		}
		item.Digest = img.Digest
		if i := matcher.FirstMismatch(img, now); i >= 0 {
			item.Action, item.Reason = "skip", fmt.Sprintf("rules[%d] (%s) not met", i, rules[i])
			p.Items = append(p.Items, item)
			continue
		}
		target, err := template.In(s.c.Location).Expand(tag, now)
		if err != nil {
			item.Action, item.Reason = "skip", err.Error()
			p.Items = append(p.Items, item)
			continue
		}
		dst := replicate.Ref{Client: dstClient, Repository: dstRepo, Tag: target}
		item.Target = dst.String()
		have, err := resolve(ctx, dst)
		switch {
		case err != nil:
			item.Action, item.Reason = "error", err.Error()
		case have == img.Digest:
			item.Action = "up-to-date"
		default:
			item.Action = "copy"
		}
		p.Items = append(p.Items, item)
	}
	return p
}

// plan answers GET /api/v0/policies/plan[?policy=ID]: for each policy
// the user manages, what it would copy now.
func (h *api) plan(w http.ResponseWriter, r *http.Request, user string) {
	var recs []Record
	if id := r.URL.Query().Get("policy"); id != "" {
		rec, ok := h.s.Lookup(id)
		if !ok {
			fail(w, r, errNotFound("no such policy "+strconv.Quote(id)))
			return
		}
		if err := h.decide(r, user, rec, "plan"); err != nil {
			fail(w, r, err)
			return
		}
		recs = []Record{rec}
	} else {
		for _, rec := range h.s.All() {
			if ok, _ := h.may(user, rec); ok {
				recs = append(recs, rec)
			}
		}
	}
	out := make([]Plan, 0, len(recs))
	for _, rec := range recs {
		out = append(out, h.s.PlanPolicy(r.Context(), rec))
	}
	writeJSON(w, http.StatusOK, out)
}
