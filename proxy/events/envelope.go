package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// NotificationsMediaType is the media type of distribution's notification
// envelopes.
const NotificationsMediaType = "application/vnd.docker.distribution.events.v2+json"

// Notification is one event of a distribution notification envelope
// ({"events":[…]}), with the fields dtrcache reads.
type Notification struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Size       int64  `json:"size"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		ID        string `json:"id"`
		Addr      string `json:"addr"`
		Host      string `json:"host"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name"`
	} `json:"actor"`
}

// ParseEnvelope decodes a notification envelope. Only a body that is not
// an envelope is an error; what each event means is Classify's business.
func ParseEnvelope(body []byte) ([]Notification, error) {
	var env struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("events: not a notification envelope: %w", err)
	}
	out := make([]Notification, 0, len(env.Events))
	for _, raw := range env.Events {
		var n Notification
		if err := json.Unmarshal(raw, &n); err != nil {
			// One odd event is skipped, not the envelope: the registry
			// would send it again forever.
			n = Notification{Action: "invalid"}
		}
		out = append(out, n)
	}
	return out, nil
}

// Kind is what a notification is about, for dtrcache.
type Kind int

// The kinds of notification.
const (
	// KindIgnored: blobs, mounts, unknown actions.
	KindIgnored Kind = iota
	KindManifestPush
	KindManifestPull
	KindManifestDelete
	KindTagDelete
	KindRepoDelete
)

// manifestTypes are the media types of manifests (a push or pull of
// anything else is a blob).
var manifestTypes = map[string]bool{
	"application/vnd.docker.distribution.manifest.v1+json":      true,
	"application/vnd.docker.distribution.manifest.v1+prettyjws": true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.oci.artifact.manifest.v1+json":             true,
}

// IsManifestMediaType reports whether mt is a manifest's media type.
func IsManifestMediaType(mt string) bool { return manifestTypes[mt] }

var errInvalid = errors.New("invalid notification")

// Classify says what n is about and returns its occurrence, or an error
// for a notification that names no valid repository, tag or digest.
//
// distribution reports a manifest push or pull with the manifest's media
// type and URL, a blob's with the blob's; a delete with a tag is a tag
// delete, with a digest a manifest delete (a blob delete looks the same:
// the origin marks those it proxies), and with neither a repository
// delete.
func Classify(n Notification) (Kind, Occurrence, error) {
	t := n.Target
	occ := Occurrence{Repository: t.Repository, Tag: t.Tag, Digest: t.Digest, Author: n.Actor.Name}
	if n.Action == "invalid" {
		return KindIgnored, occ, errInvalid
	}
	if !regapi.ValidName(t.Repository) {
		return KindIgnored, occ, fmt.Errorf("%w: repository %q", errInvalid, truncate(t.Repository, 300))
	}
	if t.Tag != "" && !regapi.ValidTag(t.Tag) {
		return KindIgnored, occ, fmt.Errorf("%w: tag %q", errInvalid, truncate(t.Tag, 200))
	}
	if t.Digest != "" {
		if _, err := casstore.ParseDigest(t.Digest); err != nil {
			return KindIgnored, occ, fmt.Errorf("%w: digest %q", errInvalid, truncate(t.Digest, 200))
		}
	}
	manifest := IsManifestMediaType(t.MediaType) || strings.Contains(t.URL, "/manifests/")
	switch n.Action {
	case "push", "pull":
		if !manifest || t.Digest == "" {
			return KindIgnored, occ, nil
		}
		if n.Action == "push" {
			occ.Action = ActionPush
			return KindManifestPush, occ, nil
		}
		occ.Action = ActionPull
		return KindManifestPull, occ, nil
	case "delete":
		occ.Action = ActionDelete
		switch {
		case t.Tag != "":
			occ.Digest = ""
			return KindTagDelete, occ, nil
		case t.Digest != "":
			return KindManifestDelete, occ, nil
		}
		return KindRepoDelete, occ, nil
	}
	return KindIgnored, occ, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
