package originevents

import (
	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"go.uber.org/zap"
)

// JobHook returns the job queue's hook that writes PROMOTION,
// PUSH_MIRRORING or POLL_MIRRORING with the end of every policy job that
// copied (or failed to copy) an image, and of every poll that failed, in
// the job's own transaction (events.JobHook). A job skipped because the
// image did not meet the policy's rules copied nothing and makes no
// event. describe is policies.Service.DescribeJob (the service is made
// after its queue, so it is looked up when a job ends).
func (w *Wiring) JobHook(describe func(jobs.Job) (policies.JobEnd, bool)) jobs.Hook {
	return events.JobHook(w.svc.Outbox, func(j jobs.Job) (events.Event, bool) {
		e, ok := describe(j)
		if !ok || (e.Skipped && j.State == jobs.Done) {
			return events.Event{}, false
		}
		var t events.Type
		switch e.Kind {
		case policies.Promotion:
			t = events.Promotion
		case policies.PushMirroring:
			t = events.PushMirroring
		case policies.PollMirroring:
			t = events.PollMirroring
		default:
			return events.Event{}, false
		}
		c := events.JobContents{
			Source: events.ImageRef{Registry: e.Source.Registry, Repository: e.Source.Repository, Tag: e.Source.Tag},
			Target: events.ImageRef{Registry: e.Target.Registry, Repository: e.Target.Repository, Tag: e.Target.Tag},
			Digest: e.Digest, Bytes: e.Bytes,
		}
		ev, err := events.JobEvent(t, e.Local, j, c)
		if err != nil {
			w.log.Error("events: making a job's event", zap.String("job", j.ID), zap.Error(err))
			return events.Event{}, false
		}
		return ev, true
	}, func(j jobs.Job, err error) {
		w.log.Error("events: writing a job's event", zap.String("job", j.ID), zap.Error(err))
	})
}
