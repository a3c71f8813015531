// Package stack is the test environment's whole origin: the US/Asia
// topology of package testenv with the origin's policy engine (policies,
// jobs, a job runner, serving the policies and jobs API), its events and
// webhooks (the webhooks API; a TAG_PUSH event for each tag pushed through
// the origin) and its web console at /console/. The demo, the console's
// tests and its browser tests run it.
//
// It is a package of its own because the policy engine links the copy
// engine (proxy/replicate), whose own tests use package testenv.
package stack

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/proxy/regapi"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/zap"
)

// Options configure a stack.
type Options struct {
	testenv.TopologyOptions
	// Console tunes the web console; the stack sets its Origin, Users,
	// Access, DB, Prober, Keys and Store.
	Console console.Config
}

// Stack is a running topology with the policy engine and the console.
type Stack struct {
	*testenv.Topology
	// ConsoleURL is the web console as seen from Asia (across the WAN).
	ConsoleURL string
	// Console is the console's handler.
	Console *console.Console
	// Policies is the policy engine; Jobs its queue.
	Policies *policies.Service
	Jobs     *jobs.Queue
	// Events is the events service (outbox, webhooks, deliveries).
	Events *events.Service
}

// Start starts a stack. Close (the topology's) stops it.
func Start(ctx context.Context, opt Options) (*Stack, error) {
	st := &Stack{}
	opt.Extend = st.extend(opt.Console)
	tp, err := testenv.StartTopology(ctx, opt.TopologyOptions)
	if err != nil {
		return nil, err
	}
	st.Topology, st.ConsoleURL = tp, tp.OriginURL+console.Prefix
	return st, nil
}

// extend builds the policy engine and the console on the origin's parts.
func (st *Stack) extend(cc console.Config) func(context.Context, testenv.OriginParts) (testenv.OriginExtension, error) {
	return func(ctx context.Context, p testenv.OriginParts) (testenv.OriginExtension, error) {
		log := p.Logger
		store := p.DB.Store()
		key, err := policies.LoadSecretKey(filepath.Join(p.Dir, "secrets.key"), true)
		if err != nil {
			return testenv.OriginExtension{}, err
		}
		secrets, err := policies.NewSecrets(store, key)
		if err != nil {
			return testenv.OriginExtension{}, err
		}
		// Every test registry is on loopback.
		guard, err := netguard.New(netguard.Config{AllowPrivate: []string{"127.0.0.0/8"}})
		if err != nil {
			return testenv.OriginExtension{}, err
		}
		local, err := upstream.New(upstream.Config{URLs: []string{p.Backend.URL}, UserAgent: "dtrcache-testenv"})
		if err != nil {
			return testenv.OriginExtension{}, err
		}
		st.Jobs = &jobs.Queue{Store: store}
		if st.Policies, err = policies.New(policies.Config{Store: store, Queue: st.Jobs, Local: local, Secrets: secrets,
			Guard: guard, Access: p.Access, Logger: log.Named("policies")}); err != nil {
			return testenv.OriginExtension{}, err
		}
		runner := &jobs.Runner{Queue: st.Jobs, Executors: st.Policies.Executors(), Classify: policies.Classify, Workers: 2,
			Replica: "stack", Logger: log.Named("jobs")}
		audit := log.Named("audit")
		if st.Events, err = events.NewService(events.Config{Store: store, Delivery: events.DeliveryConfig{Guard: guard},
			Host: "origin.stack", Logger: log.Named("events")}); err != nil {
			return testenv.OriginExtension{}, err
		}
		auth := origin.Authenticator{Users: p.Users}
		webhooks := st.Events.API(identifier{auth}, authority{access: p.Access, backend: local})
		api := http.NewServeMux()
		for _, prefix := range []string{"/api/v0/webhooks", "/api/v0/webhooks/", "/api/v0/namespaces/"} {
			api.Handle(prefix, webhooks)
		}
		api.Handle("/", st.Policies.Handler(auth, audit))
		ext := testenv.OriginExtension{
			API: api,
			Pushed: func(ctx context.Context, push origin.Push) {
				st.Policies.OnPush(ctx, policies.Push{Repository: push.Repository, Tag: push.Tag, Digest: push.Digest, Subject: push.Subject})
				if push.Tag == "" {
					return
				}
				ev, err := events.NewImageEvent(events.TagPush, events.Image{Repository: push.Repository, Tag: push.Tag, Digest: push.Digest,
					Host: "origin.stack", MediaType: push.MediaType}, push.User, push.At, events.SourceOrigin)
				if err == nil {
					_, err = st.Events.Outbox.Emit(ctx, ev)
				}
				if err != nil {
					log.Error("stack: recording a push", zap.Error(err))
				}
			},
		}
		ext.Mount = func(o http.Handler) (map[string]http.Handler, error) {
			cc.Origin, cc.Users, cc.Access, cc.DB, cc.Prober, cc.Keys, cc.Store = o, p.Users, p.Access, p.DB, p.Prober, p.Keys, store
			if cc.Logger == nil {
				cc.Logger = log.Named("console")
			}
			if cc.Audit == nil {
				cc.Audit = audit
			}
			if cc.Metrics == nil {
				cc.Metrics = console.NewMetrics(p.Metrics)
			}
			if st.Console, err = console.New(cc); err != nil {
				return nil, err
			}
			return map[string]http.Handler{console.Prefix: st.Console}, nil
		}
		ext.Run = func(ctx context.Context) {
			var wg sync.WaitGroup
			events := func(ctx context.Context) error { st.Events.Run(ctx); return nil }
			for _, run := range []func(context.Context) error{st.Policies.Run, runner.Run, st.Console.Run, events} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := run(ctx); err != nil && ctx.Err() == nil {
						log.Error("stack: background work stopped", zap.Error(err))
					}
				}()
			}
			wg.Wait()
		}
		return ext, nil
	}
}

// identifier is the webhooks API's login: the origin's accounts, a 401
// with the challenge when anonymous.
type identifier struct{ auth origin.Authenticator }

func (i identifier) Identify(r *http.Request) (string, error) {
	user, err := i.auth.User(r)
	if err == nil && user == "" {
		err = regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "authentication required").
			WithHeader("WWW-Authenticate", `Basic realm="dtrcache"`)
	}
	return user, err
}

// authority answers the webhooks API with the origin's access rules.
type authority struct {
	access  *policy.Access
	backend *upstream.Client
}

// CanAdmin: administrators anything; a repository's or namespace's
// administrators its scope (a namespace as any repository in it).
func (a authority) CanAdmin(user, scope string) bool {
	if a.access.IsAdmin(user) {
		return true
	}
	if scope == "" {
		return false
	}
	if !strings.Contains(scope, "/") {
		scope += "/*"
	}
	return a.access.Decide(user, scope, policy.ActionAdmin).Allowed
}

// RepositoryExists asks the backend for the repository's tags.
func (a authority) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	resp, err := a.backend.Do(ctx, upstream.Request{Method: http.MethodGet, Path: "/v2/" + repo + "/tags/list"})
	if err != nil {
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return false, nil
		}
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}
