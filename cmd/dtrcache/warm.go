package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// runWarm pre-fills a cache: it pulls images through it (a mirror, or the
// origin as a user whose profile points at the cache) and reads every
// blob, so the first real pull of the day is a warm one. It resolves every
// image first, then reads the blobs, reporting as it goes (warmreport.go).
func runWarm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("warm", "warm [flags] IMAGE...   (e.g. cache.office:5000/library/alpine:3.20)", stderr)
	user := fs.String("user", envOr("DTRCACHE_WARM_USER", ""), "username (env DTRCACHE_WARM_USER)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from stdin (else env DTRCACHE_WARM_PASSWORD)")
	platform := fs.String("platform", "linux/amd64", "platform to warm from multi-platform images, or \"all\"")
	jobs := fs.Int("jobs", 3, "blobs fetched at once")
	caFile := fs.String("ca", "", "PEM CA file to trust besides the system roots")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to registries other than loopback and private addresses")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() == 0 || *jobs < 1 {
		fs.Usage()
		return 2
	}
	pw := os.Getenv("DTRCACHE_WARM_PASSWORD")
	if *pwStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "dtrcache warm: %v\n", err)
			return 2
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	base := http.DefaultTransport
	if *caFile != "" {
		tc, err := tlsConfig([]string{*caFile})
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache warm: --ca: %v\n", err)
			return 2
		}
		base = &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc}
	}
	statuses := &cacheStatuses{next: base}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(statuses)}
	if *user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: *user, Password: pw}))
	}

	var images []warmImage
	failed := 0
	for _, ref := range fs.Args() {
		imgs, err := resolveWarm(ref, *platform, *insecure, opts)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache warm: %s: %v\n", ref, err)
			failed++
			continue
		}
		images = append(images, imgs...)
	}
	rep := newWarmReport(stdout, progress.IsTerminal(stdout), images, statuses)
	for _, im := range images {
		if err := warmImageBlobs(ctx, im, *jobs, rep); err != nil {
			fmt.Fprintf(stderr, "dtrcache warm: %s: %v\n", im.ref, err)
			failed++
		}
	}
	rep.summary()
	if failed > 0 {
		return 1
	}
	return 0
}

// warmImage is one image to warm: its reference (with the platform of an
// index's image) and its blobs.
type warmImage struct {
	ref   string
	blobs []warmBlob
}

// warmBlob is one blob: the layer that reads it through the cache.
type warmBlob struct {
	digest string
	size   int64
	layer  v1.Layer
}

// resolveWarm reads the manifests of ref (the chosen platforms of an
// index) and lists their blobs: config first, then the layers.
func resolveWarm(ref, platform string, insecure bool, opts []remote.Option) ([]warmImage, error) {
	// go-containerregistry speaks plain HTTP to loopback and private
	// addresses by itself; anywhere else only with --insecure.
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, err
	}
	type named struct {
		ref string
		img v1.Image
	}
	var imgs []named
	switch desc.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		for _, d := range m.Manifests {
			if d.Platform == nil || platform != "all" && d.Platform.OS+"/"+d.Platform.Architecture != platform {
				continue
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			imgs = append(imgs, named{ref + " (" + d.Platform.OS + "/" + d.Platform.Architecture + ")", img})
		}
		if len(imgs) == 0 {
			return nil, fmt.Errorf("no image for platform %s in the index", platform)
		}
	default:
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, named{ref, img})
	}
	var out []warmImage
	for _, n := range imgs {
		m, err := n.img.Manifest()
		if err != nil {
			return nil, err
		}
		cfg, err := partial.ConfigLayer(n.img)
		if err != nil {
			return nil, err
		}
		im := warmImage{ref: n.ref, blobs: []warmBlob{{digest: m.Config.Digest.String(), size: m.Config.Size, layer: cfg}}}
		layers, err := n.img.Layers()
		if err != nil {
			return nil, err
		}
		for i, l := range layers {
			if i >= len(m.Layers) || len(m.Layers[i].URLs) > 0 {
				continue // a foreign layer is not in the registry
			}
			im.blobs = append(im.blobs, warmBlob{digest: m.Layers[i].Digest.String(), size: m.Layers[i].Size, layer: l})
		}
		out = append(out, im)
	}
	return out, nil
}

// warmImageBlobs reads every blob of im not read yet, jobs at a time.
func warmImageBlobs(ctx context.Context, im warmImage, jobs int, rep *warmReport) error {
	rep.startImage(im)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, b := range im.blobs {
		if !rep.claim(b.digest) {
			continue // an earlier image had it
		}
		g.Go(func() error {
			rc, err := b.layer.Compressed()
			if err != nil {
				return fmt.Errorf("blob %s: %w", b.digest, err)
			}
			defer rc.Close()
			n, err := io.Copy(rep.counter(), rc) // go-containerregistry verifies the digest
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			rep.blobDone(im, b, n, err)
			if err != nil {
				return fmt.Errorf("blob %s: %w", b.digest, err)
			}
			return nil
		})
	}
	err := g.Wait()
	rep.finishImage(im, err)
	return err
}
