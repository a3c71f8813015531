// Package events is the origin's events and webhooks: registry operations
// (through the origin, and from the backend registry's own
// notifications), policy jobs and cache health changes become events in a
// durable outbox, and each event is delivered at least once, signed, in
// order, to every webhook that subscribes to it.
//
// # The outbox
//
// An event is a key under events/out/e/ in the origin's state store,
// written (Outbox.Ops, Outbox.Emit) in the same transaction as whatever
// it reports — a job's end (JobHook), a push's de-duplication record
// (Deduper) — before anything acknowledges it. Deliverers go through the
// outbox in commit order: by the store revision of each entry, then its
// id (the entries of one transaction share a revision). The order of keys
// means nothing: two replicas writing at once may commit a smaller key
// later, and a deliverer that had passed it by key would skip it. The
// feed (feed.go) keeps the outbox in memory in revision order and knows
// how far that order is complete, by watching before it lists, with a
// barrier write in between.
//
// # Delivery
//
// One deliverer per webhook across replicas: the Dispatcher of each
// replica claims (state.Store.Claim, an etcd lease) the webhooks nobody
// holds and runs a deliverer for each claim. A deliverer posts each
// matching event, in order, with X-Dtrcache-Event-Id and
// X-Dtrcache-Signature-256 (HMAC-SHA256 of the body with the webhook's
// secret), and after a 2xx advances its cursor with a conditional write.
// A failure (no answer, a timeout, any status but 2xx) is retried at the
// same event, after a backoff that doubles (with jitter, Retry-After
// honoured); after MaxAttempts or MaxFailureTime the webhook is marked
// inactive until an administrator re-enables it, and resumes at that
// event. A process that dies mid-delivery leaves the cursor before the
// event: the next holder sends it again, with the same id.
//
// Endpoints are dialled only through a Guard (netguard): refused
// addresses (loopback, private, link-local…) are refused when the webhook
// is made and when it is dialled.
//
// # The same operation seen twice
//
// A push through the origin is seen by the origin (the proxied response)
// and again by the backend's notification. Deduper counts them per
// (action, repository, tag, digest): see its documentation for the rule.
package events
