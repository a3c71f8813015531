package policies

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"go.uber.org/zap"
)

// The job actions of policies (DTR's names where it has them).
const (
	ActionPromote       = "promote"
	ActionPushMirrorTag = "push_mirror_tag"
	ActionPollMirror    = "poll_mirror"
	ActionPollMirrorTag = "poll_mirror_tag"
)

// copyParams are the parameters of a copy job.
type copyParams struct {
	Kind     Kind   `json:"kind"`
	PolicyID string `json:"policyID"`
	// Repository and Tag are the source: a local repository for
	// promotions and push mirrors, the remote one for poll mirrors.
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	// Digest is what the tag pointed at when the job was made (the copy
	// takes what it points at when it runs; later pushes queue a
	// follow-up).
	Digest string `json:"digest,omitempty"`
	// TriggeredAt is the push or poll that made the job: replication lag
	// counts from it, and tag templates are evaluated at it.
	TriggeredAt time.Time `json:"triggeredAt"`
	// Hops counts the promotions before this one in a chain.
	Hops int `json:"hops,omitempty"`
}

// CopyResult is the result of a copy job.
type CopyResult struct {
	// Source and Target name the image copied (registry/repository:tag).
	Source string `json:"source"`
	Target string `json:"target"`
	// TargetRepository and TargetTag are the target's repository and tag.
	TargetRepository string `json:"targetRepository"`
	TargetTag        string `json:"targetTag"`
	// Digest is the manifest or index copied.
	Digest string `json:"digest,omitempty"`
	// Skipped says the image did not meet the policy's rules (Reason),
	// or the policy was disabled: nothing was copied.
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Transfer counts.
	BytesCopied     int64 `json:"bytesCopied"`
	BytesSkipped    int64 `json:"bytesSkipped"`
	BlobsCopied     int   `json:"blobsCopied"`
	BlobsMounted    int   `json:"blobsMounted"`
	BlobsSkipped    int   `json:"blobsSkipped"`
	ManifestsPushed int   `json:"manifestsPushed"`
	ReferrersCopied int   `json:"referrersCopied"`
	Resumes         int   `json:"resumes,omitempty"`
}

// copyCheckpoint is a copy job's resume state: the digest it is copying
// and the uploads it has open.
type copyCheckpoint struct {
	Digest    string                 `json:"digest"`
	TargetTag string                 `json:"targetTag"`
	Uploads   []replicate.Checkpoint `json:"uploads,omitempty"`
}

// permanent marks an error no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanentf(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

// Classify tells the job runner which failures of policy jobs are worth
// another attempt.
func Classify(err error) (bool, time.Duration) {
	var p permanentError
	if errors.As(err, &p) {
		return false, 0
	}
	return replicate.IsTransient(err)
}

// ends returns the source and target of a copy job.
func (s *Service) ends(ctx context.Context, rec Record, p copyParams) (src, dst replicate.Ref, dstRepo string, err error) {
	switch rec.Kind {
	case Promotion:
		src = replicate.Ref{Client: s.c.Local, Repository: p.Repository, Tag: p.Tag}
		dst = replicate.Ref{Client: s.c.Local, Repository: rec.Promotion.TargetRepository}
	case PushMirroring:
		remote, err := s.remoteFor(ctx, rec)
		if err != nil {
			return src, dst, "", err
		}
		src = replicate.Ref{Client: s.c.Local, Repository: p.Repository, Tag: p.Tag}
		dst = replicate.Ref{Client: remote, Repository: rec.Push.RemoteRepository}
	case PollMirroring:
		remote, err := s.remoteFor(ctx, rec)
		if err != nil {
			return src, dst, "", err
		}
		src = replicate.Ref{Client: remote, Repository: p.Repository, Tag: p.Tag}
		dst = replicate.Ref{Client: s.c.Local, Repository: rec.Poll.LocalRepository}
	default:
		return src, dst, "", permanentf("unknown policy kind %q", rec.Kind)
	}
	return src, dst, dst.Repository, nil
}

