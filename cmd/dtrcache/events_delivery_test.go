package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/testenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// tagPusher pushes one image through an origin once, then the same
// manifest under new tags (a manifest PUT each: a push the backend
// accepts, with its TAG_PUSH).
type tagPusher struct {
	base, repo, mediaType string
	raw                   []byte
	client                *http.Client
}

func newTagPusher(t testing.TB, base, repo string) *tagPusher {
	t.Helper()
	img := pushImage(t, base[len("http://"):]+"/"+repo+":base", testenv.RemoteOptions{Username: "alice", Password: "dtrcache"}, 1, 1024, 7)
	return &tagPusher{base: base, repo: repo, raw: mustRaw(t, img), mediaType: mustMediaType(t, img), client: &http.Client{}}
}

func mustRaw(t testing.TB, img v1.Image) []byte {
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMediaType(t testing.TB, img v1.Image) string {
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return string(mt)
}

func (p *tagPusher) push(t testing.TB, tag string) {
	if code := putManifest(t, p.client, p.base, "alice", p.repo, tag, p.mediaType, p.raw); code != http.StatusCreated {
		t.Fatalf("push %s:%s: %d", p.repo, tag, code)
	}
}

// tagsOf returns the tags of the TAG_PUSH deliveries of webhook id, in
// the order they were accepted.
func tagsOf(ds []hookDelivery, id string) []string {
	var tags []string
	for _, d := range ds {
		if d.webhook != id || d.ev.Type != events.TagPush {
			continue
		}
		var c events.ImageContents
		json.Unmarshal(d.ev.Contents, &c)
		tags = append(tags, c.Tag)
	}
	return tags
}

func webhookView(t *testing.T, base, id string) events.View {
	t.Helper()
	var v events.View
	if code := api(t, base, "admin", http.MethodGet, "/api/v0/webhooks/"+id, "", &v); code != http.StatusOK {
		t.Fatalf("GET webhook %s: %d", id, code)
	}
	return v
}

func webhookDeliveries(t *testing.T, base, id string) events.Deliveries {
	t.Helper()
	var d events.Deliveries
	if code := api(t, base, "admin", http.MethodGet, "/api/v0/webhooks/"+id+"/deliveries", "", &d); code != http.StatusOK {
		t.Fatalf("GET deliveries of %s: %d", id, code)
	}
	return d
}

// TestWebhooksDownAndFailingAtTheOrigin: with the origin's settings
// (events.max_attempts, backoff), a receiver down for a while gets every
// event, in order, once it is back; a receiver answering 500 makes its
// webhook inactive after max_attempts attempts (visible in the API, with
// the attempts in its history), and re-enabled it resumes where it
// stopped, in order.
func TestWebhooksDownAndFailingAtTheOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a registry and an origin")
	}
	backend, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	o := newEventsOrigin(t)
	o.configure(t, backend.URL, "  max_attempts: 6\n  backoff_min: 200ms\n  backoff_max: 1s\n", "")
	startOriginAt(t, o.path, o.addr)
	p := newTagPusher(t, o.url, "team/app")

	down, failing := newHookReceiver(t), newHookReceiver(t)
	downID := down.subscribe(t, o.url, "admin", events.TagPush, "team/app")
	failingID := failing.subscribe(t, o.url, "admin", events.TagPush, "team/app")
	failing.setAnswer(func(hookDelivery) int { return http.StatusInternalServerError })
	down.stop()
	var want []string
	for i := range 10 {
		tag := fmt.Sprintf("t%02d", i)
		p.push(t, tag)
		want = append(want, tag)
	}
	// Down while the origin tries twice, then back.
	waitUntil(t, 20*time.Second, "two failed attempts at the stopped receiver", func() bool {
		return len(webhookDeliveries(t, o.url, downID).Attempts) >= 2
	})
	if v := webhookView(t, o.url, downID); v.Inactive {
		t.Fatalf("the webhook of the stopped receiver is inactive after two attempts: %+v", v)
	}
	down.start(t)
	got := down.waitFor(t, 30*time.Second, "ten pushes after the receiver came back", func(ds []hookDelivery) bool {
		return len(tagsOf(ds, downID)) >= len(want)
	})
	if tags := tagsOf(got, downID); !slices.Equal(tags, want) {
		t.Errorf("after the receiver came back: %v, want %v in order", tags, want)
	}
	uniqueEvents(t, got) // signatures and ids

	// 500 forever: inactive after six attempts.
	waitUntil(t, 30*time.Second, "the failing webhook inactive", func() bool { return webhookView(t, o.url, failingID).Inactive })
	v := webhookView(t, o.url, failingID)
	h := webhookDeliveries(t, o.url, failingID)
	if v.InactiveReason == "" || len(h.Attempts) != 6 {
		t.Fatalf("inactive webhook: %+v; %d attempts in its history, want 6", v, len(h.Attempts))
	}
	for _, a := range h.Attempts {
		if a.Status != http.StatusInternalServerError || a.Success {
			t.Errorf("attempt %+v, want a failed 500", a)
		}
	}
	// Re-enabled, it resumes at the event it stopped at.
	failing.setAnswer(nil)
	if code := api(t, o.url, "admin", http.MethodPatch, "/api/v0/webhooks/"+failingID, `{"inactive":false}`, nil); code != http.StatusOK {
		t.Fatalf("re-enable: %d", code)
	}
	got = failing.waitFor(t, 30*time.Second, "the re-enabled webhook's ten events", func(ds []hookDelivery) bool {
		return len(tagsOf(ds, failingID)) >= len(want)
	})
	if tags := tagsOf(got, failingID); !slices.Equal(tags, want) {
		t.Errorf("re-enabled: %v, want %v in order", tags, want)
	}
	uniqueEvents(t, got)
}

