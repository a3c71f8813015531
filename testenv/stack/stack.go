// Package stack is the test environment's whole origin: the US/Asia
// topology of package testenv with the origin's policy engine (policies,
// jobs, a job runner, serving the policies and jobs API), its events and
// webhooks (the origin's real events wiring, proxy/originevents: the
// webhooks API, events for what passes through the origin, cache health
// and policy jobs) and its web console at /console/. The demo, the console's
// tests and its browser tests run it.
//
// It is a package of its own because the policy engine links the copy
// engine (proxy/replicate), whose own tests use package testenv.
package stack

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/dtrcache/dtrcache/proxy/console"
	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/originevents"
	"github.com/dtrcache/dtrcache/proxy/policies"
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
		if st.Events, err = events.NewService(events.Config{Store: store, Delivery: events.DeliveryConfig{Guard: guard},
			Host: "origin.stack", Logger: log.Named("events")}); err != nil {
			return testenv.OriginExtension{}, err
		}
		wiring, err := originevents.New(originevents.Config{Service: st.Events, Store: store, Backend: local, Host: "origin.stack",
			Users: p.Users, Access: p.Access, Logger: log.Named("events")})
		if err != nil {
			return testenv.OriginExtension{}, err
		}
		if st.Policies, err = policies.New(policies.Config{Store: store, Queue: st.Jobs, Local: local, Secrets: secrets,
			Guard: guard, Access: p.Access, Logger: log.Named("policies"), Pushed: wiring.LocalPush}); err != nil {
			return testenv.OriginExtension{}, err
		}
		st.Jobs.Hook = wiring.JobHook(st.Policies.DescribeJob)
		runner := &jobs.Runner{Queue: st.Jobs, Executors: st.Policies.Executors(), Classify: policies.Classify, Workers: 2,
			Replica: "stack", Logger: log.Named("jobs")}
		audit := log.Named("audit")
		ext := testenv.OriginExtension{
			API: st.Policies.Handler(origin.Authenticator{Users: p.Users}, audit),
			Pushed: []func(context.Context, origin.Push) error{func(ctx context.Context, push origin.Push) error {
				_, err := st.Policies.OnPush(ctx, policies.Push{Repository: push.Repository, Tag: push.Tag, Digest: push.Digest, Subject: push.Subject})
				return err
			}},
			Configure: wiring.Configure,
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
			events := func(ctx context.Context) error { wiring.Run(ctx); return nil }
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
