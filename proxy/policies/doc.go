// Package policies is the origin's policy engine: promotion, push-mirroring
// and poll-mirroring policies (DTR's), stored in the origin's state store,
// turned into durable jobs (package jobs) by pushes, poll intervals and
// explicit runs, and carried out with the copy engine (package replicate).
//
// A push of a tag into a repository (seen by the origin, reported by the
// backend, or written by a policy itself: chains) queues one job per
// enabled policy of the repository whose tag and repository rules the tag
// meets; the rules on the image (labels, platforms, signatures, scan
// results) are checked when the job runs, against what the copy engine
// reads from the registry, so a push costs no registry round trip. A job
// pins the digest the tag points at when it starts and copies the whole
// image; a push of the same tag while it runs queues one follow-up.
//
// Remote registries are reached only through the netguard dialer, so a
// policy cannot make the origin connect to internal addresses, and only
// hosts on the origin's allow list may be named. Remote passwords are
// sealed in the store (Secrets) and never leave the API.
package policies
