package replicate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Bounds of the walk over an image and its referrers.
const (
	// maxReferrerDepth is how deep referrers of referrers are followed (a
	// signature of an SBOM of an image is depth 2).
	maxReferrerDepth = 3
	// maxManifests bounds the manifests one copy reads.
	maxManifests = 10000
)

// node is one manifest of the image being copied.
type node struct {
	f        *fetched
	onTarget bool    // the target has it (and so, all of its blobs)
	children []*node // an index's manifests
	// referrers are the manifests whose subject this is; srcIndex is the
	// source's sha256-<hex> tag index they were listed in, if that is how.
	referrers []*node
	srcIndex  *fetched
	// tag, for a cosign tag (sha256-<hex>.sig), is the tag to push it as.
	tag string
}

// copier is the state of one Copy.
type copier struct {
	src, dst Ref
	opt      Options
	mount    bool // same registry, other repository: mount blobs
	limiter  *rate.Limiter
	log      *zap.Logger
	progress *Progress
	resume   map[string]Checkpoint

	blobsCopied, blobsMounted, blobsSkipped, resumes atomic.Int64
	manifestsPushed, manifestsSkipped, referrers     atomic.Int64

	// mu guards seen and the referrers-API verdicts.
	mu       sync.Mutex
	seen     map[string]*node // manifests read, by digest
	srcAPI   apiSupport
	dstAPI   apiSupport
	manifest int // manifests read
}

// apiSupport is whether a registry serves the OCI referrers API.
type apiSupport int

const (
	apiUnknown apiSupport = iota
	apiYes
	apiNo
)

