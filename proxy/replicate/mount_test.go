package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
)

// startTokenRegistry starts a distribution registry behind Bearer-token
// auth: a token server that grants what access allows; the returned reg's
// clients log in as user.
func startTokenRegistry(t *testing.T, access *policy.Access, user, pass string) (*reg, *testenv.TokenServer) {
	t.Helper()
	ts, err := testenv.StartTokenServer(testenv.TokenServerOptions{Dir: t.TempDir(), Users: map[string]string{user: pass, "other": "pw"}, Access: access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	r := startDistribution(t, testenv.RegistryOptions{Token: ts})
	r.user, r.pass = user, pass
	return r, ts
}

func access(t *testing.T, rules ...policy.RepoRule) *policy.Access {
	t.Helper()
	a, err := policy.NewAccess(policy.AccessConfig{Repositories: rules})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPromotionMounts: within one registry (Bearer auth in front) every
// blob is mounted across repositories: no blob is read, one request per
// blob (plus the token handshake's first challenge), and the image
// arrives whole.
func TestPromotionMounts(t *testing.T) {
	r, ts := startTokenRegistry(t, access(t,
		policy.RepoRule{Pattern: "dev/*", Grants: []policy.Grant{{User: "promoter", Actions: []policy.Action{policy.ActionPush}}}},
		policy.RepoRule{Pattern: "qa/*", Grants: []policy.Grant{{User: "promoter", Actions: []policy.Action{policy.ActionPush}}}},
	), "promoter", "s3cret")
	idx, _ := seedIndex(t, r, "dev/app", "1.2.0", 21)
	cl := r.client(t)
	r.Counter.Reset()
	res, err := Copy(context.Background(),
		Ref{Client: cl, Repository: "dev/app", Tag: "1.2.0"},
		Ref{Client: cl, Repository: "qa/app", Tag: "1.2.0-20250101"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const blobs = 11 // see TestCopyWholeImage
	if res.BlobsMounted != blobs || res.BlobsCopied != 0 || res.BytesCopied != 0 {
		t.Fatalf("Result %+v, want %d mounts and no bytes", res, blobs)
	}
	if n := r.Counter.Requests("GET blob"); n != 0 {
		t.Fatalf("%d blob GETs at the registry during a promotion, want 0", n)
	}
	perBlob := float64(r.Counter.Requests("POST upload")+r.Counter.Requests("HEAD blob")) / blobs
	if perBlob > 2 || r.Counter.Requests("HEAD blob") != 0 {
		t.Fatalf("%.2f requests per blob (%d POST, %d HEAD), want at most 2", perBlob, r.Counter.Requests("POST upload"), r.Counter.Requests("HEAD blob"))
	}
	sameImage(t, r, "dev/app:1.2.0", r, "qa/app:1.2.0-20250101")
	if !slices.ContainsFunc(ts.Requests(), func(s string) bool {
		return strings.Contains(s, "repository:qa/app:pull,push") && strings.Contains(s, "repository:dev/app:pull")
	}) {
		t.Fatalf("no token asked for the mount scope: %q", ts.Requests())
	}
	idxDigest := must[v1.Hash](t)(idx.Digest())
	if got := referrerDigests(t, r, "qa/app", idxDigest); len(got) != 1 {
		t.Fatalf("referrers of the promoted index: %v", got)
	}
}

// TestMountRefusedFallsBack: a registry that answers a mount with 202 (go-
// containerregistry's has no mounts) gets the blob streamed into the
// upload session it opened.
func TestMountRefusedFallsBack(t *testing.T) {
	r := startGGCR(t)
	img := platformImage(t, 5, 2, 100<<10, "linux", "amd64")
	pushImage(t, r, "dev/app:1", img)
	cl := r.client(t)
	r.Counter.Reset()
	res, err := Copy(context.Background(), Ref{Client: cl, Repository: "dev/app", Tag: "1"}, Ref{Client: cl, Repository: "qa/app", Tag: "1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsMounted != 0 || res.BlobsCopied != 3 {
		t.Fatalf("Result %+v", res)
	}
	if n := r.Counter.Requests("POST upload"); n != 3 {
		t.Fatalf("%d POSTs, want 3: the refused mount's session is used for the upload", n)
	}
	sameImage(t, r, "dev/app:1", r, "qa/app:1")
}

// TestBearerBetweenRegistries mirrors between two token-auth registries
// with different accounts, and checks a target that refuses the push
// fails permanently with the registry's own error.
func TestBearerBetweenRegistries(t *testing.T) {
	src, _ := startTokenRegistry(t, access(t, policy.RepoRule{Pattern: "dev/**", Grants: []policy.Grant{{User: "us", Actions: []policy.Action{policy.ActionPush}}}}), "us", "pw-us")
	dst, ts := startTokenRegistry(t, access(t, policy.RepoRule{Pattern: "prod/*", Grants: []policy.Grant{{User: "eu", Actions: []policy.Action{policy.ActionPush}}}}), "eu", "pw-eu")
	seedIndex(t, src, "dev/team/app", "2.0", 9)
	res, err := Copy(context.Background(),
		Ref{Client: src.client(t), Repository: "dev/team/app", Tag: "2.0"},
		Ref{Client: dst.client(t), Repository: "prod/app", Tag: "2.0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, src, "dev/team/app:2.0", dst, "prod/app:2.0")
	if !slices.Contains(ts.Requests(), "repository:prod/app:pull,push") || res.BlobsCopied == 0 {
		t.Fatalf("token requests %q, result %+v", ts.Requests(), res)
	}

	// No push right on staging/app: the registry's 401 stands.
	_, err = Copy(context.Background(),
		Ref{Client: src.client(t), Repository: "dev/team/app", Tag: "2.0"},
		Ref{Client: dst.client(t), Repository: "staging/app", Tag: "2.0"}, Options{})
	var se *upstream.StatusError
	var ce *Error
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Code == "" || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want the registry's 401 with its code", err)
	}
	if transient, _ := IsTransient(err); transient {
		t.Fatalf("a refused push is transient: %v", err)
	}
	if !strings.Contains(err.Error(), se.Code) || !strings.Contains(err.Error(), "staging/app") {
		t.Fatalf("message %q lacks the code or the repository", err)
	}
}

// TestBlobIndexSharesUploads copies four images that share a base layer
// into four repositories of another registry at once, with one BlobIndex:
// the base crosses once and is mounted into the other repositories.
func TestBlobIndexSharesUploads(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	set, err := testenv.GenerateImageSet(testenv.ImageSetSpec{Images: 4, BaseSize: 2 << 20, OwnLayers: 1, OwnSize: 256 << 10, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Push(context.Background(), src.Host, "team/app", testenv.RemoteOptions{Transport: src.tr}); err != nil {
		t.Fatal(err)
	}
	scl, dcl := src.client(t), dst.client(t)
	blobs := NewBlobIndex(0)
	results := make([]Result, len(set.Images))
	errs := make(chan error, len(set.Images))
	for k := range set.Images {
		go func() {
			var err error
			results[k], err = Copy(context.Background(), Ref{Client: scl, Repository: fmt.Sprintf("team/app-%d", k), Tag: "1.0"},
				Ref{Client: dcl, Repository: fmt.Sprintf("mirror/app-%d", k), Tag: "1.0"}, Options{Blobs: blobs})
			errs <- err
		}()
	}
	var sent int64
	mounted := 0
	for range set.Images {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for k, r := range results {
		sent += r.BytesCopied
		mounted += r.BlobsMounted
		sameImage(t, src, fmt.Sprintf("team/app-%d:1.0", k), dst, fmt.Sprintf("mirror/app-%d:1.0", k))
	}
	if sent != set.UniqueBytes || mounted != len(set.Images)-1 {
		t.Fatalf("sent %d bytes (unique %d), %d mounts; want the unique bytes and %d mounts", sent, set.UniqueBytes, mounted, len(set.Images)-1)
	}
}
