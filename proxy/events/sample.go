package events

import (
	"fmt"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/state"
)

// sampleDigest is the digest DTR's test payloads use.
const sampleDigest = "sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"

// Sample returns an example event of t, the same every time but for its
// id and creation time: what POST /api/v0/webhooks/test sends.
func Sample(t Type, host string) (Event, error) {
	at := time.Date(2015, 1, 2, 15, 4, 5, 0, time.UTC)
	img := Image{Repository: "foo/bar", Tag: "latest", Digest: sampleDigest, Host: host, OS: "linux", Architecture: "amd64",
		MediaType: "application/vnd.oci.image.manifest.v1+json", Platforms: []string{"linux/amd64"}}
	var ev Event
	var err error
	switch t {
	case TagPush, TagDelete, TagPull, ManifestPush, ManifestDelete, ManifestPull:
		if t == TagDelete || t == ManifestDelete {
			// What is deleted is not read for its platforms.
			img.OS, img.Architecture, img.Platforms, img.MediaType = "", "", nil, ""
		}
		ev, err = NewImageEvent(t, img, "alice", at, SourceOrigin)
	case Promotion, PushMirroring, PollMirroring:
		c := JobContents{JobID: "018cc251f400-5f1d9a4b", PolicyID: "promote-stable", State: "done",
			Source: ImageRef{Repository: "foo/bar", Tag: "latest"}, Target: ImageRef{Repository: "foo/bar-prod", Tag: "latest"},
			Digest: sampleDigest, Bytes: 31457280, Attempts: 1, Started: at, Ended: at.Add(12 * time.Second)}
		switch t {
		case PushMirroring:
			c.PolicyID = "mirror-eu"
			c.Target.Registry = "dtr-eu.example.org"
			c.Target.Repository = "foo/bar"
		case PollMirroring:
			c.PolicyID = "poll-hub"
			c.Source.Registry = "registry-1.docker.io"
			c.Source.Repository = "library/bar"
		}
		local := c.Source.Repository
		if t == PollMirroring {
			local = c.Target.Repository
		}
		ev, err = NewJobEvent(t, local, c, at)
	case RepoEvent:
		ev, err = NewRepoEvent(RepoCreated, "foo/bar", host, "alice", at)
	case CacheDown:
		ev, err = NewCacheEvent("asia", "https://cache-asia.example.org", false, "Get \"https://cache-asia.example.org/healthz\": dial tcp: connection refused", at)
	case CacheUp:
		ev, err = NewCacheEvent("asia", "https://cache-asia.example.org", true, "", at)
	default:
		return Event{}, fmt.Errorf("events: unknown event type %q", t)
	}
	return ev, err
}

// JobHook returns a jobs.Hook that writes one event for every job that
// finishes (done, error or cancelled), in the same transaction as the
// job's end, so the event exists exactly when the end does. fn makes the
// event from the finished job; false means none (a job of another kind).
// An event fn makes that cannot be encoded is dropped, and onError (if
// set) is told.
func JobHook(o *Outbox, fn func(j jobs.Job) (Event, bool), onError func(jobs.Job, error)) jobs.Hook {
	return func(old *jobs.Job, j jobs.Job) []state.Op {
		if !j.State.Terminal() || (old != nil && old.State.Terminal()) {
			return nil
		}
		ev, ok := fn(j)
		if !ok {
			return nil
		}
		ops, err := o.Ops(ev)
		if err != nil {
			if onError != nil {
				onError(j, err)
			}
			return nil
		}
		return ops
	}
}

// JobEvent fills in the job's own fields of c (id, policy, state,
// attempts, times, bytes and error when c has none) and returns the event
// of type t about the local repository.
func JobEvent(t Type, local string, j jobs.Job, c JobContents) (Event, error) {
	c.JobID, c.PolicyID, c.State, c.Attempts = j.ID, j.PolicyID, string(j.State), j.Attempts
	c.Started, c.Ended = j.StartedAt, j.EndedAt
	if c.Bytes == 0 {
		c.Bytes = j.Progress.BytesDone
	}
	if c.Error == "" && j.State != jobs.Done {
		c.Error = j.LastError
	}
	at := j.EndedAt
	if at.IsZero() {
		at = time.Now()
	}
	return NewJobEvent(t, local, c, at)
}
