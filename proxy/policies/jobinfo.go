package policies

import (
	"encoding/json"
	"net/url"

	"github.com/dtrcache/dtrcache/proxy/jobs"
)

// JobEnd describes a finished policy job for its event: what kind of
// policy made it, what it copied from where to where, and the local
// repository the event is about.
type JobEnd struct {
	Kind     Kind
	PolicyID string
	// Source and Target are the copy's ends; Registry is the remote's
	// host ("" for the local registry).
	Source, Target JobRef
	// Local is the local repository subscriptions match: the source of a
	// promotion or push mirror, the target of a poll mirror.
	Local  string
	Digest string
	// Bytes the copy sent or found already there.
	Bytes int64
	// Skipped: the image did not meet the rules, or the policy was
	// disabled; nothing was copied.
	Skipped bool
	Reason  string
}

// JobRef is one end of a job's copy.
type JobRef struct {
	Registry, Repository, Tag string
}

// DescribeJob describes j if it is a policy job that copies an image
// (promote, push_mirror_tag, poll_mirror_tag) or a poll that failed
// (poll_mirror: a successful poll's copies are jobs of their own). It
// reads only j and the policies in memory, so it may run inside the
// job queue's transactions (a jobs.Hook).
func (s *Service) DescribeJob(j jobs.Job) (JobEnd, bool) {
	switch j.Action {
	case ActionPromote, ActionPushMirrorTag, ActionPollMirrorTag:
	case ActionPollMirror:
		if j.State == jobs.Done {
			return JobEnd{}, false
		}
		var p pollParams
		if json.Unmarshal(j.Params, &p) != nil {
			return JobEnd{}, false
		}
		e := JobEnd{Kind: PollMirroring, PolicyID: p.PolicyID}
		if rec, ok := s.Lookup(p.PolicyID); ok && rec.Poll != nil {
			e.Source = JobRef{Registry: hostOf(rec.Poll.RemoteHost), Repository: rec.Poll.RemoteRepository}
			e.Target = JobRef{Repository: rec.Poll.LocalRepository}
			e.Local = rec.Poll.LocalRepository
		}
		return e, e.Local != ""
	default:
		return JobEnd{}, false
	}
	var p copyParams
	if json.Unmarshal(j.Params, &p) != nil {
		return JobEnd{}, false
	}
	e := JobEnd{Kind: p.Kind, PolicyID: p.PolicyID, Digest: p.Digest,
		Source: JobRef{Repository: p.Repository, Tag: p.Tag}, Target: JobRef{Tag: p.Tag}}
	if rec, ok := s.Lookup(p.PolicyID); ok {
		e.Kind = rec.Kind
		switch {
		case rec.Promotion != nil:
			e.Target.Repository = rec.Promotion.TargetRepository
		case rec.Push != nil:
			e.Target = JobRef{Registry: hostOf(rec.Push.RemoteHost), Repository: rec.Push.RemoteRepository, Tag: p.Tag}
		case rec.Poll != nil:
			e.Source.Registry = hostOf(rec.Poll.RemoteHost)
			e.Target.Repository = rec.Poll.LocalRepository
		}
	}
	var res CopyResult
	if len(j.Result) > 0 && json.Unmarshal(j.Result, &res) == nil {
		if res.Digest != "" {
			e.Digest = res.Digest
		}
		if res.TargetRepository != "" {
			e.Target.Repository = res.TargetRepository
		}
		if res.TargetTag != "" {
			e.Target.Tag = res.TargetTag
		}
		e.Bytes = res.BytesCopied + res.BytesSkipped
		e.Skipped, e.Reason = res.Skipped, res.Reason
	}
	if e.Kind == PollMirroring {
		e.Local = e.Target.Repository
	} else {
		e.Local = e.Source.Repository
	}
	return e, e.Local != "" && e.Kind != ""
}

// hostOf returns the host of a remote's base URL.
func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}
