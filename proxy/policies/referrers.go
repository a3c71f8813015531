package policies

import (
	"context"
	"errors"
	"sync"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"go.uber.org/zap"
)

// ActionReferrers is the job that finds the tags of a referrer's subject
// and runs their policies again.
const ActionReferrers = "referrers"

// referrersParams are the parameters of a referrers job.
type referrersParams struct {
	Repository string `json:"repository"`
	Subject    string `json:"subject"`
}

// maxSubjectTags bounds the tags a referrers job looks at.
const maxSubjectTags = 5000

// enqueueReferrers queues a job that reruns the policies of the tags that
// point at subject in repo, if any policy could copy from repo.
func (s *Service) enqueueReferrers(ctx context.Context, repo, subject string) (*jobs.Job, error) {
	if err := s.policies.WaitReady(ctx); err != nil {
		return nil, err
	}
	relevant := false
	for _, rec := range s.policies.All() {
		relevant = relevant || rec.Enabled() && rec.Kind != PollMirroring && rec.Repository() == repo
	}
	if !relevant {
		return nil, nil
	}
	j, _, err := s.c.Queue.Enqueue(ctx, jobs.Spec{Action: ActionReferrers, Key: "referrers/" + repo + "@" + subject,
		Params: referrersParams{Repository: repo, Subject: subject}})
	if err != nil {
		return nil, err
	}
	s.log.Info("referrer pushed; its subject's tags go again", zap.String("repo", repo), zap.String("subject", subject), zap.String("job", j.ID))
	return &j, nil
}

// execReferrers finds the tags of a repository that point at a subject
// (a HEAD per tag, a few at a time) and queues their policies' copies.
func (s *Service) execReferrers(ctx context.Context, run *jobs.Run) error {
	var p referrersParams
	if err := run.Params(&p); err != nil {
		return permanentError{err}
	}
	tags, err := listTags(ctx, s.c.Local, p.Repository)
	if err != nil {
		return err
	}
	if len(tags) > maxSubjectTags {
		run.Logf("warn", "%s has %d tags; looking at the first %d", p.Repository, len(tags), maxSubjectTags)
		tags = tags[:maxSubjectTags]
	}
	var (
		mu      sync.Mutex
		matched []string
		errs    []error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 8)
	)
	for _, tag := range tags {
		if referrersTag(tag) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := resolve(ctx, replicate.Ref{Client: s.c.Local, Repository: p.Repository, Tag: tag})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case d == p.Subject:
				matched = append(matched, tag)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	queued := 0
	for _, tag := range matched {
		js, err := s.onPush(ctx, p.Repository, tag, p.Subject, 0)
		if err != nil {
			return err
		}
		queued += len(js)
	}
	run.Logf("info", "referrer of %s: tags %v point at it; %d copies queued", p.Subject, matched, queued)
	return nil
}
