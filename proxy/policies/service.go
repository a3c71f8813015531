package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"go.uber.org/zap"
)

// Config configures the policy service.
type Config struct {
	// Store keeps policies, secrets and poll schedules; Queue the jobs
	// (on the same store).
	Store state.Store
	Queue *jobs.Queue
	// Local is the origin's backend registry, with the origin's own
	// credentials: promotions copy within it (blobs mounted), mirrors copy
	// to and from it.
	Local *upstream.Client
	// Secrets seals remote passwords.
	Secrets *Secrets
	// Guard checks every address a remote registry resolves to
	// (loopback, private and link-local refused unless allowed).
	Guard *netguard.Dialer
	// RemoteHosts, if not empty, are the only remote registries mirroring
	// policies may name.
	RemoteHosts RemoteHosts
	// Access decides who may create and change policies.
	Access *policy.Access
	// Concurrency is how many blobs one copy moves at once (0: 4).
	Concurrency int
	// BandwidthLimit caps each copy's bytes per second (0: none).
	BandwidthLimit int64
	// Location is the time zone of tag templates (nil: UTC).
	Location *time.Location
	// UserAgent is sent to registries.
	UserAgent string
	// Pushed, if set, is told about every tag this service wrote into the
	// local registry (a promotion, a poll mirror), as the origin is about
	// pushes it proxies: for events. The service itself runs the policies
	// of the target repository (chains). An error fails the job's attempt
	// (it is retried, and the copy it made is found there again).
	Pushed func(ctx context.Context, repo, tag, digest string) error
	// Logger gets one line per decision.
	Logger *zap.Logger
	// Metrics, if set, counts copies.
	Metrics *Metrics
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// PollCheckEvery is how often poll schedules are looked at (0: 5s).
	PollCheckEvery time.Duration
}

// Service is the origin's policy engine: it stores policies, turns pushes,
// poll intervals and explicit runs into jobs, and runs those jobs with the
// copy engine. It is safe for concurrent use; Run owns its goroutines.
type Service struct {
	c        Config
	secrets  *Secrets
	policies *state.View[Record]
	log      *zap.Logger

	// mu guards remotes and remoteBlobs.
	mu      sync.Mutex
	remotes map[string]remoteClient // policy id → client for its remote
	// remoteBlobs are the blob indexes of the remote registries, by
	// remoteKey: one per registry and account, whatever the policy.
	remoteBlobs map[string]*replicate.BlobIndex
	// localBlobs remembers what the local registry has.
	localBlobs *replicate.BlobIndex
}

