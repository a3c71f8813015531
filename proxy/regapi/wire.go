package regapi

import (
	"encoding/json"

	"github.com/dtrcache/dtrcache/casstore"
)

// What the origin and the caches say to each other, beyond the OCI API.

// TokenHeader carries a redirect token when it is not in the query: a
// cache forwards its user's token upstream in it.
const TokenHeader = "X-Dtrcache-Token"

// PrefetchPath is where a cache receives the origin's prefetch hints.
const PrefetchPath = "/dtrcache/v1/prefetch"

// PrefetchHint is the body of a prefetch request: blobs of one
// repository, each with a redirect token the origin signed for the cache.
type PrefetchHint struct {
	Repo  string         `json:"repo"`
	Blobs []PrefetchBlob `json:"blobs"`
}

// PrefetchBlob is one blob of a hint. Size is the size the manifest's
// descriptor gives (0 or absent: unknown). The token does not cover it,
// so a cache uses it only to order its prefetches, never for a fill,
// which learns the size from the upstream and verifies the digest.
type PrefetchBlob struct {
	Digest string `json:"digest"`
	Token  string `json:"token"`
	Size   int64  `json:"size,omitempty"`
}

// MaxManifestSize bounds manifests read into memory (distribution's limit).
const MaxManifestSize = 4 << 20

// ManifestBlobs returns the config and layer digests of an image manifest
// (nil for an index or anything else). Foreign layers (with URLs) are not
// in the registry and are left out.
func ManifestBlobs(body []byte) []casstore.Digest {
	var out []casstore.Digest
	for _, b := range ManifestBlobSizes(body) {
		out = append(out, b.Digest)
	}
	return out
}

// BlobRef is a blob a manifest lists, with the size its descriptor gives.
type BlobRef struct {
	Digest casstore.Digest
	Size   int64 // the descriptor's size; -1 when it gives none
}

// ManifestBlobSizes returns what ManifestBlobs does, each with its
// descriptor's size.
func ManifestBlobSizes(body []byte) []BlobRef {
	type desc struct {
		Digest string   `json:"digest"`
		Size   *int64   `json:"size"`
		URLs   []string `json:"urls"`
	}
	var m struct {
		Config *desc  `json:"config"`
		Layers []desc `json:"layers"`
	}
	if json.Unmarshal(body, &m) != nil || m.Config == nil {
		return nil
	}
	var out []BlobRef
	add := func(l desc) {
		if d, err := casstore.ParseDigest(l.Digest); err == nil {
			size := int64(-1)
			if l.Size != nil && *l.Size >= 0 {
				size = *l.Size
			}
			out = append(out, BlobRef{Digest: d, Size: size})
		}
	}
	add(*m.Config)
	for _, l := range m.Layers {
		if len(l.URLs) == 0 {
			add(l)
		}
	}
	return out
}

// ManifestRefs returns every digest a manifest lists that must be in its
// repository: an image manifest's config and layers (ManifestBlobs), an
// index's child manifests.
func ManifestRefs(body []byte) []casstore.Digest {
	refs := ManifestBlobs(body)
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if json.Unmarshal(body, &idx) == nil {
		for _, c := range idx.Manifests {
			if d, err := casstore.ParseDigest(c.Digest); err == nil {
				refs = append(refs, d)
			}
		}
	}
	return refs
}

// HeartbeatPath is where the cache named cache posts its heartbeats at
// the origin (a health.Beat; the answer is a HeartbeatReply). The origin
// holds a beat for up to the beat's interval and answers at once when it
// has prefetch hints for the node, so hints reach a cache that the origin
// cannot connect to.
func HeartbeatPath(cache string) string { return "/api/v0/content_caches/" + cache + "/heartbeat" }

// HeartbeatReply is the origin's answer to a heartbeat: its verdict on
// the node and the prefetch hints waiting for it.
type HeartbeatReply struct {
	Healthy bool           `json:"healthy"`
	Reason  string         `json:"reason,omitempty"`
	Hints   []PrefetchHint `json:"hints,omitempty"`
}
