package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MultiPlatformIndex builds an OCI index of linux/amd64 and linux/arm64
// images that share their first layer, each labelled with its
// architecture, with layers of about size bytes.
func MultiPlatformIndex(seed uint64, size int64) (v1.ImageIndex, error) {
	base, err := GenerateImage(ImageSpec{Layers: 1, LayerSize: size, Seed: seed})
	if err != nil {
		return nil, err
	}
	baseLayers, err := base.Layers()
	if err != nil {
		return nil, err
	}
	var adds []mutate.IndexAddendum
	for i, arch := range []string{"amd64", "arm64"} {
		own, err := GenerateImage(ImageSpec{Layers: 1, LayerSize: size, Seed: seed*100 + uint64(i) + 1})
		if err != nil {
			return nil, err
		}
		ownLayers, _ := own.Layers()
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), append(baseLayers, ownLayers...)...)
		if err != nil {
			return nil, err
		}
		cf, err := own.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if cf.Config.Labels == nil {
			cf.Config.Labels = map[string]string{}
		}
		cf.Config.Labels["org.opencontainers.image.title"] = "app-" + arch
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// Signature builds a cosign-style signature artifact (OCI 1.1: artifact
// type as config media type, one payload layer) whose subject is desc.
func Signature(desc v1.Descriptor, payload []byte) (v1.Image, error) {
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json")})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, "application/vnd.dev.cosign.artifact.sig.v1+json")
	return mutate.Subject(img, desc).(v1.Image), nil
}

// PushIndex writes idx to ref.
func PushIndex(ctx context.Context, ref string, idx v1.ImageIndex, o RemoteOptions) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx, o.remote(ctx)...)
}

// ManifestOf returns the raw manifest ref names and its media type.
func ManifestOf(ctx context.Context, ref string, o RemoteOptions) ([]byte, types.MediaType, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, "", err
	}
	d, err := remote.Get(r, o.remote(ctx)...)
	if err != nil {
		return nil, "", err
	}
	return d.Manifest, d.MediaType, nil
}

// SameImage checks that dst holds the image src names byte for byte: the
// manifest (or index) equal with its media type, and every platform's
// config and layers present and matching their digests (read and
// hashed in full). It returns nil when they are the same.
func SameImage(ctx context.Context, src string, so RemoteOptions, dst string, do RemoteOptions) error {
	a, amt, err := ManifestOf(ctx, src, so)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	b, bmt, err := ManifestOf(ctx, dst, do)
	if err != nil {
		return fmt.Errorf("target %s: %w", dst, err)
	}
	if !bytes.Equal(a, b) || amt != bmt {
		return fmt.Errorf("manifest of %s differs from %s (%s vs %s)", dst, src, bmt, amt)
	}
	return CompleteImage(ctx, dst, do)
}

// CompleteImage reads every manifest, config and layer of the image ref
// names, checking each digest: an error means some part is missing or
// wrong (what a puller would hit).
func CompleteImage(ctx context.Context, ref string, o RemoteOptions) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	d, err := remote.Get(r, o.remote(ctx)...)
	if err != nil {
		return err
	}
	var images []v1.Image
	if d.MediaType.IsIndex() {
		idx, err := d.ImageIndex()
		if err != nil {
			return err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return fmt.Errorf("%s: platform manifest %s: %w", ref, m.Digest, err)
			}
			images = append(images, img)
		}
	} else {
		img, err := d.Image()
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	for _, img := range images {
		if _, err := img.RawConfigFile(); err != nil {
			return fmt.Errorf("%s: config: %w", ref, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return fmt.Errorf("%s: layer: %w", ref, err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("%s: layer: %w", ref, err)
			}
		}
	}
	return nil
}
