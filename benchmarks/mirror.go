package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The mirroring benchmark (issue 11): ten images that share a base layer
// are copied from a US registry to an EU registry across the emulated WAN
// by dtrcache's push mirroring and by the peers (skopeo sync, regsync,
// crane copy), each into a fresh EU registry; then a cut of the link half
// way through, and a promotion within one registry. Both registries are
// distribution v3 in this process, so their counters see every request.

// mirrorImage is one image of the set, as stored in the US registry.
type mirrorImage struct {
	repo, tag, digest string
}

// target is where every system puts image i in the EU registry.
func (m mirrorImage) target() string {
	return "mirror/" + strings.TrimPrefix(m.repo, "team/")
}

// mirrorEnv is what the mirroring systems share.
type mirrorEnv struct {
	e      *env
	us     *testenv.Registry
	images []mirrorImage
	// unique and blobs are the distinct blob bytes and blobs of the set:
	// what a mirror must move at least.
	unique int64
	blobs  int
	// promoBlobs and promoBytes are the blobs of the image promoted.
	promoBlobs int
	promoBytes int64
	dir        string
	// toolCPU adds up the CPU time of the peers' commands.
	toolCPU float64
}

// mirrorSystem copies the set across the WAN.
type mirrorSystem interface {
	name() string
	peer() bool
	// prepare readies a cold run (a fresh origin for dtrcache).
	prepare(ctx context.Context) error
	// mirror copies every image of the set to the registry at dst
	// (host:port, across the WAN) as image.target():image.tag and
	// returns when all are there.
	mirror(ctx context.Context, dst string) error
	// promote copies image 0 within the US registry to repo.
	promote(ctx context.Context, repo string) error
	stop()
}

// mirrorSetSize is the size of the set: ≈1 GiB of unique blobs, 24 MiB
// for --quick.
func mirrorSetSize(o options) int64 {
	if o.mirrorSet > 0 {
		return o.mirrorSet
	}
	if o.quick {
		return 24 << 20
	}
	return 1 << 30
}

// renderMirror writes mirror.md again from the mirror.json in o.out (the
// report's text changed, the numbers did not).
func renderMirror(o options) error {
	b, err := os.ReadFile(filepath.Join(o.out, "mirror.json"))
	if err != nil {
		return err
	}
	var rep mirrorReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("mirror.json: %w", err)
	}
	if rep.LargestBlob == 0 { // written before the report had it
		rep.LargestBlob = testenv.MirrorSet(rep.UniqueBytes).BaseSize
	}
	if rep.PerConnBandwidth == 0 {
		_, perConn, err := profiles(o)
		if err != nil {
			return err
		}
		rep.PerConnBandwidth = perConn.PerConnBandwidth
	}
	return rep.write(o.out)
}

