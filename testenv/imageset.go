package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ImageSetSpec describes a set of images that share a base layer, as the
// images of one team do: the mirroring benchmarks copy such a set.
type ImageSetSpec struct {
	// Images is how many images; each is tagged <Repo>-<i>:1.0.
	Images int
	// BaseSize is the size of the base layer every image starts with.
	BaseSize int64
	// OwnLayers of OwnSize bytes each are unique to each image.
	OwnLayers int
	OwnSize   int64
	// Seed makes the content deterministic.
	Seed uint64
}

// MirrorSet is the mirroring benchmark set: 10 images sharing a base
// layer of base/8 bytes, each with 4 layers of its own, about base bytes
// of unique blobs in all (MirrorSet(1<<30): the 1 GiB set).
func MirrorSet(base int64) ImageSetSpec {
	return ImageSetSpec{Images: 10, BaseSize: base / 8, OwnLayers: 4, OwnSize: base * 7 / 8 / 40, Seed: 1}
}

// ImageSet is a generated set of images.
type ImageSet struct {
	Images []v1.Image
	// UniqueBytes is the size of the distinct blobs (configs and layers)
	// of all images: what a mirror has to move at least.
	UniqueBytes int64
	// Blobs is the number of distinct blobs.
	Blobs int
}

// GenerateImageSet builds the images of spec (random, incompressible
// layers, held in memory).
func GenerateImageSet(spec ImageSetSpec) (*ImageSet, error) {
	base := randomLayer(spec.Seed, 0, spec.BaseSize)
	set := &ImageSet{}
	seen := map[v1.Hash]bool{}
	for i := 0; i < spec.Images; i++ {
		layers := []v1.Layer{base}
		for j := 0; j < spec.OwnLayers; j++ {
			layers = append(layers, randomLayer(spec.Seed, uint64(1+i*spec.OwnLayers+j), spec.OwnSize))
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
		if err != nil {
			return nil, err
		}
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", "amd64"
		cf.Config.Labels = map[string]string{"org.dtrcache.set": fmt.Sprint(spec.Seed), "org.dtrcache.image": fmt.Sprint(i)}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, err
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				set.UniqueBytes += d.Size
				set.Blobs++
			}
		}
		set.Images = append(set.Images, img)
	}
	return set, nil
}

// randomLayer is n deterministic random bytes as an uncompressed layer.
func randomLayer(seed, i uint64, n int64) v1.Layer {
	var key [32]byte
	copy(key[:], fmt.Sprintf("dtrcache-set-%d-%d", seed, i))
	data := make([]byte, n)
	rand.NewChaCha8(key).Read(data)
	return static.NewLayer(data, types.OCIUncompressedLayer)
}

// Push writes every image of the set to host as <repo>-<i>:1.0.
func (s *ImageSet) Push(ctx context.Context, host, repo string, o RemoteOptions) error {
	for i, img := range s.Images {
		if err := Push(ctx, s.Ref(host, repo, i), img, o); err != nil {
			return fmt.Errorf("push image %d: %w", i, err)
		}
	}
	return nil
}

// Ref is the reference of image i of the set at host.
func (s *ImageSet) Ref(host, repo string, i int) string {
	return fmt.Sprintf("%s/%s-%d:1.0", host, repo, i)
}