// execCopy runs one promotion, push-mirror or poll-mirror copy of a tag.
func (s *Service) execCopy(ctx context.Context, run *jobs.Run) error {
	var p copyParams
	if err := run.Params(&p); err != nil {
		return permanentError{err}
	}
	rec, ok := s.Lookup(p.PolicyID)
	if !ok {
		return permanentf("policy %s no longer exists", p.PolicyID)
	}
	res := CopyResult{}
	if !rec.Enabled() {
		res.Skipped, res.Reason = true, "policy disabled"
		run.SetResult(res)
		run.Logf("info", "skipped: the policy is disabled")
		return nil
	}
	src, dst, dstRepo, err := s.ends(ctx, rec, p)
	if err != nil {
		return err
	}
	res.Source = src.String()
	rules, tmpl := rec.Rules()
	matcher, err := policy.CompileRules(rules)
	if err != nil {
		return permanentError{err}
	}
	template, err := policy.ParseTagTemplate(tmpl)
	if err != nil {
		return permanentError{err}
	}

	var cp copyCheckpoint
	if raw := run.Job().Checkpoint; len(raw) > 0 {
		if err := jsonUnmarshal(raw, &cp); err != nil {
			run.Logf("warn", "unreadable checkpoint ignored: %v", err)
			cp = copyCheckpoint{}
		}
	}
	if cp.Digest == "" {
		// Only rules on the image itself make the job read its manifests
		// and configs; for tag rules alone the digest is enough.
		img := policy.Image{Repository: p.Repository, Tag: p.Tag}
		if imageRules(rules) {
			if img, err = describe(ctx, src); err != nil {
				return err
			}
		} else if img.Digest, _, err = replicate.Resolve(ctx, src); err != nil {
			return err
		}
		if i := matcher.FirstMismatch(img, s.now()); i >= 0 {
			res.Skipped, res.Digest = true, img.Digest
			res.Reason = fmt.Sprintf("rules[%d] (%s) not met", i, rules[i])
			run.SetResult(res)
			run.Logf("info", "skipped %s@%s: %s", src, img.Digest, res.Reason)
			return nil
		}
		tag, err := template.In(s.c.Location).Expand(p.Tag, p.TriggeredAt)
		if err != nil {
			return permanentError{err}
		}
		cp = copyCheckpoint{Digest: img.Digest, TargetTag: tag}
		if err := run.Checkpoint(ctx, cp); err != nil {
			return err
		}
	}
	src.Digest = cp.Digest
	dst.Tag = cp.TargetTag
	res.Digest, res.TargetRepository, res.TargetTag, res.Target = cp.Digest, dstRepo, cp.TargetTag, dst.String()
	run.Logf("info", "copying %s@%s to %s", src, cp.Digest, dst)

	prog := &replicate.Progress{}
	var mu sync.Mutex
	uploads := map[string]replicate.Checkpoint{}
	changed := false // uploads changed since the last stored checkpoint
	for _, u := range cp.Uploads {
		uploads[u.Digest] = u
	}
	opts := replicate.Options{
		Concurrency: s.c.Concurrency, BandwidthLimit: s.c.BandwidthLimit, Progress: prog, Resume: cp.Uploads, Blobs: s.blobsFor(dst.Client),
		Logger: s.log.Named("copy"),
		Checkpoint: func(c replicate.Checkpoint) {
			mu.Lock()
			uploads[c.Digest], changed = c, true
			mu.Unlock()
		},
	}
	// Report progress and store the upload checkpoints once a second
	// while the copy runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				report(run, prog)
				mu.Lock()
				if !changed {
					mu.Unlock()
					continue
				}
				next := cp
				next.Uploads = make([]replicate.Checkpoint, 0, len(uploads))
				for _, u := range uploads {
					next.Uploads = append(next.Uploads, u)
				}
				changed = false
				mu.Unlock()
				if err := run.Checkpoint(ctx, next); err != nil && ctx.Err() == nil {
					s.log.Warn("storing a copy checkpoint", zap.String("job", run.Job().ID), zap.Error(err))
				}
			}
		}
	}()
	start := time.Now()
	r, err := replicate.Copy(ctx, src, dst, opts)
	close(stop)
	wg.Wait()
	report(run, prog)
	if err != nil {
		s.c.Metrics.copyFailed(rec.Kind)
		return err
	}
	res.BytesCopied, res.BytesSkipped = r.BytesCopied, r.BytesSkipped
	res.BlobsCopied, res.BlobsMounted, res.BlobsSkipped = r.BlobsCopied, r.BlobsMounted, r.BlobsSkipped
	res.ManifestsPushed, res.ReferrersCopied, res.Resumes = r.ManifestsPushed, r.ReferrersCopied, r.Resumes
	run.SetResult(res)
	run.Logf("info", "copied %s: %d bytes sent, %d blobs copied, %d mounted, %d already there, %d referrers",
		res.Target, r.BytesCopied, r.BlobsCopied, r.BlobsMounted, r.BlobsSkipped, r.ReferrersCopied)
	s.c.Metrics.copied(rec.Kind, r.BytesCopied, time.Since(start), s.now().Sub(p.TriggeredAt))
	if dst.Client == s.c.Local {
		if err := s.localPush(ctx, dstRepo, cp.TargetTag, cp.Digest, p.Hops+1); err != nil {
			run.Logf("warn", "copied %s, but could not record the push: %v", res.Target, err)
			return err
		}
	}
	return nil
}

