package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// orderImage is the image of the prefetch-order scenario: 8 × 32 MiB.
func orderImage(quick bool) *image {
	im := &image{label: "8x32MiB", repoTag: "bench/order:1", spec: testenv.ImageSpec{Layers: 8, LayerSize: 32 << 20, Seed: 32}}
	if quick {
		im.label, im.spec.LayerSize = "8x1MiB-order", 1<<20
	}
	return im
}

// seedOrder generates orderImage and pushes it to the backend.
func seedOrder(ctx context.Context, backend string, quick bool) (*image, error) {
	im := orderImage(quick)
	img, err := testenv.GenerateImage(im.spec)
	if err != nil {
		return nil, err
	}
	if err := testenv.Push(ctx, backend+"/"+im.repoTag, img, testenv.RemoteOptions{}); err != nil {
		return nil, err
	}
	if im.info, err = testenv.Describe(img); err != nil {
		return nil, err
	}
	return im, nil
}

// order: n clients that fetch one blob at a time, in manifest order, as
// skopeo does (manifest, config, layer 0, layer 1, …), pull the same cold
// image at once. It reports the time until each client has its first
// layer complete (the mean and the latest) and until every client is done.
func (r *runner) order(ctx context.Context, im *image, n int, cfg wan.Config) error {
	// The physical limit of the first layer: its bytes at the link's rate
	// after two round trips (manifest, then the layer's request).
	limit := float64(im.spec.LayerSize)/float64(cfg.Bandwidth) + 4*cfg.Latency.Seconds()
	for _, s := range r.systems {
		if pullsOnly(s) || s.remote().Username != "" {
			continue
		}
		res := &result{Scenario: fmt.Sprintf("order-%d", n), Image: im.label, Profile: "shared", System: s.name(), Peer: s.peer()}
		for i := 0; i < r.o.repeats; i++ {
			if err := s.cold(ctx); err != nil {
				return err
			}
			resetLink(s)
			start := time.Now()
			firsts := make([]time.Duration, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for c := 0; c < n; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					firsts[c], errs[c] = oneAtATime(ctx, "http://"+s.host(), im)
				}()
			}
			wg.Wait()
			took := time.Since(start)
			failed := 0
			for _, err := range errs {
				if err != nil {
					failed++
					res.Errors = append(res.Errors, err.Error())
				}
			}
			if failed > 0 {
				r.step("order %d clients %-18s run %d/%d: %d FAILED: %v", n, s.name(), i+1, r.o.repeats, failed, res.Errors[len(res.Errors)-1])
				continue
			}
			var sum time.Duration
			for _, f := range firsts {
				sum += f
			}
			last := slices.Max(firsts)
			mean := sum / time.Duration(n)
			res.Runs = append(res.Runs, map[string]float64{"seconds": took.Seconds(), "first_layer_s": mean.Seconds(),
				"first_layer_max_s": last.Seconds(), "first_layer_limit_s": limit, "wan_bytes": wanBytes(s)})
			r.step("order %d clients %-18s run %d/%d: first layer %.2fs (latest %.2fs), all done %.2fs, %s over the WAN", n, s.name(), i+1, r.o.repeats, mean.Seconds(), last.Seconds(), took.Seconds(), mb(wanBytes(s)))
		}
		r.add(res)
	}
	return nil
}

// oneAtATime fetches the image's manifest and then its blobs one at a
// time in manifest order, checking each digest; it returns when layer 0
// was complete.
func oneAtATime(ctx context.Context, base string, im *image) (time.Duration, error) {
	start := time.Now()
	repo, tag := repoOf(im.repoTag), im.repoTag[len(repoOf(im.repoTag))+1:]
	if _, err := fetchChecked(ctx, base+"/v2/"+repo+"/manifests/"+tag, im.info.Digest.String()); err != nil {
		return 0, err
	}
	if _, err := fetchChecked(ctx, base+"/v2/"+repo+"/blobs/"+im.info.Config.String(), im.info.Config.String()); err != nil {
		return 0, err
	}
	var first time.Duration
	for i, l := range im.info.Layers {
		if _, err := fetchChecked(ctx, base+"/v2/"+repo+"/blobs/"+l.String(), l.String()); err != nil {
			return 0, err
		}
		if i == 0 {
			first = time.Since(start)
		}
	}
	return first, nil
}

// fetchChecked GETs url and checks that the body's sha256 is want.
func fetchChecked(ctx context.Context, url, want string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", url, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("GET %s: body %s, want %s", url, got, want)
	}
	return n, nil
}

// orderTable writes the order scenario's table: time to the first layer
// against its physical limit, and the whole pull against nginx's.
func orderTable(b *strings.Builder, nginx *result, rs []*result) {
	fmt.Fprintf(b, "| system | first layer (mean of clients) | latest client's | ÷ limit (layer ÷ bandwidth + 2 RTT) | all clients done | × nginx |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		m := r.Median
		vsNginx := "–"
		if nginx != nil && nginx.Median["seconds"] > 0 {
			vsNginx = fmt.Sprintf("%.2f", m["seconds"]/nginx.Median["seconds"])
		}
		fmt.Fprintf(b, "| %s | %.2f s | %.2f s | %.2f | %.2f s | %s |\n", r.System, m["first_layer_s"], m["first_layer_max_s"],
			m["first_layer_s"]/m["first_layer_limit_s"], m["seconds"], vsNginx)
	}
}