// runMirror runs the mirroring scenarios and writes mirror.md and
// mirror.json into o.out.
func runMirror(ctx context.Context, o options, e *env, step func(string, ...any)) error {
	shared, perConn, err := profiles(o)
	if err != nil {
		return err
	}
	m := &mirrorEnv{e: e, dir: filepath.Join(e.dir, "mirror")}
	spec := testenv.MirrorSet(mirrorSetSize(o))
	step("mirror: generating the set (%d images, base %s, %d × %s each) and pushing it to the US registry", spec.Images, mb(float64(spec.BaseSize)), spec.OwnLayers, mb(float64(spec.OwnSize)))
	if m.us, err = testenv.StartRegistry(context.WithoutCancel(ctx), testenv.RegistryOptions{Dir: filepath.Join(m.dir, "us")}); err != nil {
		return err
	}
	defer m.us.Close()
	if err := m.seed(ctx, spec); err != nil {
		return err
	}
	step("mirror: %d images, %d unique blobs, %s of unique blob bytes", len(m.images), m.blobs, mb(float64(m.unique)))

	systems, err := m.systems(o)
	defer func() {
		for _, s := range systems {
			s.stop()
		}
	}()
	if err != nil {
		return err
	}
	rep := &mirrorReport{
		Generated: time.Now().UTC(), Quick: o.quick, Machine: machine(), WAN: wanDescription(o),
		Images: len(m.images), Blobs: m.blobs, UniqueBytes: m.unique, PromoBlobs: m.promoBlobs, PromoBytes: m.promoBytes,
		LinkLimit:   map[string]float64{"shared": float64(m.unique) / float64(shared.Bandwidth), "per-conn": float64(m.unique) / float64(perConn.Bandwidth)},
		LargestBlob: spec.BaseSize, PerConnBandwidth: perConn.PerConnBandwidth,
	}
	start := time.Now()
	for _, p := range []struct {
		name string
		cfg  wan.Config
	}{{"shared", shared}, {"per-conn", perConn}} {
		if o.profiles != "" && !slices.Contains(strings.Split(o.profiles, ","), p.name) {
			continue
		}
		for _, s := range systems {
			res := &mirrorResult{Scenario: "mirror", Profile: p.name, System: s.name(), Peer: s.peer()}
			for i := 0; i < o.repeats; i++ {
				run, err := m.once(ctx, s, p.cfg, 1)
				if err != nil {
					res.Errors = append(res.Errors, err.Error())
					step("mirror %-8s %-22s run %d/%d: FAILED: %v", p.name, s.name(), i+1, o.repeats, err)
					continue
				}
				res.Runs = append(res.Runs, run)
				step("mirror %-8s %-22s run %d/%d: %6.2fs, %s over the WAN (%.3f × unique), %.0f EU requests", p.name, s.name(), i+1, o.repeats,
					run["seconds"], mb(run["wan_bytes"]), run["wan_bytes"]/float64(m.unique), run["eu_requests"])
			}
			res.Median = medians(res.Runs)
			rep.Results = append(rep.Results, res)
		}
	}
	// The cut: the connection carrying the link's middle byte towards EU
	// is reset. A peer that fails is run again (as an operator or a cron
	// job would), up to twice.
	cut := shared
	cut.CutUpAtLinkBytes = m.unique / 2
	for _, s := range systems {
		res := &mirrorResult{Scenario: "cut", Profile: "shared", System: s.name(), Peer: s.peer()}
		run, err := m.once(ctx, s, cut, 3)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			step("cut    %-22s FAILED: %v", s.name(), err)
		} else {
			res.Runs = append(res.Runs, run)
			step("cut    %-22s %6.2fs, %s over the WAN (%.3f × unique), %.0f cut(s), %.0f run(s)", s.name(), run["seconds"], mb(run["wan_bytes"]),
				run["wan_bytes"]/float64(m.unique), run["cuts"], run["attempts"])
		}
		res.Median = medians(res.Runs)
		rep.Results = append(rep.Results, res)
	}
	for _, s := range systems {
		res := &mirrorResult{Scenario: "promotion", Profile: "-", System: s.name(), Peer: s.peer()}
		run, err := m.promoteOnce(ctx, s)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			step("promote %-22s FAILED: %v", s.name(), err)
		} else {
			res.Runs = append(res.Runs, run)
			step("promote %-22s %.2fs, %.2f requests per blob, %.0f blob GETs, %s read", s.name(), run["seconds"], run["requests_per_blob"], run["blob_gets"], mb(run["bytes_read"]))
		}
		res.Median = medians(res.Runs)
		rep.Results = append(rep.Results, res)
	}
	rep.Took = time.Since(start).Round(time.Second).String()
	step("writing the mirroring report to %s", o.out)
	return rep.write(o.out)
}

// seed pushes the set to the US registry as team/app-<i>:1.0.
func (m *mirrorEnv) seed(ctx context.Context, spec testenv.ImageSetSpec) error {
	set, err := testenv.GenerateImageSet(spec)
	if err != nil {
		return err
	}
	if err := set.Push(ctx, m.us.Host, "team/app", testenv.RemoteOptions{}); err != nil {
		return err
	}
	m.unique, m.blobs = set.UniqueBytes, set.Blobs
	for i, img := range set.Images {
		d, err := img.Digest()
		if err != nil {
			return err
		}
		m.images = append(m.images, mirrorImage{repo: fmt.Sprintf("team/app-%d", i), tag: "1.0", digest: d.String()})
		if i == 0 {
			mf, err := img.Manifest()
			if err != nil {
				return err
			}
			m.promoBlobs, m.promoBytes = 1+len(mf.Layers), mf.Config.Size
			for _, l := range mf.Layers {
				m.promoBytes += l.Size
			}
		}
	}
	return nil
}

