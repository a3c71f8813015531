package policies_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/jobs"
	"github.com/dtrcache/dtrcache/proxy/policies"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPromotionBySemverWithTemplate: a promotion policy (tag semver
// >=1.0.0, template %n-%Y%m%d) promotes 1.2.0 and not 1.3.0-rc1, by
// mounting blobs: no layer byte is read from the registry.
func TestPromotionBySemverWithTemplate(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app",
		"rules":[{"field":"tag","operator":"semver","values":[">=1.0.0"]}],"tagTemplate":"%n-%Y%m%d"}`)
	ctx := context.Background()
	d12 := push(t, e.us, "dev/app:1.2.0", 1)
	push(t, e.us, "dev/app:1.3.0-rc1", 2)
	e.us.Counter.Reset()
	if js := e.onPush(t, policies.Push{Repository: "dev/app", Tag: "1.3.0-rc1", Digest: ""}); len(js) != 0 {
		t.Fatalf("a pre-release queued %d jobs", len(js))
	}
	if js := e.onPush(t, policies.Push{Repository: "dev/app", Tag: "1.2.0", Digest: d12.String()}); len(js) != 1 {
		t.Fatalf("1.2.0 queued %d jobs, want 1", len(js))
	}
	js := e.jobsOf(id, 1)
	mustState(t, js[0], jobs.Done)
	want := "1.2.0-" + fmtDate(e.clock.now())
	if tags := tagsOf(t, e.us, "qa/app"); !slices.Equal(tags, []string{want}) {
		t.Fatalf("qa/app tags %v, want [%s]", tags, want)
	}
	if n := e.us.Counter.TotalBlobGets(); n != 0 {
		t.Fatalf("the promotion read %d blobs from the registry, want 0 (mounts)", n)
	}
	r := result(t, js[0])
	if r.BlobsMounted != 3 || r.BlobsCopied != 0 || r.BytesCopied != 0 || r.Digest != d12.String() || r.TargetTag != want {
		t.Fatalf("result %+v: want 3 blobs mounted (config + 2 layers), none copied", r)
	}
	if err := testenv.SameImage(ctx, ref(e.us, "dev/app:1.2.0"), testenv.RemoteOptions{}, ref(e.us, "qa/app:"+want), testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Equal(e.pushed, []string{"qa/app:" + want + "@" + d12.String()}) {
		t.Fatalf("the origin was told of %v", e.pushed)
	}
}

// TestChainToRemoteMirror: dev → qa (promotion) → the remote's prod
// (push mirroring) for a multi-platform index with a signature: it
// arrives whole, digests preserved, with its referrer.
func TestChainToRemoteMirror(t *testing.T) {
	e := newEnv(t, envOptions{allowPrivate: true})
	prom := e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app","rules":[]}`)
	mirror := e.create("qa/app", "pushMirroringPolicies", false, `{"enabled":true,"remoteHost":"`+e.eu.URL+`","remoteRepository":"prod/app","rules":[]}`)
	ctx := context.Background()
	idx, err := testenv.MultiPlatformIndex(5, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.PushIndex(ctx, ref(e.us, "dev/app:3.0"), idx, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	digest, _ := idx.Digest()
	mt, _ := idx.MediaType()
	size, _ := idx.Size()
	sig, err := testenv.Signature(v1.Descriptor{MediaType: mt, Digest: digest, Size: size}, []byte(`{"critical":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	sigDigest, _ := sig.Digest()
	if err := testenv.Push(ctx, ref(e.us, "dev/app@"+sigDigest.String()), sig, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.onPush(t, policies.Push{Repository: "dev/app", Tag: "3.0", Digest: digest.String()})
	mustState(t, e.jobsOf(prom, 1)[0], jobs.Done)
	mj := e.jobsOf(mirror, 1)[0]
	mustState(t, mj, jobs.Done)
	if err := testenv.SameImage(ctx, ref(e.us, "dev/app:3.0"), testenv.RemoteOptions{}, ref(e.eu, "prod/app:3.0"), testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := result(t, mj); r.ReferrersCopied < 1 || r.Digest != digest.String() {
		t.Fatalf("mirror result %+v: want the index and its signature", r)
	}
	subject, err := name.NewDigest(e.eu.Host+"/prod/app@"+digest.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := remote.Referrers(subject)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := refs.IndexManifest()
	found := false
	for _, d := range rm.Manifests {
		found = found || d.Digest == sigDigest
	}
	if !found {
		t.Fatalf("the signature %s did not arrive with the image (referrers at the target: %+v)", sigDigest, rm.Manifests)
	}
	// A signature pushed after the image was copied makes the image's tags
	// go again: it travels to where the image went.
	late, err := testenv.Signature(v1.Descriptor{MediaType: mt, Digest: digest, Size: size}, []byte(`{"late":true}`))
	if err != nil {
		t.Fatal(err)
	}
	lateDigest, _ := late.Digest()
	if err := testenv.Push(ctx, ref(e.us, "dev/app@"+lateDigest.String()), late, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	js := e.onPush(t, policies.Push{Repository: "dev/app", Digest: lateDigest.String(), Subject: digest.String()})
	if len(js) != 1 || js[0].Action != policies.ActionReferrers {
		t.Fatalf("a pushed referrer queued %+v, want one referrers job", js)
	}
	mustState(t, e.jobsOf(prom, 2)[0], jobs.Done)
	mustState(t, e.jobsOf(mirror, 2)[0], jobs.Done)
	refs, err = remote.Referrers(subject)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ = refs.IndexManifest()
	found = false
	for _, d := range rm.Manifests {
		found = found || d.Digest == lateDigest
	}
	if !found {
		t.Fatalf("the late signature %s did not follow the image: referrers at the target %+v", lateDigest, rm.Manifests)
	}
	// A tag of the referrers scheme is never an image of its own to copy.
	if js := e.onPush(t, policies.Push{Repository: "dev/app", Tag: "sha256-" + digest.Hex}); len(js) != 1 || js[0].Action != policies.ActionReferrers {
		t.Fatalf("a referrers tag queued %+v, want one referrers job", js)
	}
}

// TestImageRulesAreCheckedWhenTheJobRuns: rules on what the image is
// (its platforms) are read from the registry by the job; an image that
// does not meet them ends done and skipped, naming the rule.
func TestImageRulesAreCheckedWhenTheJobRuns(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app",
		"rules":[{"field":"platform","operator":"eq","values":["linux/arm64"]}]}`)
	ctx := context.Background()
	push(t, e.us, "dev/app:amd64-only", 3) // GenerateImage makes linux/amd64
	idx, err := testenv.MultiPlatformIndex(6, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.PushIndex(ctx, ref(e.us, "dev/app:multi"), idx, testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.onPush(t, policies.Push{Repository: "dev/app", Tag: "amd64-only", Digest: ""})
	e.onPush(t, policies.Push{Repository: "dev/app", Tag: "multi", Digest: ""})
	for _, j := range e.jobsOf(id, 2) {
		mustState(t, j, jobs.Done)
		r := result(t, j)
		switch {
		case strings.HasSuffix(r.Source, ":amd64-only"):
			if !r.Skipped || r.Reason != `rules[0] (platform eq "linux/arm64") not met` {
				t.Fatalf("amd64 image: %+v, want skipped naming the rule", r)
			}
		case strings.HasSuffix(r.Source, ":multi"):
			if r.Skipped {
				t.Fatalf("index with arm64 skipped: %+v", r)
			}
		default:
			t.Fatalf("unexpected job %+v", r)
		}
	}
	if tags := tagsOf(t, e.us, "qa/app"); !slices.Equal(tags, []string{"multi"}) {
		t.Fatalf("qa/app tags %v, want [multi]", tags)
	}
}

// TestPollMirroring: a poll mirror copies what the remote has, picks up a
// tag added there at the next interval, and with mirrorDeletes removes a
// tag the remote no longer has (only tags it made itself).
func TestPollMirroring(t *testing.T) {
	e := newEnv(t, envOptions{allowPrivate: true})
	ctx := context.Background()
	push(t, e.eu, "library/alpine:3.20", 10)
	push(t, e.us, "mirror/alpine:local-only", 11) // not the mirror's: never deleted
	id := e.create("mirror/alpine", "pollMirroringPolicies", true, `{"enabled":true,"remoteHost":"`+e.eu.URL+`",
		"remoteRepository":"library/alpine","interval":"30m","mirrorDeletes":true,"rules":[]}`)
	js := e.jobsOf(id, 2) // the poll and one copy
	for _, j := range js {
		mustState(t, j, jobs.Done)
	}
	if err := testenv.SameImage(ctx, ref(e.eu, "library/alpine:3.20"), testenv.RemoteOptions{}, ref(e.us, "mirror/alpine:3.20"), testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A tag added remotely arrives within one interval.
	push(t, e.eu, "library/alpine:3.21", 12)
	e.clock.advance(30 * time.Minute)
	e.jobsOf(id, 4)
	if tags := tagsOf(t, e.us, "mirror/alpine"); !slices.Equal(tags, []string{"3.20", "3.21", "local-only"}) {
		t.Fatalf("mirror/alpine tags %v after one interval", tags)
	}
	// Deleted remotely: gone locally at the next poll (mirrorDeletes).
	req, _ := http.NewRequest(http.MethodDelete, e.eu.URL+"/v2/library/alpine/manifests/3.20", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deleting the remote tag: %v %v", resp, err)
	}
	e.clock.advance(30 * time.Minute)
	e.jobsOf(id, 5)
	if tags := tagsOf(t, e.us, "mirror/alpine"); !slices.Equal(tags, []string{"3.21", "local-only"}) {
		t.Fatalf("mirror/alpine tags %v after the remote deleted 3.20", tags)
	}
}

// TestPushMirrorsShareTheRemote: two push-mirroring policies of two
// repositories whose images share a base layer, to one remote registry:
// the base crosses to the remote once, the second copy mounts it from the
// repository the first put it in (the policies' jobs share what they know
// of the remote, as the jobs of one policy do).
func TestPushMirrorsShareTheRemote(t *testing.T) {
	e := newEnv(t, envOptions{allowPrivate: true})
	ctx := context.Background()
	set, err := testenv.GenerateImageSet(testenv.ImageSetSpec{Images: 2, BaseSize: 2 << 20, OwnLayers: 1, OwnSize: 64 << 10, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Push(ctx, e.us.Host, "team/app", testenv.RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	// One after the other, so the test does not depend on which job
	// reaches the base first.
	var ids []string
	for i := range set.Images {
		id := e.create(fmt.Sprintf("team/app-%d", i), "pushMirroringPolicies", true,
			`{"enabled":true,"remoteHost":"`+e.eu.URL+`","remoteRepository":"prod/app-`+fmt.Sprint(i)+`"}`)
		mustState(t, e.jobsOf(id, 1)[0], jobs.Done)
		ids = append(ids, id)
	}
	for i := range set.Images {
		if err := testenv.SameImage(ctx, set.Ref(e.us.Host, "team/app", i), testenv.RemoteOptions{}, fmt.Sprintf("%s/prod/app-%d:1.0", e.eu.Host, i), testenv.RemoteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Uploads committed at the remote: every distinct blob once (2
	// configs, 2 own layers, the base).
	if n := e.eu.Counter.Requests("PUT upload"); n != set.Blobs {
		t.Fatalf("the remote committed %d uploads, want %d (the %d distinct blobs, the shared base once)", n, set.Blobs, set.Blobs)
	}
	if r := result(t, e.jobsOf(ids[1], 1)[0]); r.BlobsMounted != 1 || r.BlobsCopied != 2 {
		t.Fatalf("second mirror %+v: want the base mounted, its config and layer copied", r)
	}
}

// TestPromotionRetriedUntilItsPushIsRecorded: a promotion whose push into
// qa/app cannot be recorded (the event store refuses it once) is not done:
// its attempt fails, the retry finds the copy already made and records the
// push then. The job ends done at attempt 2, qa/app has the tag once.
func TestPromotionRetriedUntilItsPushIsRecorded(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.create("dev/app", "promotionPolicies", false, `{"enabled":true,"targetRepository":"qa/app",
		"rules":[{"field":"tag","operator":"eq","values":["1.0"]}],"tagTemplate":"%n"}`)
	d := push(t, e.us, "dev/app:1.0", 1)
	e.mu.Lock()
	e.refusePushes = 1
	e.mu.Unlock()
	if js := e.onPush(t, policies.Push{Repository: "dev/app", Tag: "1.0", Digest: d.String()}); len(js) != 1 {
		t.Fatalf("1.0 queued %d jobs, want 1", len(js))
	}
	// The first attempt fails and waits for its retry (on the test's
	// clock): let the clock move on then.
	deadline := time.Now().Add(30 * time.Second)
	for {
		js, err := e.queue.List(context.Background(), jobs.Filter{PolicyID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(js) == 1 && js[0].State == jobs.Waiting && js[0].Attempts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not fail its first attempt: %+v", js)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	e.clock.advance(time.Second)
	js := e.jobsOf(id, 1)
	mustState(t, js[0], jobs.Done)
	if js[0].Attempts != 2 {
		t.Fatalf("the job is done at attempt %d, want 2 (the first could not record its push)", js[0].Attempts)
	}
	if tags := tagsOf(t, e.us, "qa/app"); !slices.Equal(tags, []string{"1.0"}) {
		t.Fatalf("qa/app tags %v, want [1.0]", tags)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Equal(e.pushed, []string{"qa/app:1.0@" + d.String()}) {
		t.Fatalf("the origin was told of %v, want qa/app:1.0 once", e.pushed)
	}
}