// localPush tells the origin and the policies of repo about a tag this
// service wrote into the local registry. An error (the event or a chained
// job not stored) fails the job's attempt, so that a retry records it.
func (s *Service) localPush(ctx context.Context, repo, tag, digest string, hops int) error {
	if s.c.Pushed != nil {
		if err := s.c.Pushed(ctx, repo, tag, digest); err != nil {
			return fmt.Errorf("recording the push of %s:%s: %w", repo, tag, err)
		}
	}
	if hops >= maxHops {
		s.log.Warn("promotion chain too long; not following it further", zap.String("repo", repo), zap.String("tag", tag), zap.Int("hops", hops))
		return nil
	}
	_, err := s.onPush(ctx, repo, tag, digest, hops)
	return err
}

func report(run *jobs.Run, prog *replicate.Progress) {
	snap := prog.Snapshot()
	cur := ""
	for d := range snap.Current {
		if cur == "" || d < cur {
			cur = d
		}
	}
	run.Progress(jobs.Progress{BytesDone: snap.BytesCopied + snap.BytesSkipped, BlobsDone: int(snap.BlobsDone),
		BlobsTotal: int(snap.BlobsTotal), Current: cur})
}

// pollConcurrency is how many tags a poll resolves at once.
const pollConcurrency = 8

// pollParams are the parameters of a poll job.
type pollParams struct {
	PolicyID    string    `json:"policyID"`
	TriggeredAt time.Time `json:"triggeredAt"`
}

// PollResult is the result of a poll job.
type PollResult struct {
	RemoteTags int      `json:"remoteTags"`
	Matched    int      `json:"matched"`
	Unchanged  int      `json:"unchanged"`
	Queued     []string `json:"queued,omitempty"`  // tags whose copy was queued
	Deleted    []string `json:"deleted,omitempty"` // local tags removed (mirrorDeletes)
}

