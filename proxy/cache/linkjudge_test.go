package cache_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/proxy/cache"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// TestPrefetchHoldJudgesTheLink: with the hold on auto, the cache tells a
// per-connection-capped link from a shared one by the first parallel
// fill's fan-out, across the project's WAN emulator: the total fill rate
// grows with the extra streams on the capped link (capped: prefetch is
// then not held back), and stays flat on the shared one (the hold stays).
// On the capped link a second image's prefetch then runs one fill beside
// its lead while the lead has almost none of its bytes. The test asserts
// the verdicts, not timings.
func TestPrefetchHoldJudgesTheLink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		link   wan.Config
		capped bool
	}{
		// 100 ms each way: the first range opens in ≈ 200 ms, so a
		// window before the fan-out is 160 ms and holds ≥ 160 KiB on
		// either link, long against a stall of the process (the race
		// detector, other packages' tests on 2 cores, the emulator in the
		// same process): a stall moves bytes from the window before into
		// the ones after and so looks like a gain. At 1 MiB/s the
		// emulator and the fill need little CPU.
		{"per-connection-capped", wan.Config{Latency: 100 * time.Millisecond, PerConnBandwidth: 1 << 20}, true},
		{"shared", wan.Config{Latency: 100 * time.Millisecond, Bandwidth: 1 << 20}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			link, err := wan.Listen(t.Context(), "127.0.0.1:0", reg.Host, tc.link)
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			e := newEnv(t, envOptions{noRedirect: true, upstreamURL: "http://" + link.Addr(),
				fill: casstore.FillOptions{Parallel: 4, ChunkSize: 1 << 20}})
			e.reg = reg
			e.server.Prefetch = 4  // PrefetchHold and PrefetchWhileAwaited at their defaults
			defer e.server.Close() // before the link closes: nothing waits on it then
			const tries = 6        // blobs to fetch until one fan-out gives a verdict (below)
			img := e.push(t, "link/first:1", testenv.ImageSpec{Layers: tries, LayerSize: 4 << 20, Seed: 51})
			if s := e.server.PrefetchStats(); s.Judged != 0 || s.Capped != 0 {
				t.Fatalf("before any fill: %+v, want nothing judged", s)
			}
			// Each GET is a fill that fans out; a judgement ends within
			// 2.5 round trips, before the blob's GET does. One that saw the
			// process stall gives no verdict: the next blob is judged then.
			// CI once saw three in a row give none (race detector, other
			// packages' tests on the 2 cores), so there are six blobs.
			for i := 0; i < tries && e.server.PrefetchStats().Judged == 0; i++ {
				d, data := layerBytes(t, img, i)
				resp, body, err := e.get(t, "/v2/link/first/blobs/"+d.String(), nil)
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
					t.Fatalf("GET: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
				}
			}
			waitStats(t, e.server, "a fan-out judged", func(s cache.PrefetchStats) bool { return s.Judged >= 1 })
			s := e.server.PrefetchStats()
			if want := map[bool]int{true: 1, false: 0}[tc.capped]; s.Capped != want {
				t.Fatalf("%d upstreams judged capped, want %d (%+v)", s.Capped, want, s)
			}
			if !tc.capped {
				return // the hold stays: TestPrefetchDefaultLeavesTheLinkToTheLead
			}

			// The link slows to a crawl: the next image's lead stays far below
			// 75 % of its bytes, and one prefetch fill runs beside it.
			e.push(t, "link/second:1", testenv.ImageSpec{Layers: 3, LayerSize: 4 << 20, Seed: 52})
			slow := tc.link
			slow.PerConnBandwidth = 16 << 10
			link.SetConfig(slow)
			resp, _, err := e.get(t, "/v2/link/second/manifests/1", map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("manifest: %v %v", resp, err)
			}
			// The config done, layer 0 leads and layer 1 runs beside it.
			waitStats(t, e.server, "2 running, 1 waiting", func(s cache.PrefetchStats) bool { return s.Running == 2 && s.Waiting == 1 })
		})
	}
}

// TestPrefetchHoldSkipsALateFill: a fill whose first range answers much
// later than the upstream's usual open time (a busy cache answers late,
// and reads late: its catch-up looks like a gain) is not judged, across
// the WAN emulator: the config's GET teaches the round trip, then a layer
// is fetched with the round trip as it was, or doubled.
func TestPrefetchHoldSkipsALateFill(t *testing.T) {
	for _, tc := range []struct {
		name       string
		latency    time.Duration // each way, for the layer's GET
		judgements int64
	}{
		{"on time", 100 * time.Millisecond, 1},
		{"late", 200 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			cfg := wan.Config{Latency: 100 * time.Millisecond, PerConnBandwidth: 1 << 20}
			link, err := wan.Listen(t.Context(), "127.0.0.1:0", reg.Host, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			e := newEnv(t, envOptions{noRedirect: true, upstreamURL: "http://" + link.Addr(),
				fill: casstore.FillOptions{Parallel: 4, ChunkSize: 1 << 20}})
			e.reg = reg
			e.server.Prefetch = 4
			defer e.server.Close()
			img := e.push(t, "link/late:1", testenv.ImageSpec{Layers: 1, LayerSize: 4 << 20, Seed: 54})
			info, err := testenv.Describe(img)
			if err != nil {
				t.Fatal(err)
			}
			// The config is small: no fan-out, no judgement, one open time.
			if resp, _, err := e.get(t, "/v2/link/late/blobs/"+info.Config.String(), nil); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET config: %v %v", resp, err)
			}
			cfg.Latency = tc.latency
			link.SetConfig(cfg)
			d, data := layerBytes(t, img, 0)
			resp, body, err := e.get(t, "/v2/link/late/blobs/"+d.String(), nil)
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
				t.Fatalf("GET layer: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
			}
			// A judgement starts before the blob is served.
			if s := e.server.PrefetchStats(); s.Judgements != tc.judgements {
				t.Fatalf("%d judgements, want %d (%+v)", s.Judgements, tc.judgements, s)
			}
		})
	}
}
