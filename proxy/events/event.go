package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Type is an event type. The names are DTR's where DTR has the event.
type Type string

// The event types.
const (
	TagPush        Type = "TAG_PUSH"
	TagDelete      Type = "TAG_DELETE"
	TagPull        Type = "TAG_PULL"
	ManifestPush   Type = "MANIFEST_PUSH"
	ManifestDelete Type = "MANIFEST_DELETE"
	ManifestPull   Type = "MANIFEST_PULL"
	Promotion      Type = "PROMOTION"
	PushMirroring  Type = "PUSH_MIRRORING"
	PollMirroring  Type = "POLL_MIRRORING"
	RepoEvent      Type = "REPO_EVENT"
	CacheDown      Type = "CACHE_DOWN"
	CacheUp        Type = "CACHE_UP"
)

// Types lists every event type, in the order the README documents them.
var Types = []Type{TagPush, TagDelete, TagPull, ManifestPush, ManifestDelete, ManifestPull,
	Promotion, PushMirroring, PollMirroring, RepoEvent, CacheDown, CacheUp}

// Scope says what a subscription's key may name for a type.
type Scope int

// The scopes.
const (
	// ScopeRepository: a repository "ns/repo", a namespace "ns", or ""
	// (every repository; administrators only).
	ScopeRepository Scope = iota + 1
	// ScopeNamespace: a namespace, or "" (administrators only).
	ScopeNamespace
	// ScopeGlobal: no key; administrators only.
	ScopeGlobal
)

// Scope returns the scope of t, and 0 for an unknown type.
func (t Type) Scope() Scope {
	switch t {
	case TagPush, TagDelete, TagPull, ManifestPush, ManifestDelete, ManifestPull, Promotion, PushMirroring, PollMirroring:
		return ScopeRepository
	case RepoEvent:
		return ScopeNamespace
	case CacheDown, CacheUp:
		return ScopeGlobal
	}
	return 0
}

// Valid reports whether t is a known type.
func (t Type) Valid() bool { return t.Scope() != 0 }

// Pull reports whether t is one of the pull types, which are only
// recorded while someone subscribes to them (they are many).
func (t Type) Pull() bool { return t == TagPull || t == ManifestPull }

// Event is one event, as stored in the outbox and as delivered: the body
// of every webhook request is exactly the event's JSON.
type Event struct {
	Type      Type      `json:"type"`
	CreatedAt time.Time `json:"createdAt"`
	// ID is unique and stable: every delivery of the event carries it
	// (also in the X-Dtrcache-Event-Id header), so receivers can drop
	// duplicates. The outbox assigns it.
	ID string `json:"id"`
	// Contents depend on the type; see the *Contents types.
	Contents json.RawMessage `json:"contents"`
}

// scope is what subscriptions match an event by: the repository (full
// name) of repository and namespace events.
type scope struct {
	Namespace  string `json:"namespace"`
	Repository string `json:"repository"`
}

// Repository returns the full name of the repository the event is about
// ("" for global events).
func (e Event) Repository() string {
	if e.Type.Scope() == ScopeGlobal {
		return ""
	}
	var s scope
	if json.Unmarshal(e.Contents, &s) != nil {
		return ""
	}
	return JoinName(s.Namespace, s.Repository)
}

// SplitName splits a repository name into DTR's namespace (the first
// path component) and repository (the rest). A name of one component has
// no namespace.
func SplitName(name string) (namespace, repository string) {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// JoinName is the inverse of SplitName.
func JoinName(namespace, repository string) string {
	if namespace == "" {
		return repository
	}
	return namespace + "/" + repository
}

// Image names what a registry event is about.
type Image struct {
	// Repository is the full repository name ("team/app").
	Repository string
	// Tag is the tag, for tag events.
	Tag string
	// Digest is the manifest's digest (for TAG_DELETE: when known).
	Digest string
	// Host is the registry host clients use ("dtr.example.org"); it
	// makes imageName.
	Host string
	// Platform fields, when known: a single-platform manifest's os and
	// architecture, an index's platforms ("linux/arm64/v8").
	OS, Architecture string
	Platforms        []string
	MediaType        string
}

// ImageContents are the contents of TAG_PUSH, TAG_DELETE, TAG_PULL,
// MANIFEST_PUSH, MANIFEST_DELETE and MANIFEST_PULL: DTR's fields, one
// timestamp by kind (pushedAt, deletedAt or pulledAt), and ours after them.
type ImageContents struct {
	Namespace    string    `json:"namespace"`
	Repository   string    `json:"repository"`
	Tag          string    `json:"tag,omitempty"`
	Digest       string    `json:"digest"`
	ImageName    string    `json:"imageName"`
	OS           string    `json:"os"`
	Architecture string    `json:"architecture"`
	Author       string    `json:"author"`
	PushedAt     time.Time `json:"pushedAt,omitzero"`
	DeletedAt    time.Time `json:"deletedAt,omitzero"`
	PulledAt     time.Time `json:"pulledAt,omitzero"`
	MediaType    string    `json:"mediaType,omitempty"`
	Platforms    []string  `json:"platforms,omitempty"`
	// Source says who reported it: "origin" (a request through the
	// origin) or "registry" (the backend's own notification).
	Source string `json:"source,omitempty"`
}

// The sources of image events.
const (
	SourceOrigin   = "origin"
	SourceRegistry = "registry"
)

// NewImageEvent returns an event of type t (one of the six image types)
// about img, by author at at, reported by source.
func NewImageEvent(t Type, img Image, author string, at time.Time, source string) (Event, error) {
	switch t {
	case TagPush, TagDelete, TagPull:
		if img.Tag == "" {
			return Event{}, fmt.Errorf("events: %s needs a tag", t)
		}
	case ManifestPush, ManifestDelete, ManifestPull:
		if img.Digest == "" {
			return Event{}, fmt.Errorf("events: %s needs a digest", t)
		}
		img.Tag = ""
	default:
		return Event{}, fmt.Errorf("events: %s is not an image event", t)
	}
	ns, repo := SplitName(img.Repository)
	c := ImageContents{
		Namespace: ns, Repository: repo, Tag: img.Tag, Digest: img.Digest, ImageName: imageName(img),
		OS: img.OS, Architecture: img.Architecture, Author: author, MediaType: img.MediaType,
		Platforms: img.Platforms, Source: source,
	}
	at = at.UTC()
	switch t {
	case TagPush, ManifestPush:
		c.PushedAt = at
	case TagDelete, ManifestDelete:
		c.DeletedAt = at
	default:
		c.PulledAt = at
	}
	return newEvent(t, at, c)
}

// imageName is the name clients pull: host/repo:tag, or host/repo@digest.
func imageName(img Image) string {
	name := img.Repository
	if img.Host != "" {
		name = img.Host + "/" + name
	}
	if img.Tag != "" {
		return name + ":" + img.Tag
	}
	if img.Digest != "" {
		return name + "@" + img.Digest
	}
	return name
}

// The kinds of REPO_EVENT, DTR's values.
const (
	RepoCreated = "REPO_CREATED"
	RepoDeleted = "REPO_DELETED"
)

// RepoContents are the contents of REPO_EVENT.
type RepoContents struct {
	Namespace  string `json:"namespace"`
	Repository string `json:"repository"`
	// Event is REPO_CREATED (its first manifest was pushed) or
	// REPO_DELETED.
	Event  string    `json:"event"`
	Author string    `json:"author"`
	At     time.Time `json:"at"`
	// Data is DTR's repository object; here its name and where it is.
	Data RepoData `json:"data"`
}

// RepoData describes the repository of a REPO_EVENT.
type RepoData struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ImageName is host/repo, when the host is known.
	ImageName string `json:"imageName,omitempty"`
}