// execPoll lists the remote tags of a poll-mirroring policy and queues a
// copy for every tag that meets the rules and differs locally.
func (s *Service) execPoll(ctx context.Context, run *jobs.Run) error {
	var p pollParams
	if err := run.Params(&p); err != nil {
		return permanentError{err}
	}
	rec, ok := s.Lookup(p.PolicyID)
	if !ok || rec.Kind != PollMirroring {
		return permanentf("poll-mirroring policy %s no longer exists", p.PolicyID)
	}
	if !rec.Enabled() {
		run.Logf("info", "skipped: the policy is disabled")
		return nil
	}
	remote, err := s.remoteFor(ctx, rec)
	if err != nil {
		return err
	}
	pol := rec.Poll
	tags, err := listTags(ctx, remote, pol.RemoteRepository)
	if err != nil {
		return err
	}
	template, err := policy.ParseTagTemplate(pol.TagTemplate)
	if err != nil {
		return permanentError{err}
	}
	res := PollResult{RemoteTags: len(tags)}
	sched, err := s.pollState(ctx, rec.ID())
	if err != nil {
		return err
	}
	mirrored := map[string]string{} // local tag → remote tag, this poll
	type candidate struct{ remoteTag, localTag, remoteDigest, localDigest string }
	var cands []*candidate
	for _, tag := range tags {
		if !nameRulesHold(pol.Rules, pol.RemoteRepository, tag, s.now()) || referrersTag(tag) {
			continue
		}
		res.Matched++
		localTag, err := template.In(s.c.Location).Expand(tag, p.TriggeredAt)
		if err != nil {
			run.Logf("error", "tag %s: %v", tag, err)
			continue
		}
		mirrored[localTag] = tag
		cands = append(cands, &candidate{remoteTag: tag, localTag: localTag})
	}
	// Both digests of every candidate, pollConcurrency tags at a time.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, pollConcurrency)
	)
	for _, c := range cands {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rd, err := resolve(ctx, replicate.Ref{Client: remote, Repository: pol.RemoteRepository, Tag: c.remoteTag})
			var ld string
			if err == nil {
				ld, err = resolve(ctx, replicate.Ref{Client: s.c.Local, Repository: pol.LocalRepository, Tag: c.localTag})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			c.remoteDigest, c.localDigest = rd, ld
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, c := range cands {
		if c.remoteDigest == "" || c.localDigest == c.remoteDigest {
			res.Unchanged++ // gone since the listing, or the same
			continue
		}
		if _, err := s.enqueueCopy(ctx, rec, ActionPollMirrorTag, copyParams{Repository: pol.RemoteRepository, Tag: c.remoteTag,
			Digest: c.remoteDigest, TriggeredAt: p.TriggeredAt}); err != nil {
			return err
		}
		res.Queued = append(res.Queued, c.remoteTag)
	}
	if pol.MirrorDeletes {
		for localTag, remoteTag := range sched.Mirrored {
			if _, still := mirrored[localTag]; still {
				continue
			}
			if err := deleteTag(ctx, replicate.Ref{Client: s.c.Local, Repository: pol.LocalRepository, Tag: localTag}); err != nil {
				run.Logf("error", "deleting %s:%s (gone from the remote as %s): %v", pol.LocalRepository, localTag, remoteTag, err)
				mirrored[localTag] = remoteTag // try again next poll
				continue
			}
			res.Deleted = append(res.Deleted, localTag)
			run.Logf("info", "deleted %s:%s: the remote tag %s is gone (mirrorDeletes)", pol.LocalRepository, localTag, remoteTag)
		}
	} else {
		for k, v := range sched.Mirrored {
			if _, ok := mirrored[k]; !ok {
				mirrored[k] = v // remembered in case mirrorDeletes is turned on later
			}
		}
	}
	if err := s.setMirrored(ctx, rec.ID(), mirrored); err != nil {
		return err
	}
	run.SetResult(res)
	run.Logf("info", "polled %s/%s: %d tags, %d matched, %d unchanged, %d queued, %d deleted", pol.RemoteHost,
		pol.RemoteRepository, res.RemoteTags, res.Matched, res.Unchanged, len(res.Queued), len(res.Deleted))
	return nil
}