// Copy copies the image src names (by tag or digest) to dst: every
// manifest of an index, every config and layer, and the referrers of each
// manifest (signatures, SBOMs, attestations, through the referrers API or
// the sha256-<hex> tag scheme, whichever each side has), byte for byte so
// digests stay the same.
//
// Blobs the target has are skipped; within one registry (src and dst share
// their Client) blobs are mounted from src's repository, never read.
// Others stream from source to target, Concurrency at a time, under the
// bandwidth cap, and a transfer cut by the network resumes at the byte the
// target stored. Manifests are pushed only after everything they point to
// is there (blobs, then child manifests, then referrers), and dst.Tag is
// the last write, so the target never shows a partial image.
//
// Errors are *Error values wrapping the cause; IsTransient tells whether
// trying again later may help.
func Copy(ctx context.Context, src, dst Ref, opt Options) (Result, error) {
	start := time.Now()
	if src.Client == nil || dst.Client == nil || src.Repository == "" || dst.Repository == "" || src.reference() == "" {
		return Result{}, &Error{Op: "copy", Ref: src.String(), Err: permanent(errors.New("source and target need a client and a repository, the source a tag or digest"))}
	}
	c := &copier{
		src: src, dst: dst, opt: opt,
		mount:    src.Client == dst.Client && src.Repository != dst.Repository,
		log:      opt.Logger,
		progress: opt.Progress,
		seen:     map[string]*node{},
		resume:   map[string]Checkpoint{},
	}
	if c.opt.Concurrency <= 0 {
		c.opt.Concurrency = 4
	}
	if c.opt.Retries == 0 {
		c.opt.Retries = 5
	}
	if c.opt.CheckpointEvery <= 0 {
		c.opt.CheckpointEvery = 16 << 20
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.progress == nil {
		c.progress = &Progress{}
	}
	switch {
	case opt.Limiter != nil:
		c.limiter = opt.Limiter
	case opt.BandwidthLimit > 0:
		c.limiter = NewLimiter(opt.BandwidthLimit)
	}
	for _, cp := range opt.Resume {
		if cp.Repository == dst.Repository && cp.Location != "" {
			c.resume[cp.Digest] = cp
		}
	}
	res, err := c.run(ctx)
	res.Duration = time.Since(start)
	return res, err
}

func (c *copier) run(ctx context.Context) (Result, error) {
	top, err := c.load(ctx, c.src.reference(), c.src.Digest, 0)
	if err != nil {
		return c.result(nil), err
	}
	if !c.opt.SkipReferrers {
		if err := c.loadCosignTags(ctx, top); err != nil {
			return c.result(top), err
		}
	}
	if err := c.copyBlobs(ctx, top); err != nil {
		return c.result(top), err
	}
	// Child manifests (Concurrency at a time), then referrers (theirs
	// included), then the image.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Concurrency)
	for _, ch := range top.children {
		g.Go(func() error { return c.pushTree(gctx, ch) })
	}
	if err := g.Wait(); err != nil {
		return c.result(top), err
	}
	if err := c.pushReferrers(ctx, top); err != nil {
		return c.result(top), err
	}
	if c.dst.Tag == "" && top.onTarget {
		c.manifestsSkipped.Add(1)
		return c.result(top), nil
	}
	ref := c.dst.Tag
	if ref == "" {
		ref = top.f.digest
	}
	if _, err := putManifest(ctx, c.dst.Client, c.dst.Repository, ref, top.f); err != nil {
		return c.result(top), wrap("push manifest", c.dstRef(ref), err)
	}
	c.manifestsPushed.Add(1)
	return c.result(top), nil
}

func (c *copier) result(top *node) Result {
	r := Result{
		BytesCopied: c.progress.bytesCopied.Load(), BytesSkipped: c.progress.bytesSkipped.Load(),
		BlobsCopied: int(c.blobsCopied.Load()), BlobsMounted: int(c.blobsMounted.Load()), BlobsSkipped: int(c.blobsSkipped.Load()),
		Resumes:         int(c.resumes.Load()),
		ManifestsPushed: int(c.manifestsPushed.Load()), ManifestsSkipped: int(c.manifestsSkipped.Load()),
		ReferrersCopied: int(c.referrers.Load()),
	}
	if top != nil {
		r.Digest, r.MediaType = top.f.digest, top.f.mediaType
	}
	return r
}

func (c *copier) dstRef(ref string) string {
	r := c.dst
	r.Tag, r.Digest = "", ""
	if validDigest(ref) {
		r.Digest = ref
	} else {
		r.Tag = ref
	}
	return r.String()
}

// load reads the manifest ref (want: its digest, if known) from the
// source, whether the target has it, and, recursively, its children and
// referrers.
func (c *copier) load(ctx context.Context, ref, want string, depth int) (*node, error) {
	c.mu.Lock()
	if n, ok := c.seen[want]; ok && want != "" {
		c.mu.Unlock()
		return n, nil
	}
	c.manifest++
	if c.manifest > maxManifests {
		c.mu.Unlock()
		return nil, wrap("read manifest", c.src.at(ref), errf(ErrTooLarge, "more than %d manifests", maxManifests))
	}
	c.mu.Unlock()
	f, err := getManifest(ctx, c.src.Client, c.src.Repository, ref, want)
	if err != nil {
		return nil, wrap("read manifest", c.src.at(ref), err)
	}
	n := &node{f: f}
	c.mu.Lock()
	if prev, ok := c.seen[f.digest]; ok {
		c.mu.Unlock()
		return prev, nil
	}
	c.seen[f.digest] = n
	c.mu.Unlock()
	ok, _, _, err := headManifest(ctx, c.dst.Client, c.dst.Repository, f.digest)
	if err != nil {
		return nil, wrap("check manifest", c.dst.at(f.digest), err)
	}
	n.onTarget = ok
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Concurrency)
	if isIndex(f.mediaType) {
		n.children = make([]*node, len(f.m.Manifests))
		for i, d := range f.m.Manifests {
			if _, _, err := parseMediaType(d.MediaType); err != nil {
				return nil, wrap("read manifest", c.src.at(d.Digest), err)
			}
			g.Go(func() error {
				ch, err := c.load(gctx, d.Digest, d.Digest, depth)
				n.children[i] = ch
				return err
			})
		}
	}
	if !c.opt.SkipReferrers && depth < maxReferrerDepth {
		g.Go(func() error { return c.loadReferrers(gctx, n, depth) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return n, nil
}

// parseMediaType accepts the manifest media types an index may list.
func parseMediaType(mt string) (string, bool, error) {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		return mt, false, nil
	case MediaTypeOCIIndex, MediaTypeDockerList:
		return mt, true, nil
	}
	return "", false, errf(ErrUnsupportedMediaType, "%q in an index", mt)
}

// loadReferrers finds n's referrers at the source and loads each.
func (c *copier) loadReferrers(ctx context.Context, n *node, depth int) error {
	descs, index, err := c.sourceReferrers(ctx, n.f.digest)
	if err != nil {
		return wrap("list referrers", c.src.at(n.f.digest), err)
	}
	n.srcIndex = index
	for _, d := range descs {
		if _, _, err := parseMediaType(d.MediaType); err != nil {
			c.log.Warn("referrer of a type that is not copied", zap.String("subject", n.f.digest), zap.String("referrer", d.Digest), zap.String("mediaType", d.MediaType))
			continue
		}
		r, err := c.load(ctx, d.Digest, d.Digest, depth+1)
		if err != nil {
			return err
		}
		n.referrers = append(n.referrers, r)
	}
	return nil
}

// loadCosignTags adds cosign's sha256-<hex>.sig, .att and .sbom tags of
// the top manifest, where the source has them.
func (c *copier) loadCosignTags(ctx context.Context, top *node) error {
	base := strings.Replace(top.f.digest, ":", "-", 1)
	for _, suffix := range []string{".sig", ".att", ".sbom"} {
		tag := base + suffix
		ok, d, _, err := headManifest(ctx, c.src.Client, c.src.Repository, tag)
		if err != nil {
			return wrap("check tag", c.src.String()+":"+tag, err)
		}
		if !ok {
			continue
		}
		n, err := c.load(ctx, tag, "", maxReferrerDepth)
		if err != nil {
			return err
		}
		if d != "" && d != n.f.digest {
			return wrap("read manifest", c.src.at(tag), errf(ErrDigestMismatch, "HEAD said %s, GET gave %s", d, n.f.digest))
		}
		n.tag = tag
		top.referrers = append(top.referrers, n)
	}
	return nil
}

// allNodes lists every node under top once, children and referrers
// included.
func allNodes(top *node) []*node {
	var out []*node
	seen := map[*node]bool{}
	var walk func(n *node)
	walk = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
		for _, ch := range n.children {
			walk(ch)
		}
		for _, r := range n.referrers {
			walk(r)
		}
	}
	walk(top)
	return out
}

// copyBlobs copies every blob of every manifest the target lacks,
// Concurrency at a time, each digest once.
func (c *copier) copyBlobs(ctx context.Context, top *node) error {
	var blobs []Descriptor
	seen := map[string]bool{}
	for _, n := range allNodes(top) {
		if n.onTarget {
			continue
		}
		for _, b := range n.f.blobs() {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				blobs = append(blobs, b)
			}
		}
	}
	c.progress.blobsTotal.Add(int64(len(blobs)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Concurrency)
	for _, b := range blobs {
		g.Go(func() error {
			err := c.copyBlob(gctx, b)
			c.progress.done(b.Digest)
			return wrap("copy blob", c.dst.at(b.Digest), err)
		})
	}
	return g.Wait()
}

// pushTree pushes n's children, then n by digest (or by its cosign tag).
func (c *copier) pushTree(ctx context.Context, n *node) error {
	for _, ch := range n.children {
		if err := c.pushTree(ctx, ch); err != nil {
			return err
		}
	}
	if n.tag == "" && n.onTarget {
		c.manifestsSkipped.Add(1)
		return nil
	}
	ref := n.f.digest
	if n.tag != "" {
		ref = n.tag
	}
	h, err := putManifest(ctx, c.dst.Client, c.dst.Repository, ref, n.f)
	if err != nil {
		return wrap("push manifest", c.dstRef(ref), err)
	}
	c.manifestsPushed.Add(1)
	if n.f.m.Subject != nil && h.Get("OCI-Subject") != "" {
		c.mu.Lock()
		c.dstAPI = apiYes
		c.mu.Unlock()
	}
	return nil
}

// pushReferrers pushes the referrers of n and of every manifest under it,
// and, where the target has no referrers API, the sha256-<hex> tag index
// that lists them.
func (c *copier) pushReferrers(ctx context.Context, top *node) error {
	for _, n := range allNodes(top) {
		if len(n.referrers) == 0 {
			continue
		}
		var listed []*node
		for _, r := range n.referrers {
			if err := c.pushTree(ctx, r); err != nil {
				return err
			}
			c.referrers.Add(1)
			if r.tag == "" {
				listed = append(listed, r)
			}
		}
		if len(listed) == 0 {
			continue
		}
		if err := c.updateTargetIndex(ctx, n, listed); err != nil {
			return wrap("push referrers index", c.dst.at(n.f.digest), err)
		}
	}
	return nil
}