// NewRepoEvent returns a REPO_EVENT of kind (RepoCreated or RepoDeleted)
// for repository (full name) on host.
func NewRepoEvent(kind, repository, host, author string, at time.Time) (Event, error) {
	if kind != RepoCreated && kind != RepoDeleted {
		return Event{}, fmt.Errorf("events: unknown repository event %q", kind)
	}
	ns, repo := SplitName(repository)
	d := RepoData{Name: repo, Namespace: ns}
	if host != "" {
		d.ImageName = host + "/" + repository
	}
	return newEvent(RepoEvent, at, RepoContents{Namespace: ns, Repository: repo, Event: kind, Author: author, At: at.UTC(), Data: d})
}

// CacheContents are the contents of CACHE_DOWN and CACHE_UP: the
// origin's health probe of a registered cache changed its verdict.
type CacheContents struct {
	// Name is the cache's registered name; Host its URL.
	Name string `json:"name"`
	Host string `json:"host"`
	// State is "down" or "up".
	State string `json:"state"`
	// Reason is why a probe failed (CACHE_DOWN).
	Reason    string    `json:"reason,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
}

// NewCacheEvent returns CACHE_UP (up) or CACHE_DOWN (with its reason).
func NewCacheEvent(name, host string, up bool, reason string, at time.Time) (Event, error) {
	c := CacheContents{Name: name, Host: host, State: "down", Reason: reason, CheckedAt: at.UTC()}
	t := CacheDown
	if up {
		t, c.State, c.Reason = CacheUp, "up", ""
	}
	return newEvent(t, at, c)
}

// ImageRef is one side of a job's copy.
type ImageRef struct {
	// Registry is the registry's host ("" for this origin's own).
	Registry   string `json:"registry,omitempty"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
}

// JobContents are the contents of PROMOTION, PUSH_MIRRORING and
// POLL_MIRRORING: one event per finished job, success or failure.
type JobContents struct {
	// Namespace and Repository are the local repository subscriptions
	// match: the source of a promotion or push mirror, the target of a
	// poll mirror.
	Namespace  string `json:"namespace"`
	Repository string `json:"repository"`
	JobID      string `json:"jobID"`
	PolicyID   string `json:"policyID,omitempty"`
	// State is the job's end: "done", "error" or "cancelled".
	State    string    `json:"state"`
	Source   ImageRef  `json:"source"`
	Target   ImageRef  `json:"target"`
	Digest   string    `json:"digest,omitempty"`
	Bytes    int64     `json:"bytes"`
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts"`
	Started  time.Time `json:"startedAt,omitzero"`
	Ended    time.Time `json:"endedAt,omitzero"`
}

// NewJobEvent returns an event of t (PROMOTION, PUSH_MIRRORING or
// POLL_MIRRORING) with contents c; c.Namespace and c.Repository are
// filled in from local (the repository subscriptions match) when empty.
func NewJobEvent(t Type, local string, c JobContents, at time.Time) (Event, error) {
	switch t {
	case Promotion, PushMirroring, PollMirroring:
	default:
		return Event{}, fmt.Errorf("events: %s is not a job event", t)
	}
	if c.Namespace == "" && c.Repository == "" {
		c.Namespace, c.Repository = SplitName(local)
	}
	if c.Repository == "" {
		return Event{}, fmt.Errorf("events: %s needs a repository", t)
	}
	return newEvent(t, at, c)
}

func newEvent(t Type, at time.Time, contents any) (Event, error) {
	b, err := json.Marshal(contents)
	if err != nil {
		return Event{}, fmt.Errorf("events: encode %s contents: %w", t, err)
	}
	return Event{Type: t, CreatedAt: at.UTC(), Contents: b}, nil
}
