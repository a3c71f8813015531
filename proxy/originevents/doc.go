// Package originevents connects the origin to its events (proxy/events).
//
// What the origin proxies (pushes, deletes, pulls while someone
// subscribes to them), what the backend registry's notifications report,
// what the cache health prober finds changed and how each policy job ends
// become events in the outbox; the webhooks API and the notifications
// receiver are mounted beside the origin's own API, with the origin's
// accounts and access rules. The command (cmd/dtrcache) and the test
// environment's stack (testenv/stack) build the same Wiring.
//
// Every report goes through the events.Deduper, so a push seen by the
// origin and again by the backend's notification is one event. The
// origin's reports are written before the client hears the backend's
// answer; the receiver answers the registry only once the events are
// durable.
package originevents
