package policies

import (
	"context"
	"errors"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state"
	"go.uber.org/zap"
)

// pollPrefix keys each poll-mirroring policy's schedule and memory:
// pollstate/<id> → pollState.
const pollPrefix = "pollstate/"

// pollState is what a poll-mirroring policy remembers between polls.
type pollState struct {
	// LastScheduled is when its last poll was queued.
	LastScheduled time.Time `json:"lastScheduled"`
	// Mirrored maps each local tag it wrote to the remote tag it came
	// from, so mirrorDeletes removes only tags the policy made.
	Mirrored map[string]string `json:"mirrored,omitempty"`
}

func (s *Service) pollState(ctx context.Context, id string) (pollState, error) {
	var ps pollState
	_, err := state.GetJSON(ctx, s.c.Store, pollPrefix+id, &ps)
	if errors.Is(err, state.ErrNotFound) {
		err = nil
	}
	return ps, err
}

func (s *Service) setMirrored(ctx context.Context, id string, m map[string]string) error {
	_, err := state.Update(ctx, s.c.Store, pollPrefix+id, func(ps *pollState, _ bool) error {
		ps.Mirrored = m
		return nil
	})
	return err
}

// interval is a poll policy's interval with the default applied.
func interval(p *policy.PollMirroringPolicy) time.Duration {
	if d := time.Duration(p.Interval); d > 0 {
		return d
	}
	return policy.DefaultPollInterval
}

// schedulePolls queues a poll for every enabled poll-mirroring policy
// whose interval has passed. The queue keeps one open poll per policy, and
// the schedule is written with a condition, so replicas that look at the
// same time queue one poll between them.
func (s *Service) schedulePolls(ctx context.Context) {
	now := s.now()
	for _, rec := range s.policies.All() {
		if rec.Kind != PollMirroring || !rec.Enabled() {
			continue
		}
		ps, err := s.pollState(ctx, rec.ID())
		if err != nil {
			s.log.Warn("reading a poll schedule", zap.String("policy", rec.ID()), zap.Error(err))
			continue
		}
		if now.Sub(ps.LastScheduled) < interval(rec.Poll) {
			continue
		}
		if _, err := s.enqueuePoll(ctx, rec); err != nil && ctx.Err() == nil {
			s.log.Warn("queueing a poll", zap.String("policy", rec.ID()), zap.Error(err))
		}
	}
}

// enqueuePoll queues one poll of rec now and records it in its schedule.
func (s *Service) enqueuePoll(ctx context.Context, rec Record) (jobs.Job, error) {
	now := s.now()
	j, created, err := s.c.Queue.Enqueue(ctx, jobs.Spec{Action: ActionPollMirror, PolicyID: rec.ID(), Key: rec.ID() + "/poll",
		Params: pollParams{PolicyID: rec.ID(), TriggeredAt: now}})
	if err != nil {
		return jobs.Job{}, err
	}
	if _, err := state.Update(ctx, s.c.Store, pollPrefix+rec.ID(), func(ps *pollState, _ bool) error {
		if now.After(ps.LastScheduled) {
			ps.LastScheduled = now
		}
		return nil
	}); err != nil {
		return j, err
	}
	if created {
		s.log.Info("poll mirror queued", zap.String("policy", rec.ID()), zap.String("job", j.ID))
	}
	return j, nil
}