// once runs one system into a fresh EU registry behind a link with cfg,
// running it again up to attempts times if it fails, and checks that
// every image arrived digest-equal.
func (m *mirrorEnv) once(ctx context.Context, s mirrorSystem, cfg wan.Config, attempts int) (map[string]float64, error) {
	dir, err := os.MkdirTemp(m.dir, "eu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	eu, err := testenv.StartRegistry(context.WithoutCancel(ctx), testenv.RegistryOptions{Dir: dir})
	if err != nil {
		return nil, err
	}
	defer eu.Close()
	link, err := wan.Listen(context.WithoutCancel(ctx), "127.0.0.1:0", eu.Host, cfg)
	if err != nil {
		return nil, err
	}
	defer link.Close()
	if err := s.prepare(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name(), err)
	}
	m.us.Counter.Reset()
	cpu0 := m.cpu(s)
	start := time.Now()
	n := 0
	var errs []error
	for n < attempts {
		n++
		err := s.mirror(ctx, link.Addr())
		if err == nil {
			errs = nil
			break
		}
		errs = append(errs, fmt.Errorf("run %d: %w", n, err))
		if ctx.Err() != nil {
			break
		}
	}
	took := time.Since(start)
	cpu := m.cpu(s) - cpu0
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	st := link.Stats()
	c := eu.Counter
	blobReqs := c.Requests("HEAD blob") + c.Requests("GET blob") + c.Requests("POST upload") + c.Requests("PATCH upload") + c.Requests("PUT upload")
	run := map[string]float64{
		"seconds": took.Seconds(), "wan_bytes": float64(st.BytesUp + st.BytesDown), "conns": float64(st.Conns), "cuts": float64(st.Cuts),
		"attempts": float64(n), "eu_requests": float64(blobReqs + c.Requests("HEAD manifest") + c.Requests("GET manifest") + c.Requests("PUT manifest")),
		"eu_blob_requests": float64(blobReqs), "eu_blob_requests_per_blob": float64(blobReqs) / float64(m.blobs),
		"eu_head_blob": float64(c.Requests("HEAD blob")), "eu_post_upload": float64(c.Requests("POST upload")),
		"eu_patch_upload": float64(c.Requests("PATCH upload")), "eu_put_upload": float64(c.Requests("PUT upload")),
		"us_bytes_read": float64(m.us.Counter.Bytes()), "us_blob_gets": float64(m.us.Counter.TotalBlobGets()),
		"cpu_seconds": cpu,
	}
	// After the counts: the check's own requests are not the system's.
	if err := m.verify(ctx, eu); err != nil {
		return nil, err
	}
	return run, nil
}

// cpu is the CPU time the system's processes used so far.
func (m *mirrorEnv) cpu(s mirrorSystem) float64 {
	if c, ok := s.(interface{ cpu() float64 }); ok {
		return c.cpu()
	}
	return m.toolCPU
}

// verify checks that every image is in the EU registry, digest-equal.
func (m *mirrorEnv) verify(ctx context.Context, eu *testenv.Registry) error {
	for _, im := range m.images {
		ref := eu.Host + "/" + im.target() + ":" + im.tag
		raw, _, err := testenv.ManifestOf(ctx, ref, testenv.RemoteOptions{})
		if err != nil {
			return fmt.Errorf("verify %s: %w", ref, err)
		}
		sum := sha256.Sum256(raw)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != im.digest {
			return fmt.Errorf("verify %s: manifest %s, want %s", ref, got, im.digest)
		}
		// The registry checked each blob's digest when its upload was
		// committed: present means right.
		var mf struct {
			Config v1.Descriptor   `json:"config"`
			Layers []v1.Descriptor `json:"layers"`
		}
		if err := json.Unmarshal(raw, &mf); err != nil {
			return fmt.Errorf("verify %s: %w", ref, err)
		}
		for _, d := range append(mf.Layers, mf.Config) {
			if err := headBlob(ctx, eu.URL, im.target(), d.Digest.String()); err != nil {
				return fmt.Errorf("verify %s: %w", ref, err)
			}
		}
	}
	return nil
}

// headBlob checks that repo at the registry base has the blob.
func headBlob(ctx context.Context, base, repo, digest string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/v2/"+repo+"/blobs/"+digest, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("blob %s: %s", digest, resp.Status)
	}
	return nil
}

// promoteOnce copies image 0 within the US registry and counts what the
// registry saw.
func (m *mirrorEnv) promoteOnce(ctx context.Context, s mirrorSystem) (map[string]float64, error) {
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	repo := "promoted-" + s.name() + "/app-0"
	c := m.us.Counter
	c.Reset()
	start := time.Now()
	if err := s.promote(ctx, repo); err != nil {
		return nil, err
	}
	took := time.Since(start)
	raw, _, err := testenv.ManifestOf(ctx, m.us.Host+"/"+repo+":1.0", testenv.RemoteOptions{})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != m.images[0].digest {
		return nil, fmt.Errorf("promoted manifest %s, want %s", got, m.images[0].digest)
	}
	// ManifestOf's own GET is not the system's.
	manifestGets := c.Requests("GET manifest") - 1
	blobReqs := c.Requests("HEAD blob") + c.Requests("GET blob") + c.Requests("POST upload") + c.Requests("PATCH upload") + c.Requests("PUT upload")
	return map[string]float64{
		"seconds": took.Seconds(), "blob_requests": float64(blobReqs), "requests_per_blob": float64(blobReqs) / float64(m.promoBlobs),
		"blob_gets": float64(c.TotalBlobGets()), "bytes_read": float64(c.Bytes() - int64(len(raw))),
		"manifest_requests": float64(manifestGets + c.Requests("HEAD manifest") + c.Requests("PUT manifest")),
		"all_requests":      float64(blobReqs + manifestGets + c.Requests("HEAD manifest") + c.Requests("PUT manifest") + c.Requests("GET tags") + c.Requests("GET other")),
	}, nil
}
