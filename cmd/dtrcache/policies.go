package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Defaults of the policy engine's settings.
const (
	defaultJobRetention = 30 * 24 * time.Hour
	pruneEvery          = time.Hour
)

// replicaName names this origin replica in job records and logs: the
// host name and the listen port, so two replicas on one machine (or two
// containers sharing a host name) are told apart.
func replicaName(addr string) string {
	host, _ := os.Hostname()
	if _, port, err := net.SplitHostPort(addr); err == nil && port != "" {
		return host + ":" + port
	}
	return host
}

// checkPolicies checks the policies section (called by checkOrigin).
func checkPolicies(p *config.Problems, cfg *config.Origin) {
	c := cfg.Policies
	if c.SecretKey == "" && cfg.State.Etcd != nil {
		p.Add("policies.secret_key", "required with state.etcd: every origin replica must read the same key file (make one with: head -c 32 /dev/urandom > secrets.key; chmod 600 secrets.key)")
	}
	if c.Workers < 0 || c.Workers > 64 {
		p.Add("policies.workers", "must be between 0 (the default, 4) and 64, got %d", c.Workers)
	}
	if c.Concurrency < 0 || c.Concurrency > 64 {
		p.Add("policies.concurrency", "must be between 0 (the default, 4) and 64, got %d", c.Concurrency)
	}
	if c.Bandwidth < 0 {
		p.Add("policies.bandwidth", "must not be negative")
	} else if c.Bandwidth > 0 && c.Bandwidth < 64<<10 {
		p.Add("policies.bandwidth", "at least 64KiB per second, got %d bytes", c.Bandwidth)
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 1000 {
		p.Add("policies.max_attempts", "must be between 0 (the default, 10) and 1000, got %d", c.MaxAttempts)
	}
	if r := c.Retention.D(); r < 0 || (r > 0 && r < time.Hour) {
		p.Add("policies.retention", "at least 1h, got %s", r)
	}
	if t := c.ClaimTTL.D(); t != 0 && (t < 5*time.Second || t > 10*time.Minute) {
		p.Add("policies.claim_ttl", "must be 0 (the default, 15s) or between 5s and 10m, got %s", t)
	}
	if _, err := netguard.ParsePrefixes("policies.allow_private", c.AllowPrivate); err != nil {
		p.AddEach(err, func(e error) string { return e.Error() })
	}
	for i, h := range c.AllowedRemotes {
		if h == "" || (&url.URL{Host: h}).Hostname() == "" {
			p.Add(fmt.Sprintf("policies.allowed_remotes[%d]", i), "want a host, host:port or *.domain, got %q", h)
		}
	}
	if c.Timezone != "" {
		if _, err := time.LoadLocation(c.Timezone); err != nil {
			p.Add("policies.timezone", "unknown time zone %q", c.Timezone)
		}
	}
}

// policyEngine is the origin's policy engine, built from its config.
type policyEngine struct {
	svc    *policies.Service
	queue  *jobs.Queue
	runner *jobs.Runner
	// retention is how long finished jobs are kept.
	retention time.Duration
	log       *zap.Logger
}

// engineHooks connect the policy engine to the events (both optional).
type engineHooks struct {
	// job makes the job queue's hook, given the service.
	job func(*policies.Service) jobs.Hook
	// pushed is told about every tag the engine writes into the local
	// registry.
	pushed func(ctx context.Context, repo, tag, digest string) error
}

// newPolicyEngine builds the service and the job runner on store, and
// applies the policy file (every problem of it at once) before anything
// serves.
func newPolicyEngine(ctx context.Context, cfg *config.Origin, store state.Store, local *upstream.Client, access *policy.Access,
	reg prometheus.Registerer, hooks engineHooks, log *zap.Logger) (*policyEngine, error) {
	pc := cfg.Policies
	keyPath := pc.SecretKey
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, "secrets.key")
	}
	key, err := policies.LoadSecretKey(keyPath, pc.SecretKey == "")
	if err != nil {
		return nil, fmt.Errorf("policies.secret_key: %w", err)
	}
	secrets, err := policies.NewSecrets(store, key)
	if err != nil {
		return nil, fmt.Errorf("policies.secret_key: %w", err)
	}
	guard, err := netguard.New(netguard.Config{AllowPrivate: pc.AllowPrivate})
	if err != nil {
		return nil, fmt.Errorf("policies.allow_private: %w", err)
	}
	loc := time.UTC
	if pc.Timezone != "" {
		if loc, err = time.LoadLocation(pc.Timezone); err != nil {
			return nil, fmt.Errorf("policies.timezone: %w", err)
		}
	}
	queue := &jobs.Queue{Store: store, MaxAttempts: pc.MaxAttempts}
	reg.MustRegister(jobs.NewOpenJobsCollector(queue))
	svc, err := policies.New(policies.Config{
		Store: store, Queue: queue, Local: local, Secrets: secrets, Guard: guard, RemoteHosts: pc.AllowedRemotes,
		Access: access, Concurrency: pc.Concurrency, BandwidthLimit: int64(pc.Bandwidth), Location: loc,
		UserAgent: "dtrcache/" + version, Logger: log.Named("policies"), Metrics: policies.NewMetrics(reg),
		Pushed: hooks.pushed,
	})
	if err != nil {
		return nil, err
	}
	if hooks.job != nil {
		queue.Hook = hooks.job(svc) // before any job moves: the runner starts later
	}
	runner := &jobs.Runner{Queue: queue, Executors: svc.Executors(), Classify: policies.Classify, Workers: pc.Workers,
		ClaimTTL: pc.ClaimTTL.D(), Replica: replicaName(cfg.HTTP.Addr), Logger: log.Named("jobs"), Metrics: jobs.NewMetrics(reg)}
	e := &policyEngine{svc: svc, queue: queue, runner: runner, retention: pc.Retention.D(), log: log}
	if e.retention == 0 {
		e.retention = defaultJobRetention
	}
	if pc.File != "" {
		if err := e.applyFile(ctx, pc.File); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// applyFile makes the file-managed policies those of the policy file.
func (e *policyEngine) applyFile(ctx context.Context, path string) error {
	f, err := config.LoadPolicyFile(path)
	if err != nil {
		return fmt.Errorf("policies.file: %w", err)
	}
	var defs []policies.FilePolicy
	where := func(kind, name string, line int) string {
		return fmt.Sprintf("%s:%d: %s policy %q", path, line, kind, name)
	}
	for _, p := range f.Promotion {
		pol := p.Policy
		defs = append(defs, policies.FilePolicy{Record: policies.Record{Kind: policies.Promotion, Promotion: &pol}, Where: where("promotion", pol.Name, p.Line)})
	}
	for _, p := range f.PushMirroring {
		pol := p.Policy
		defs = append(defs, policies.FilePolicy{Record: policies.Record{Kind: policies.PushMirroring, Push: &pol}, Where: where("pushMirroring", pol.Name, p.Line)})
	}
	for _, p := range f.PollMirroring {
		pol := p.Policy
		defs = append(defs, policies.FilePolicy{Record: policies.Record{Kind: policies.PollMirroring, Poll: &pol}, Where: where("pollMirroring", pol.Name, p.Line)})
	}
	if err := e.svc.SyncFile(ctx, defs); err != nil {
		return fmt.Errorf("policies.file %s:\n%w", path, err)
	}
	e.log.Info("policy file applied", zap.String("file", path), zap.Int("policies", len(defs)))
	return nil
}

// run runs the service, the job runner (once the policies are loaded) and
// the pruning of old jobs until ctx ends.
func (e *policyEngine) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.svc.Run(ctx) })
	g.Go(func() error {
		// A job resumed after a crash needs its policy: the runner claims
		// nothing until the service has loaded them (otherwise the job
		// fails for good with "policy … no longer exists").
		if err := e.svc.Ready(ctx); err != nil {
			return nil
		}
		return e.runner.Run(ctx)
	})
	g.Go(func() error {
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			if n, err := e.queue.Prune(ctx, time.Now().Add(-e.retention), 10000); err != nil && ctx.Err() == nil {
				e.log.Warn("pruning old jobs", zap.Error(err))
			} else if n > 0 {
				e.log.Info("pruned finished jobs", zap.Int("jobs", n), zap.Duration("older_than", e.retention))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	return g.Wait()
}
