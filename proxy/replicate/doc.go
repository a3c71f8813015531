// Package replicate is dtrcache's copy engine: it moves whole images
// between repositories and registries for promotion and mirroring
// policies. The job runner (durable jobs, retries with backoff, one job per
// policy and tag) and the policy rules live elsewhere; this package copies
// one image per call and reports what it did.
//
// Copy reads the image (a manifest, or an index and every manifest in it),
// each manifest's referrers (signatures, SBOMs, attestations: the OCI 1.1
// referrers API where the source serves it, the sha256-<hex> tag scheme
// where it does not, and cosign's sha256-<hex>.sig/.att/.sbom tags), and
// asks the target which manifests it already has. Then:
//
//  1. Blobs: every config and layer of every manifest the target lacks,
//     each digest once, Concurrency at a time. Within one registry (the
//     same upstream.Client on both sides) a blob is mounted from the source
//     repository (POST ?mount=&from=: one request, zero bytes read; a 202
//     means the registry refused and the blob is streamed into the upload
//     session it opened). Otherwise a HEAD skips blobs the target has, and
//     the rest stream from a source GET straight into the target upload,
//     never held whole in memory, under an optional bandwidth cap shared
//     by the copy's streams. Blobs up to 1 MiB go in one PUT; larger ones
//     in one streamed PATCH (or ChunkSize chunks) and a committing PUT.
//  2. Child manifests of an index, by digest.
//  3. Referrers (their own blobs went in step 1), by digest, and, where the
//     target has no referrers API, the sha256-<hex> index listing them.
//  4. The image itself: by the target tag, the copy's last write, or by
//     digest. A target never shows a tag whose content is incomplete.
//
// Manifests are copied as bytes, with their media type, so digests are
// preserved; every manifest read is checked against its digest.
//
// Resume: when a blob transfer breaks (a reset, a timeout, a 5xx, either
// side), the engine asks the target how much of the upload it stored
// (GET on the upload URL → Range: 0-N), re-opens the source at that offset
// (a range request) and continues the same upload with a PATCH whose
// Content-Range starts there: the bytes already across are not sent again.
// Options.Checkpoint reports each upload's URL and offset so a job that
// dies can continue it later through Options.Resume.
//
// Errors are *Error values naming the step and content, wrapping the
// registry's *upstream.StatusError (code and message) or one of the
// package's sentinel errors; IsTransient sorts them for the job runner.
//
// Outbound connections go through the upstream.Client's transport: for
// registries reached on a user's behalf build it with a netguard.Dialer
// (http.Transport.DialContext), so loopback, private and link-local
// addresses are refused unless allowed.
package replicate
