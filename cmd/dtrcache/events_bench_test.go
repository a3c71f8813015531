package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/events"
	"github.com/dtrcache/dtrcache/testenv"
)

// BenchmarkPushWebhooks measures what events add to a push through the
// origin: the same manifest PUT under a new tag, in turn straight to the
// backend (the limit), through an origin with events off
// (events.disabled) and through one with events on and two webhooks
// (TAG_PUSH and MANIFEST_PUSH) delivering to a receiver, all on one
// backend, in the same loop. It reports the mean of each (ns/push-backend,
// ns/push-off, ns/push-on) and the ratios on/off and off/backend.
func BenchmarkPushWebhooks(b *testing.B) {
	backend, err := testenv.StartRegistry(b.Context(), testenv.RegistryOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	off, on := newEventsOrigin(b), newEventsOrigin(b)
	off.configure(b, backend.URL, "  disabled: true\n", "")
	on.configure(b, backend.URL, "", "")
	startOriginAt(b, off.path, off.addr)
	startOriginAt(b, on.path, on.addr)
	pOff, pOn := newTagPusher(b, off.url, "team/off"), newTagPusher(b, on.url, "team/on")
	rc := newHookReceiver(b)
	rc.subscribe(b, on.url, "admin", events.TagPush, "team/on")
	rc.subscribe(b, on.url, "admin", events.ManifestPush, "team/on")
	// Straight to the backend, into the repository that has the blobs.
	direct := &tagPusher{base: backend.URL, repo: "team/off", raw: pOff.raw, mediaType: pOff.mediaType, client: &http.Client{}}
	pushDirect := func(tag string) {
		if code := putManifest(b, direct.client, direct.base, "", direct.repo, "d-"+tag, direct.mediaType, direct.raw); code != http.StatusCreated {
			b.Fatalf("push to the backend: %d", code)
		}
	}
	for i := range 20 { // warm connections and caches
		tag := fmt.Sprintf("warm%d", i)
		pushDirect(tag)
		pOff.push(b, tag)
		pOn.push(b, tag)
	}
	var tDirect, tOff, tOn time.Duration
	i := 0
	for ; b.Loop(); i++ {
		tag := fmt.Sprintf("b%07d", i)
		t0 := time.Now()
		pushDirect(tag)
		t1 := time.Now()
		pOff.push(b, tag)
		t2 := time.Now()
		pOn.push(b, tag)
		t3 := time.Now()
		tDirect, tOff, tOn = tDirect+t1.Sub(t0), tOff+t2.Sub(t1), tOn+t3.Sub(t2)
	}
	n := float64(i)
	b.ReportMetric(float64(tDirect.Nanoseconds())/n, "ns/push-backend")
	b.ReportMetric(float64(tOff.Nanoseconds())/n, "ns/push-off")
	b.ReportMetric(float64(tOn.Nanoseconds())/n, "ns/push-on")
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
	b.ReportMetric(float64(tOff)/float64(tDirect), "off/backend")
}
