package policies

import (
	"context"
	"errors"
	"net/http"
	"sort"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/replicate"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// isNotFound reports whether a registry answered 404 (no such tag,
// manifest or repository).
func isNotFound(err error) bool {
	var se *upstream.StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// listTags returns the tags of repo; a repository that does not exist has
// none.
func listTags(ctx context.Context, c *upstream.Client, repo string) ([]string, error) {
	tags, err := replicate.ListTags(ctx, replicate.Ref{Client: c, Repository: repo})
	if isNotFound(err) {
		return nil, nil
	}
	sort.Strings(tags)
	return tags, err
}

// resolve returns the digest a tag points at, "" if there is no such tag.
func resolve(ctx context.Context, ref replicate.Ref) (string, error) {
	d, _, err := replicate.Resolve(ctx, ref)
	if isNotFound(err) {
		return "", nil
	}
	return d, err
}

// deleteTag removes a tag from a registry (distribution: the tag is
// untagged, the manifest stays for the registry's garbage collector).
func deleteTag(ctx context.Context, ref replicate.Ref) error {
	resp, err := ref.Client.Do(ctx, upstream.Request{Method: http.MethodDelete, Path: "/v2/" + ref.Repository + "/manifests/" + ref.Tag,
		Scope: upstream.PushScope(ref.Repository)})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return &upstream.StatusError{Status: resp.StatusCode, Message: "deleting tag " + ref.Tag, Upstream: ref.String()}
}

// describe reads what the rules look at about an image.
func describe(ctx context.Context, ref replicate.Ref) (policy.Image, error) {
	img, err := replicate.Describe(ctx, ref)
	if err != nil {
		return policy.Image{}, err
	}
	out := policy.Image{
		Repository: img.Repository, Tag: img.Tag, Digest: img.Digest, MediaType: img.MediaType, ArtifactType: img.ArtifactType,
		Labels: img.Labels, Annotations: img.Annotations, Created: img.Created, Signed: img.Signed,
	}
	for _, p := range img.Platforms {
		out.Platforms = append(out.Platforms, policy.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	}
	// The newest report that parses counts.
	for _, a := range img.ScanReports {
		if counts, err := policy.ParseScanReport(a.MediaType, a.Data); err == nil {
			out.Vulnerabilities = &counts
			break
		}
	}
	return out, nil
}