// New returns a service. Call Run to load the policies and schedule polls.
func New(c Config) (*Service, error) {
	if c.Store == nil || c.Queue == nil || c.Local == nil || c.Secrets == nil || c.Access == nil || c.Guard == nil {
		return nil, errors.New("policies: store, queue, local registry, secrets, guard and access are required")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	s := &Service{c: c, secrets: c.Secrets, log: c.Logger, remotes: map[string]remoteClient{}, remoteBlobs: map[string]*replicate.BlobIndex{}, localBlobs: replicate.NewBlobIndex(blobIndexSize)}
	s.policies = &state.View[Record]{Store: c.Store, Prefix: policyPrefix, Decode: decodeRecord, Logger: c.Logger,
		OnChange: func(key string, exists bool) { s.forgetRemote(key[len(policyPrefix):]) }}
	return s, nil
}

func (s *Service) now() time.Time {
	if s.c.Now != nil {
		return s.c.Now().UTC()
	}
	return time.Now().UTC()
}

// Executors returns the job executors of the policy actions, for the
// origin's job runner.
func (s *Service) Executors() map[string]jobs.Executor {
	return map[string]jobs.Executor{
		ActionPromote:       jobs.ExecutorFunc(s.execCopy),
		ActionPushMirrorTag: jobs.ExecutorFunc(s.execCopy),
		ActionPollMirrorTag: jobs.ExecutorFunc(s.execCopy),
		ActionPollMirror:    jobs.ExecutorFunc(s.execPoll),
		ActionReferrers:     jobs.ExecutorFunc(s.execReferrers),
	}
}

// Run keeps the policies loaded and starts poll mirrors when they are
// due, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.policies.Run(ctx)
	}()
	if err := s.policies.WaitReady(ctx); err != nil {
		return nil
	}
	t := time.NewTicker(orDefault(s.c.PollCheckEvery, 5*time.Second))
	defer t.Stop()
	for {
		s.schedulePolls(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready waits until the policies are loaded.
func (s *Service) Ready(ctx context.Context) error { return s.policies.WaitReady(ctx) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Push is a manifest written into the local registry.
type Push struct {
	Repository string
	// Tag is the tag pushed ("" for a push by digest).
	Tag string
	// Digest is the manifest's digest, if known.
	Digest string
	// Subject is the digest of the manifest this one refers to (a
	// signature, an SBOM, an attestation: OCI 1.1 referrers), if any.
	Subject string
}

// OnPush is told about every manifest pushed into the local registry
// (through the origin, from the backend's notifications, or by this
// service): for a tag it queues a job for every enabled promotion and
// push-mirroring policy of the repository whose tag and repository rules
// the tag meets (the rules on the image itself are checked when the job
// runs, so a push costs no registry round trip here). A referrer (a
// manifest with a subject, or a tag of the sha256-<hex> scheme) makes the
// tags of its subject go again, so that a signature pushed after its
// image travels to where the image went. It returns the jobs queued or
// joined, and an error when a job could not be queued (the others are):
// the caller must not report the push as handled (the origin tells the
// client to push again; queueing is idempotent per policy and tag).
func (s *Service) OnPush(ctx context.Context, p Push) ([]jobs.Job, error) {
	if subject := referrersSubject(p); subject != "" {
		j, err := s.enqueueReferrers(ctx, p.Repository, subject)
		if err != nil {
			s.log.Error("queueing the policies of a referrer's subject", zap.String("repo", p.Repository), zap.String("subject", subject), zap.Error(err))
			return nil, fmt.Errorf("queueing the policies of %s's referrer: %w", subject, err)
		}
		if j == nil {
			return nil, nil
		}
		return []jobs.Job{*j}, nil
	}
	return s.onPush(ctx, p.Repository, p.Tag, p.Digest, 0)
}

func (s *Service) onPush(ctx context.Context, repo, tag, digest string, hops int) ([]jobs.Job, error) {
	if tag == "" || referrersTag(tag) {
		return nil, nil
	}
	if err := s.policies.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("waiting for the policies to load: %w", err)
	}
	var out []jobs.Job
	var errs []error
	for _, rec := range s.policies.All() {
		if !rec.Enabled() || rec.Repository() != repo || rec.Kind == PollMirroring {
			continue
		}
		rules, _ := rec.Rules()
		if !nameRulesHold(rules, repo, tag, s.now()) {
			continue
		}
		action := ActionPromote
		if rec.Kind == PushMirroring {
			action = ActionPushMirrorTag
		}
		j, err := s.enqueueCopy(ctx, rec, action, copyParams{Repository: repo, Tag: tag, Digest: digest, TriggeredAt: s.now(), Hops: hops})
		if err != nil {
			s.log.Error("queueing a policy job", zap.String("policy", rec.ID()), zap.String("repo", repo), zap.String("tag", tag), zap.Error(err))
			errs = append(errs, fmt.Errorf("queueing policy %s for %s:%s: %w", rec.ID(), repo, tag, err))
			continue
		}
		out = append(out, j)
	}
	return out, errors.Join(errs...)
}

// referrersSubject returns the digest a pushed referrer refers to: its
// subject, or the digest a referrers-scheme tag names ("" if p is no
// referrer).
func referrersSubject(p Push) string {
	if p.Subject != "" {
		return p.Subject
	}
	if !referrersTag(p.Tag) {
		return ""
	}
	hex, _, _ := strings.Cut(strings.TrimPrefix(p.Tag, "sha256-"), ".")
	return "sha256:" + hex
}

// referrersTag reports whether tag belongs to the referrers tag scheme
// (sha256-<hex> for an image's referrers index, and cosign's
// sha256-<hex>.sig/.att/.sbom): such tags travel with their subject, they
// are never images to promote or mirror on their own.
func referrersTag(tag string) bool {
	hex, _, _ := strings.Cut(strings.TrimPrefix(tag, "sha256-"), ".")
	if len(tag) < len("sha256-")+64 || !strings.HasPrefix(tag, "sha256-") || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// imageRules reports whether any rule needs the image itself (its
// manifest, configs or referrers), not only its repository and tag.
func imageRules(rules []policy.Rule) bool {
	for _, r := range rules {
		if r.Field != "tag" && r.Field != "repository" {
			return true
		}
	}
	return false
}

// nameRulesHold evaluates the rules that need only the repository and the
// tag. Rules that cannot compile never reach the store.
func nameRulesHold(rules []policy.Rule, repo, tag string, now time.Time) bool {
	var names []policy.Rule
	for _, r := range rules {
		if r.Field == "tag" || r.Field == "repository" {
			names = append(names, r)
		}
	}
	if len(names) == 0 {
		return true
	}
	m, err := policy.CompileRules(names)
	if err != nil {
		return false
	}
	return m.Match(policy.Image{Repository: repo, Tag: tag}, now)
}

// maxHops bounds a chain of promotions (dev → qa → prod …); saving a
// policy that closes a loop is refused, this is the second guard.
const maxHops = 16

func (s *Service) enqueueCopy(ctx context.Context, rec Record, action string, p copyParams) (jobs.Job, error) {
	p.Kind, p.PolicyID = rec.Kind, rec.ID()
	j, created, err := s.c.Queue.Enqueue(ctx, jobs.Spec{Action: action, PolicyID: rec.ID(), Key: rec.ID() + "/" + p.Tag, Params: p})
	if err != nil {
		return jobs.Job{}, err
	}
	s.log.Info("policy triggered", zap.String("policy", rec.ID()), zap.String("kind", string(rec.Kind)), zap.String("repo", p.Repository),
		zap.String("tag", p.Tag), zap.String("job", j.ID), zap.Bool("new_job", created))
	return j, nil
}

// Evaluate queues a job for every tag the policy's repository has now
// (initialEvaluation), or for a poll mirror one poll. It returns the jobs.
func (s *Service) Evaluate(ctx context.Context, id string) ([]jobs.Job, error) {
	rec, ok := s.Lookup(id)
	if !ok {
		return nil, ErrNotFound
	}
	if rec.Kind == PollMirroring {
		j, err := s.enqueuePoll(ctx, rec)
		if err != nil {
			return nil, err
		}
		return []jobs.Job{j}, nil
	}
	tags, err := listTags(ctx, s.c.Local, rec.Repository())
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", rec.Repository(), err)
	}
	var out []jobs.Job
	action := ActionPromote
	if rec.Kind == PushMirroring {
		action = ActionPushMirrorTag
	}
	rules, _ := rec.Rules()
	for _, tag := range tags {
		if !nameRulesHold(rules, rec.Repository(), tag, s.now()) {
			continue
		}
		j, err := s.enqueueCopy(ctx, rec, action, copyParams{Repository: rec.Repository(), Tag: tag, TriggeredAt: s.now()})
		if err != nil {
			return out, err
		}
		out = append(out, j)
	}
	return out, nil
}
