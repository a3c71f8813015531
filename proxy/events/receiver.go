package events

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/regapi"
	"go.uber.org/zap"
)

// maxEnvelope bounds a notification request body.
const maxEnvelope = 8 << 20

// Receiver is the http.Handler for distribution's notifications endpoint
// (notifications.endpoints in the registry's config): it checks the
// shared secret, and records each manifest push, delete (and, while
// someone subscribes to pulls, each pull) through the Deduper. It answers
// 200 only once every event of the envelope is durable; on a store error
// it answers 503 and the registry sends the envelope again (the ids make
// that harmless).
type Receiver struct {
	// Secret must be presented as "Authorization: Bearer <Secret>"
	// (required).
	Secret string
	// Deduper records the reports.
	Deduper *Deduper
	// Host is the registry host clients use, for imageName; "" takes the
	// notification's request host.
	Host string
	// Wants reports whether a type has subscribers: pulls are recorded
	// only then. nil records no pulls.
	Wants func(Type) bool
	// Describer, if set, fills in the platforms of pushed manifests.
	Describer Describer
	// IgnoreUserAgent: pulls made with this User-Agent (the origin's own
	// look-ups) are not events.
	IgnoreUserAgent string
	Logger          *zap.Logger
	Metrics         *Metrics
}

func (rc *Receiver) log() *zap.Logger {
	if rc.Logger != nil {
		return rc.Logger
	}
	return zap.NewNop()
}

// authorized compares the presented secret in constant time (hashes of
// equal length, so not even the length leaks).
func (rc *Receiver) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || rc.Secret == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(rc.Secret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ServeHTTP implements http.Handler.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		regapi.WriteError(w, r, regapi.NewError(http.StatusMethodNotAllowed, regapi.CodeUnsupported, "notifications are POSTed"))
		return
	}
	if !rc.authorized(r) {
		rc.Metrics.notification("unauthorized", 1)
		rc.log().Warn("events: notification with a wrong or missing secret", zap.String("remote", r.RemoteAddr))
		regapi.WriteError(w, r, regapi.NewError(http.StatusUnauthorized, regapi.CodeUnauthorized, "wrong or missing notification secret"))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != NotificationsMediaType && mt != "application/json") {
		regapi.WriteError(w, r, regapi.NewError(http.StatusUnsupportedMediaType, regapi.CodeUnsupported, "want "+NotificationsMediaType))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEnvelope))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			regapi.WriteError(w, r, regapi.NewError(http.StatusRequestEntityTooLarge, regapi.CodeSizeInvalid, "envelope too large"))
			return
		}
		regapi.WriteError(w, r, regapi.Errorf(http.StatusBadRequest, "INVALID_BODY", "unreadable body", err))
		return
	}
	ns, err := ParseEnvelope(body)
	if err != nil {
		rc.Metrics.notification("invalid", 1)
		regapi.WriteError(w, r, regapi.Errorf(http.StatusBadRequest, "INVALID_JSON", err.Error(), err))
		return
	}
	for _, n := range ns {
		if err := rc.handle(r.Context(), n); err != nil {
			rc.Metrics.notification("error", 1)
			rc.log().Error("events: recording a notification", zap.String("id", n.ID), zap.Error(err))
			regapi.WriteError(w, r, regapi.Errorf(http.StatusServiceUnavailable, regapi.CodeUnavailable, "could not record the events; send them again", err))
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// handle records one notification.
func (rc *Receiver) handle(ctx context.Context, n Notification) error {
	kind, occ, err := Classify(n)
	if err != nil {
		rc.Metrics.notification("invalid", 1)
		rc.log().Warn("events: notification skipped", zap.String("id", n.ID), zap.Error(err))
		return nil
	}
	at := n.Timestamp
	if at.IsZero() {
		at = time.Now()
	}
	host := rc.Host
	if host == "" {
		host = n.Request.Host
	}
	var types []Type
	switch kind {
	case KindManifestPush:
		types = []Type{ManifestPush}
		if occ.Tag != "" {
			types = append(types, TagPush)
		}
	case KindManifestPull:
		if n.Request.UserAgent != "" && n.Request.UserAgent == rc.IgnoreUserAgent {
			rc.Metrics.notification("ignored", 1)
			return nil
		}
		t := ManifestPull
		if occ.Tag != "" {
			t = TagPull
		}
		if rc.Wants == nil || !rc.Wants(t) {
			rc.Metrics.notification("ignored", 1)
			return nil
		}
		types = []Type{t}
	case KindManifestDelete:
		types = []Type{ManifestDelete}
	case KindTagDelete:
		types = []Type{TagDelete}
	case KindRepoDelete:
		rc.Metrics.notification("recorded", 1)
		return rc.Deduper.RepoDeleted(ctx, n.ID, occ.Repository, occ.Author, at)
	default:
		rc.Metrics.notification("ignored", 1)
		return nil
	}
	build := func(ctx context.Context) ([]Event, error) {
		img := Image{Repository: occ.Repository, Tag: occ.Tag, Digest: occ.Digest, Host: host, MediaType: n.Target.MediaType}
		if kind == KindManifestPush && rc.Describer != nil {
			if p, err := rc.Describer.Describe(ctx, occ.Repository, occ.Digest); err == nil {
				img.OS, img.Architecture, img.Platforms = p.OS, p.Architecture, p.Platforms
			} else {
				rc.log().Info("events: platform of a pushed manifest unknown", zap.String("repository", occ.Repository), zap.Error(err))
			}
		}
		evs := make([]Event, 0, len(types))
		for _, t := range types {
			ev, err := NewImageEvent(t, img, occ.Author, at, SourceRegistry)
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
		return evs, nil
	}
	recorded, err := rc.Deduper.Registry(ctx, n.ID, occ, build)
	if err != nil {
		return err
	}
	if recorded {
		rc.Metrics.notification("recorded", 1)
	} else {
		rc.Metrics.notification("duplicate", 1)
	}
	return nil
}
