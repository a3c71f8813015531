package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// resumeFractions are where scenario 8 breaks the client's download.
var resumeFractions = []float64{0.1, 0.5, 0.9}

// resume: scenario 8. A client downloads the first layer of an uncached
// image, its connection breaks at frac of the blob while the cache is
// still filling, and it resumes at once with "Range: bytes=<offset>-", as
// containerd and Docker do. The figure is what crossed the WAN for the
// whole blob, as a multiple of the blob (target ≤ 1.02: the resumed range
// joins the fill instead of fetching its bytes a second time).
func (r *runner) resume(ctx context.Context, im *image) error {
	d := im.info.Layers[0].String()
	size := im.spec.LayerSize // random layers are stored as generated
	repo := repoOf(im.repoTag)
	for _, frac := range resumeFractions {
		cut := int64(float64(size) * frac)
		for _, s := range r.systems {
			if pullsOnly(s) {
				continue
			}
			res := &result{Scenario: "resume", Image: resumeLabel(im, frac), Profile: "shared", System: s.name(), Peer: s.peer()}
			for i := 0; i < r.o.repeats; i++ {
				if err := s.cold(ctx); err != nil {
					return err
				}
				resetLink(s)
				opts := s.remote()
				start := time.Now()
				err := resumeOnce(ctx, "http://"+s.host()+"/v2/"+repo+"/blobs/"+d, opts.Username, opts.Password, d, cut)
				took := time.Since(start)
				if err != nil {
					res.Errors = append(res.Errors, err.Error())
					r.step("resume %-16s %-18s run %d/%d: FAILED: %v", res.Image, s.name(), i+1, r.o.repeats, err)
					continue
				}
				wb := wanBytes(s)
				res.Runs = append(res.Runs, map[string]float64{"seconds": took.Seconds(), "wan_bytes": wb, "wan_ratio": wb / float64(size)})
				r.step("resume %-16s %-18s run %d/%d: %6.2fs, %s over the WAN = %.3f × the blob", res.Image, s.name(), i+1, r.o.repeats, took.Seconds(), mb(wb), wb/float64(size))
			}
			r.add(res)
		}
	}
	return nil
}

// resumeLabel names a resume table: the image, the layer's size and where
// the download broke ("8x64MiB at 10%").
func resumeLabel(im *image, frac float64) string {
	return fmt.Sprintf("%s at %.0f%%", im.label, frac*100)
}

// resumeOnce GETs the blob at url (following redirects, as clients do),
// reads cut bytes and drops the connection, then GETs the rest with a
// Range from cut, and checks the two parts against the digest.
func resumeOnce(ctx context.Context, url, user, pass, digest string, cut int64) error {
	// A transport per download: the break closes its connection, and the
	// resume opens a new one, as a client's retry does.
	get := func(rng string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	}
	h := sha256.New()
	resp, err := get("")
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("GET: %s", resp.Status)
	}
	_, err = io.CopyN(h, resp.Body, cut)
	resp.Body.Close() // the break
	if err != nil {
		return fmt.Errorf("first %d bytes: %w", cut, err)
	}
	resp, err = get(fmt.Sprintf("bytes=%d-", cut))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK: // the range was ignored: the client starts over
		h.Reset()
	default:
		return fmt.Errorf("resume: %s", resp.Status)
	}
	if _, err := io.Copy(h, resp.Body); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("resumed blob is %s, want %s", got, digest)
	}
	return nil
}

// chartName is the file name of a table's chart.
func chartName(k groupKey) string {
	img := strings.Fields(k.image)[0]
	if k.scenario == "resume" {
		img = strings.NewReplacer(" ", "-", "%", "pct").Replace(k.image)
	}
	return fmt.Sprintf("%s-%s-%s.png", k.scenario, img, k.profile)
}