// TestWebhooksThousandPushes: 1,000 pushes in a row through the origin
// (loopback, bounded by count and time) → 1,000 TAG_PUSH deliveries, one
// per tag, in order.
func TestWebhooksThousandPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 pushes")
	}
	backend, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	o := newEventsOrigin(t)
	o.configure(t, backend.URL, "", "")
	startOriginAt(t, o.path, o.addr)
	p := newTagPusher(t, o.url, "team/app")
	rc := newHookReceiver(t)
	id := rc.subscribe(t, o.url, "admin", events.TagPush, "team/app")
	const n = 1000
	deadline := time.Now().Add(3 * time.Minute)
	var want []string
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		tag := fmt.Sprintf("v%04d", i)
		p.push(t, tag)
		want = append(want, tag)
	}
	if len(want) != n {
		t.Fatalf("only %d pushes in 3 minutes", len(want))
	}
	got := rc.waitFor(t, 3*time.Minute, "1,000 TAG_PUSH deliveries", func(ds []hookDelivery) bool { return len(tagsOf(ds, id)) >= n })
	unique := uniqueEvents(t, got)
	if tags := tagsOf(got, id); !slices.Equal(tags, want) || len(unique) != n {
		t.Errorf("%d deliveries of %d events, want %d in push order", len(tags), len(unique), n)
	}
}

// buildBinary builds the production binary (go build) into a temporary
// directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dtrcache")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// binOrigin is `dtrcache origin` run from the built binary.
type binOrigin struct {
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan struct{}
}

func startBinOrigin(t *testing.T, bin, path, addr string) *binOrigin {
	t.Helper()
	o := &binOrigin{done: make(chan struct{})}
	o.cmd = exec.Command(bin, "origin", "--config", path, "--addr", addr, "--log-format", "console")
	o.cmd.Stdout, o.cmd.Stderr = &o.log, &o.log
	if err := o.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { o.cmd.Wait(); close(o.done) }()
	t.Cleanup(func() {
		o.cmd.Process.Signal(syscall.SIGTERM)
		<-o.done
		if t.Failed() {
			t.Logf("origin log:\n%s", tail(o.log.String(), 40))
		}
	})
	waitHTTP(t, "http://"+addr+"/readyz")
	return o
}

// TestEventsSurviveSIGKILL: the origin binary, SIGKILLed with 100 pushes'
// events undelivered (the receiver down), delivers all 100 after a
// restart on the same state; a duplicate, if any, has the same event id.
func TestEventsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	backend, err := testenv.StartRegistry(context.Background(), testenv.RegistryOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	o := newEventsOrigin(t)
	o.configure(t, backend.URL, "  max_attempts: 10000\n  backoff_min: 20ms\n  backoff_max: 200ms\n", "")
	first := startBinOrigin(t, bin, o.path, o.addr)
	p := newTagPusher(t, o.url, "team/app")
	rc := newHookReceiver(t)
	id := rc.subscribe(t, o.url, "admin", events.TagPush, "team/app")
	rc.stop()
	want := map[string]bool{}
	for i := range 100 {
		tag := fmt.Sprintf("k%03d", i)
		p.push(t, tag) // 201: its events are durable
		want[tag] = true
	}
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.done
	if n := len(tagsOf(rc.accepted(), id)); n > 0 {
		t.Fatalf("%d events delivered to a stopped receiver", n)
	}

	rc.start(t)
	startBinOrigin(t, bin, o.path, o.addr)
	got := rc.waitFor(t, 60*time.Second, "the 100 pushes' events after the restart", func(ds []hookDelivery) bool {
		seen := map[string]bool{}
		for _, tag := range tagsOf(ds, id) {
			seen[tag] = true
		}
		for tag := range want {
			if !seen[tag] {
				return false
			}
		}
		return true
	})
	idOf := map[string]string{}
	for _, d := range got {
		var c events.ImageContents
		json.Unmarshal(d.ev.Contents, &c)
		if prev, ok := idOf[c.Tag]; ok && prev != d.id {
			t.Errorf("tag %s delivered as two events, %s and %s", c.Tag, prev, d.id)
		}
		idOf[c.Tag] = d.id
	}
	uniqueEvents(t, got)
	t.Logf("%d deliveries of %d events after the restart", len(tagsOf(got, id)), len(idOf))
}
