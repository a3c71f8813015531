package events

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/opencontainers/go-digest"
)

// envelope builds a notification envelope with distribution's own types,
// as its HTTP sink does.
func envelope(t *testing.T, evs ...notifications.Event) []byte {
	t.Helper()
	var env struct {
		Events []notifications.Event `json:"events"`
	}
	env.Events = evs
	b, err := json.MarshalIndent(env, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func notification(id, action, repo, tag, mediaType string, dgst string) notifications.Event {
	var e notifications.Event
	e.ID, e.Action, e.Timestamp = id, action, time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
	e.Target.Repository, e.Target.Tag, e.Target.MediaType = repo, tag, mediaType
	if dgst != "" {
		e.Target.Digest = digest.Digest(dgst)
		kind := "manifests"
		if mediaType != "" && !IsManifestMediaType(mediaType) {
			kind = "blobs"
		}
		e.Target.URL = "http://registry:5000/v2/" + repo + "/" + kind + "/" + dgst
	}
	e.Actor.Name = "ci-bot"
	e.Request.Host = "dtr.example.org"
	e.Request.UserAgent = "docker/27"
	return e
}

func postEnvelope(t *testing.T, h http.Handler, secret, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/events/notifications", bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	if secret != "" {
		r.Header.Set("Authorization", "Bearer "+secret)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestReceiver: the notifications endpoint checks its secret and the media
// type, skips what is not a manifest, and records pushes, deletes and
// (only while subscribed) pulls.
func TestReceiver(t *testing.T) {
	d, store, clock := newDeduper(t)
	wantPulls := false
	rc := &Receiver{Secret: "s3cret", Deduper: d, Wants: func(t Type) bool { return wantPulls && t.Pull() }, IgnoreUserAgent: "dtrcache-origin"}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	dg := sampleDigest

	t.Run("auth and format", func(t *testing.T) {
		body := envelope(t, notification("a", "push", "team/app", "1", mt, dg))
		tests := []struct {
			name, secret, ct string
			body             []byte
			want             int
		}{
			{"no secret", "", NotificationsMediaType, body, http.StatusUnauthorized},
			{"wrong secret", "s3cre", NotificationsMediaType, body, http.StatusUnauthorized},
			{"wrong media type", "s3cret", "text/plain", body, http.StatusUnsupportedMediaType},
			{"not an envelope", "s3cret", NotificationsMediaType, []byte("{"), http.StatusBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				w := postEnvelope(t, rc, tt.secret, tt.ct, tt.body)
				if w.Code != tt.want {
					t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
				}
				if !strings.Contains(w.Body.String(), `"errors"`) {
					t.Errorf("not a registry-style error: %s", w.Body)
				}
			})
		}
		if n := len(outboxEvents(t, store)); n != 0 {
			t.Fatalf("refused requests recorded %d events", n)
		}
	})

	t.Run("events", func(t *testing.T) {
		body := envelope(t,
			notification("p1", "push", "team/app", "1.0", mt, dg),
			notification("b1", "push", "team/app", "", "application/vnd.oci.image.layer.v1.tar+gzip", "sha256:"+strings.Repeat("1", 64)),
			notification("m1", "mount", "team/app", "", mt, dg),
			notification("l1", "pull", "team/app", "1.0", mt, dg),
			notification("d1", "delete", "team/app", "", "", dg),
			notification("t1", "delete", "team/app", "old", "", ""),
			notification("x1", "push", "../etc", "1", mt, dg),
		)
		if w := postEnvelope(t, rc, "s3cret", NotificationsMediaType+"; charset=utf-8", body); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		// The same envelope again (the registry retrying) changes nothing.
		if w := postEnvelope(t, rc, "s3cret", NotificationsMediaType, body); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		clock.advance(time.Minute)
		d.sweep(ctxT(t))
		evs := outboxEvents(t, store)
		if got := summary(t, evs); got != "MANIFEST_PUSH:registry TAG_PUSH:registry MANIFEST_DELETE:registry TAG_DELETE:registry" {
			t.Fatalf("outbox: %s", got)
		}
		var c ImageContents
		json.Unmarshal(evs[1].Contents, &c)
		if c.Author != "ci-bot" || c.ImageName != "dtr.example.org/team/app:1.0" || c.Digest != dg || !c.PushedAt.Equal(time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)) {
			t.Errorf("TAG_PUSH contents %+v", c)
		}
	})

	t.Run("pulls only while subscribed, not the origin's own", func(t *testing.T) {
		wantPulls = true
		own := notification("l3", "pull", "team/app", "", mt, dg)
		own.Request.UserAgent = "dtrcache-origin"
		body := envelope(t, notification("l2", "pull", "team/app", "1.0", mt, dg), own, notification("l4", "pull", "team/app", "", mt, dg))
		before := len(outboxEvents(t, store))
		if w := postEnvelope(t, rc, "s3cret", NotificationsMediaType, body); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		clock.advance(time.Minute)
		d.sweep(ctxT(t))
		if got := summary(t, outboxEvents(t, store)[before:]); got != "TAG_PULL:registry MANIFEST_PULL:registry" {
			t.Fatalf("outbox: %s", got)
		}
	})
}

// TestReceiverStoreDown: with the store closed the receiver answers 503,
// so the registry sends the envelope again.
func TestReceiverStoreDown(t *testing.T) {
	d, store, _ := newDeduper(t)
	rc := &Receiver{Secret: "s", Deduper: d}
	store.Close()
	w := postEnvelope(t, rc, "s", NotificationsMediaType, envelope(t, notification("p", "push", "a/b", "1", "application/vnd.oci.image.manifest.v1+json", sampleDigest)))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	_ = context.Background()
}

// FuzzParseEnvelope: any body either fails to parse or yields
// notifications that Classify turns into occurrences with valid names.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"events":[{"id":"1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + sampleDigest + `","repository":"a/b","tag":"1"}}]}`))
	f.Add([]byte(`{"events":[{"action":"delete","target":{"repository":"a/b","tag":"x"}},{"action":"delete","target":{"repository":"a"}}]}`))
	f.Add([]byte(`{"events":[{"action":"pull","target":{"url":"http://r/v2/a/manifests/x","digest":"sha256:00","repository":"a"}}, 7, null]}`))
	f.Add([]byte(`{"events":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ns, err := ParseEnvelope(body)
		if err != nil {
			return
		}
		for _, n := range ns {
			kind, occ, err := Classify(n)
			if err != nil || kind == KindIgnored {
				continue
			}
			if !validRepo(occ.Repository) {
				t.Fatalf("kind %d with repository %q", kind, occ.Repository)
			}
			switch kind {
			case KindManifestPush, KindManifestPull, KindManifestDelete:
				if occ.Digest == "" {
					t.Fatalf("kind %d without a digest", kind)
				}
			case KindTagDelete:
				if occ.Tag == "" || occ.Digest != "" {
					t.Fatalf("tag delete %+v", occ)
				}
			}
		}
	})
}

// FuzzCheckSubscription: an accepted subscription has a known type, a key
// its scope allows, and an http(s) endpoint with a host and no
// credentials.
func FuzzCheckSubscription(f *testing.F) {
	f.Add("TAG_PUSH", "team/app", "https://ci.example.org/hook", "")
	f.Add("REPO_EVENT", "team", "http://10.0.0.1:8080/x?y=1", "")
	f.Add("CACHE_DOWN", "", "https://user:pw@example.org/", "")
	f.Add("NOPE", "a//b", "ftp://x", "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
	f.Add("TAG_PULL", "A/B", "https://[::1]:99999/", "")
	f.Fuzz(func(t *testing.T, typ, key, endpoint, cert string) {
		req := CreateRequest{Type: Type(typ), Key: key, Endpoint: endpoint, TLSCert: cert}
		err := CheckSubscription(req)
		if err == nil {
			if !req.Type.Valid() {
				t.Fatalf("accepted type %q", typ)
			}
			if req.Type.Scope() == ScopeGlobal && key != "" {
				t.Fatalf("accepted key %q for a global type", key)
			}
			if key != "" && !validRepo(key) {
				t.Fatalf("accepted key %q", key)
			}
			host, port, err := checkEndpoint(endpoint)
			if err != nil || host == "" || port < 1 || port > 65535 || strings.Contains(endpoint, "@") && strings.Contains(strings.SplitN(endpoint, "/", 4)[2], "@") {
				t.Fatalf("accepted endpoint %q (%v)", endpoint, err)
			}
			return
		}
		var fe *FieldError
		if !errorsAs(err, &fe) || fe.Field == "" || !strings.HasPrefix(err.Error(), fe.Field+": ") {
			t.Fatalf("error %v does not name its field", err)
		}
	})
}
