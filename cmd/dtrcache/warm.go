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
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// runWarm pre-fills a cache: it pulls images through it (a mirror, or the
// origin as a user whose profile points at the cache) and reads every
// blob, so the first real pull of the day is a warm one.
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
	opts := []remote.Option{remote.WithContext(ctx)}
	if *user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: *user, Password: pw}))
	}
	if *caFile != "" {
		tc, err := tlsConfig([]string{*caFile})
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache warm: --ca: %v\n", err)
			return 2
		}
		opts = append(opts, remote.WithTransport(&http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc}))
	}
	failed := 0
	for _, ref := range fs.Args() {
		n, err := warmRef(ctx, ref, *platform, *jobs, *insecure, opts, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache warm: %s: %v\n", ref, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%s: warm (%s of blobs read)\n", ref, progress.Human(n, "B"))
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// warmRef reads every blob of one image (or of the chosen platforms of an
// index) and returns the bytes read.
func warmRef(ctx context.Context, ref, platform string, jobs int, insecure bool, opts []remote.Option, out io.Writer) (int64, error) {
	// go-containerregistry speaks plain HTTP to loopback and private
	// addresses by itself; anywhere else only with --insecure.
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return 0, err
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return 0, err
	}
	var imgs []v1.Image
	switch desc.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := desc.ImageIndex()
		if err != nil {
			return 0, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return 0, err
		}
		for _, d := range m.Manifests {
			if platform != "all" && (d.Platform == nil || d.Platform.OS+"/"+d.Platform.Architecture != platform) {
				continue
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return 0, err
			}
			imgs = append(imgs, img)
		}
		if len(imgs) == 0 {
			return 0, fmt.Errorf("no image for platform %s in the index", platform)
		}
	default:
		img, err := desc.Image()
		if err != nil {
			return 0, err
		}
		imgs = append(imgs, img)
	}
	var total int64
	for _, img := range imgs {
		layers, err := img.Layers()
		if err != nil {
			return total, err
		}
		if _, err := img.RawConfigFile(); err != nil {
			return total, err
		}
		var size int64
		for _, l := range layers {
			if n, err := l.Size(); err == nil {
				size += n
			}
		}
		bar := progress.NewBar(size, ref, out)
		sizes := make([]int64, len(layers))
		g, _ := errgroup.WithContext(ctx)
		g.SetLimit(jobs)
		for i, l := range layers {
			g.Go(func() error {
				rc, err := l.Compressed()
				if err != nil {
					return err
				}
				defer rc.Close()
				n, err := io.Copy(io.MultiWriter(io.Discard, bar), rc) // go-containerregistry verifies the digest
				sizes[i] = n
				return err
			})
		}
		err = g.Wait()
		bar.Finish()
		for _, n := range sizes {
			total += n
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
