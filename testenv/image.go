package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"
)

// ImageSpec describes a generated image.
type ImageSpec struct {
	// Layers is the number of layers, each LayerSize bytes.
	Layers    int
	LayerSize int64
	// Seed makes the content deterministic: the same spec gives the same
	// digests.
	Seed uint64
	// Realistic makes gzipped tar layers of text and binary files instead
	// of incompressible random bytes.
	Realistic bool
}

// GenerateImage builds an image from spec.
func GenerateImage(spec ImageSpec) (v1.Image, error) {
	img := empty.Image
	var layers []v1.Layer
	for i := 0; i < spec.Layers; i++ {
		seed := [32]byte{}
		copy(seed[:], fmt.Sprintf("dtrcache-%d-%d", spec.Seed, i))
		rng := rand.NewChaCha8(seed)
		if spec.Realistic {
			l, err := realisticLayer(rng, spec.LayerSize)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
			continue
		}
		data := make([]byte, spec.LayerSize)
		rng.Read(data)
		layers = append(layers, static.NewLayer(data, types.OCIUncompressedLayer))
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Cmd = []string{"/bin/true"}
	cf.Config.Labels = map[string]string{"org.dtrcache.seed": fmt.Sprint(spec.Seed)}
	return mutate.ConfigFile(img, cf)
}

// realisticLayer builds a gzipped tar of text-like and binary-like files
// totalling about size bytes before compression, with the right diff ID
// (the digest of the uncompressed tar) so container engines accept it.
func realisticLayer(rng *rand.ChaCha8, size int64) (v1.Layer, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	words := []string{"registry", "layer", "cache", "manifest", "digest", "token", "origin", "blob", "office", "asia", "\n", "func", "return", "{", "}", "0x", "error"}
	r := rand.New(rng)
	var written int64
	for i := 0; written < size; i++ {
		n := min(int64(4<<10+r.IntN(256<<10)), size-written)
		content := make([]byte, 0, n)
		if i%3 == 2 { // binary-ish: random bytes
			content = content[:n]
			rng.Read(content)
		} else {
			for int64(len(content)) < n {
				content = append(content, words[r.IntN(len(words))]...)
				content = append(content, ' ')
			}
			content = content[:n]
		}
		hdr := &tar.Header{Name: fmt.Sprintf("usr/share/dtrcache/file-%05d", i), Mode: 0o644, Size: n}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
		written += n
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gzBuf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&gzBuf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := gz.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return &memLayer{gz: gzBuf.Bytes(), tar: tarBuf.Bytes()}, nil
}

// memLayer is a gzipped layer held in memory with its uncompressed form.
type memLayer struct{ gz, tar []byte }

func (l *memLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.gz))
	return h, err
}
func (l *memLayer) DiffID() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.tar))
	return h, err
}
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}
func (l *memLayer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// RemoteOptions are the options for go-containerregistry against a
// dtrcache hop: credentials and the HTTP transport (for TLS trust).
type RemoteOptions struct {
	Username, Password string
	Transport          http.RoundTripper
}

func (o RemoteOptions) remote(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if o.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: o.Username, Password: o.Password}))
	}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// ParseRef parses an image reference, allowing plain HTTP to loopback.
func ParseRef(ref string) (name.Reference, error) {
	return name.ParseReference(ref, name.Insecure)
}

// Push writes img to ref ("127.0.0.1:5000/website/ui:3-stable").
func Push(ctx context.Context, ref string, img v1.Image, o RemoteOptions) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, o.remote(ctx)...)
}

// PullResult describes a pull.
type PullResult struct {
	Digest v1.Hash // manifest digest
	Layers []v1.Hash
	Bytes  int64 // layer bytes read
}

// PullConcurrency is how many layers Pull downloads at once, like
// Docker's default max-concurrent-downloads.
const PullConcurrency = 3

// Pull fetches an image's manifest, config and every layer, reading each
// layer fully (go-containerregistry verifies each digest as it reads),
// PullConcurrency layers at a time. progress, if set, is called with the
// bytes of the config and the layers as they arrive (from several
// goroutines), so they add up to ImageInfo.BlobBytes.
func Pull(ctx context.Context, ref string, o RemoteOptions, progress func(n int64)) (PullResult, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return PullResult{}, err
	}
	img, err := remote.Image(r, o.remote(ctx)...)
	if err != nil {
		return PullResult{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	var res PullResult
	if res.Digest, err = img.Digest(); err != nil {
		return res, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return res, fmt.Errorf("pull %s config: %w", ref, err)
	}
	if progress != nil {
		progress(int64(len(cfg)))
	}
	layers, err := img.Layers()
	if err != nil {
		return res, err
	}
	res.Layers = make([]v1.Hash, len(layers))
	sizes := make([]int64, len(layers))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(PullConcurrency)
	for i, l := range layers {
		g.Go(func() error {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			rc, err := l.Compressed()
			if err != nil {
				return fmt.Errorf("pull %s layer %s: %w", ref, d, err)
			}
			defer rc.Close()
			var w io.Writer = io.Discard
			if progress != nil {
				w = progressWriter(progress)
			}
			n, err := io.Copy(w, rc)
			if err != nil {
				return fmt.Errorf("pull %s layer %s: %w", ref, d, err)
			}
			res.Layers[i], sizes[i] = d, n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for _, n := range sizes {
		res.Bytes += n
	}
	return res, nil
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) { p(int64(len(b))); return len(b), nil }

// ImageInfo lists an image's digests and sizes.
type ImageInfo struct {
	Digest    v1.Hash
	Config    v1.Hash
	Layers    []v1.Hash
	BlobBytes int64 // config + layers
}

// Describe returns an image's digests and total blob size.
func Describe(img v1.Image) (ImageInfo, error) {
	var info ImageInfo
	var err error
	if info.Digest, err = img.Digest(); err != nil {
		return info, err
	}
	m, err := img.Manifest()
	if err != nil {
		return info, err
	}
	info.Config = m.Config.Digest
	info.BlobBytes = m.Config.Size
	for _, l := range m.Layers {
		info.Layers = append(info.Layers, l.Digest)
		info.BlobBytes += l.Size
	}
	return info, nil
}
